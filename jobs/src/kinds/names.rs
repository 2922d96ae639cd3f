//! Names of panels and plans. The configuration's `[[panels]]` and `[[plans]]` entries and the
//! job payloads naming them follow this one rule, so that every configured panel and plan can
//! be named in a job, and no job can name one the configuration could not hold.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::labelled::{self, FromLabelledStr};

/// A panel or plan name: 1 to 64 ASCII letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    pub const MAX_LEN: usize = 64;
    /// The rule, as messages state it.
    pub const RULE: &'static str = "1 to 64 ASCII letters, digits, '-', '_' and '.'";

    pub fn parse(name: impl Into<String>) -> Result<Self, String> {
        Self::parse_as("name", name.into())
    }

    /// As [`Name::parse`], with errors naming the field (`"panel"`, `"plan"`).
    pub fn parse_as(what: &str, name: String) -> Result<Self, String> {
        match Broken::find(&name) {
            None => Ok(Self(name)),
            Some(Broken::Empty) => Err(format!("{what} must not be empty")),
            Some(Broken::TooLong(len)) => Err(format!(
                "{what} is {len} characters long, at most {} are allowed",
                Self::MAX_LEN
            )),
            Some(Broken::Char(bad)) => Err(format!(
                "{what} {name:?} contains {bad:?}: only ASCII letters, digits, '-', '_' and '.' are allowed"
            )),
        }
    }

    /// Whether [`Name::parse`] accepts `name`, for callers that word their own message (the
    /// configuration names the setting and quotes the value itself).
    pub fn is_valid(name: &str) -> bool {
        Broken::find(name).is_none()
    }

    /// For examples and constants; the tests parse every example.
    pub(crate) fn from_static(name: &'static str) -> Self {
        debug_assert!(Self::parse(name).is_ok(), "invalid name {name:?}");
        Self(name.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A deserializer whose errors name the field.
    pub(crate) fn deserialize_as<'de, D: Deserializer<'de>>(
        deserializer: D,
        what: &'static str,
    ) -> Result<Self, D::Error> {
        labelled::deserialize(deserializer, what)
    }
}

/// How a name breaks the rule: the first thing wrong with it.
enum Broken {
    Empty,
    TooLong(usize),
    Char(char),
}

impl Broken {
    fn find(name: &str) -> Option<Broken> {
        if name.is_empty() {
            return Some(Broken::Empty);
        }
        let len = name.chars().count();
        if len > Name::MAX_LEN {
            return Some(Broken::TooLong(len));
        }
        name.chars().find(|&c| !is_name_char(c)).map(Broken::Char)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// For `#[serde(deserialize_with = "names::panel")]`.
pub(crate) fn panel<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
    Name::deserialize_as(deserializer, "panel")
}

/// For `#[serde(deserialize_with = "names::plan")]`.
pub(crate) fn plan<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Name, D::Error> {
    Name::deserialize_as(deserializer, "plan")
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        Self::parse(name)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::deserialize_as(deserializer, "name")
    }
}

impl FromLabelledStr for Name {
    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string of {}", Name::RULE)
    }

    fn parse_labelled(label: &str, text: &str) -> Result<Self, String> {
        Name::parse_as(label, text.to_string())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn valid_names_parse_and_round_trip() {
        for name in ["de-1", "monthly_50GB", "v2.panel", "a", &"x".repeat(64)] {
            let parsed: Name = serde_json::from_value(json!(name)).unwrap();
            assert_eq!(parsed.as_str(), name);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), json!(name));
        }
    }

    #[test]
    fn bad_names_are_rejected_naming_what_is_wrong() {
        let cases = [
            (json!(""), "name must not be empty"),
            (
                json!("x".repeat(65)),
                "name is 65 characters long, at most 64",
            ),
            (json!("de 1"), "name \"de 1\" contains ' '"),
            (json!("de/1"), "contains '/'"),
            (json!("панель"), "contains 'п'"),
            (json!(5), "expected name as a string of 1 to 64"),
        ];
        for (json, expected) in cases {
            let error = serde_json::from_value::<Name>(json.clone())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
        assert!(
            Name::parse_as("plan", "a b".into())
                .unwrap_err()
                .starts_with("plan ")
        );
    }

    #[test]
    fn is_valid_accepts_exactly_what_parse_accepts() {
        let long = "x".repeat(Name::MAX_LEN);
        let too_long = "x".repeat(Name::MAX_LEN + 1);
        for name in [
            "de-1",
            "DE.1",
            "v2.panel",
            "a_b",
            &long,
            "",
            &too_long,
            "de 1",
            "de/1",
            "панель",
        ] {
            assert_eq!(Name::is_valid(name), Name::parse(name).is_ok(), "{name:?}");
        }
        assert!(Name::RULE.starts_with(&format!("1 to {} ", Name::MAX_LEN)));
    }
}
