//! Strings in payloads that parse into a type, with errors naming the field they came from
//! (`expected period as an RFC 3339 timestamp string`).

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// A type read from a JSON string.
pub(crate) trait FromLabelledStr: Sized {
    /// What the string must be, as the end of `expected {label} as …`.
    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Parses `text`, naming `label` in the error.
    fn parse_labelled(label: &str, text: &str) -> Result<Self, String>;
}

/// Deserializes a `T` from a string, naming `label` in its errors.
pub(crate) fn deserialize<'de, T: FromLabelledStr, D: Deserializer<'de>>(
    deserializer: D,
    label: &'static str,
) -> Result<T, D::Error> {
    deserializer.deserialize_str(Labelled::<T>(label, PhantomData))
}

struct Labelled<T>(&'static str, PhantomData<T>);

impl<T: FromLabelledStr> Visitor<'_> for Labelled<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} as ", self.0)?;
        T::expected(f)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        T::parse_labelled(self.0, value).map_err(E::custom)
    }
}
