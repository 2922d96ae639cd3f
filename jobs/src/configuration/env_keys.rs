//! Which `JOBQ_<SECTION>_<KEY>` variables are settings, and how each one's text becomes a value.
//!
//! The table is derived, not written out: its keys are those of the sections of the built-in
//! defaults, and each key's kind is what the Rust type of its field asks the deserializer for.
//! A hand-kept list drifts from the types (one read the fractional Telegram rates as
//! integers); derived, a setting added to `config/default.toml` and its struct is settable from
//! the environment with nothing else to update.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::sync::OnceLock;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Value};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};

use super::settings::split_list;
use super::{ConfigError, DEFAULTS, ENV_PREFIX, Settings};

/// How a string from an environment variable or a flag becomes a value. A text that does not
/// parse as its kind is kept as a string, so that extraction fails naming the setting, the
/// value and the type expected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ValueKind {
    /// Kept as the string given (URLs, durations, names, filters).
    Text,
    /// An integer.
    Int,
    /// A number that may have a fraction (`2.5`, or `30`).
    Float,
    /// `true` or `false`.
    Bool,
    /// A comma-separated list, or `[a, b]`.
    List,
}

/// The settings environment variables may set, by `section.key`, with their kinds.
pub(super) struct EnvKeys(BTreeMap<String, ValueKind>);

impl EnvKeys {
    /// The table for the built-in defaults, derived once.
    pub(super) fn get() -> Result<&'static EnvKeys, ConfigError> {
        static KEYS: OnceLock<Result<EnvKeys, String>> = OnceLock::new();
        KEYS.get_or_init(|| EnvKeys::derive(DEFAULTS))
            .as_ref()
            .map_err(|e| {
                ConfigError::message(
                    format!(
                        "the built-in defaults (config/default.toml) do not fit the settings: {e}"
                    ),
                    None,
                )
            })
    }

    /// Deserializes [`Settings`] from `defaults`, noting the kind each field of a section asks
    /// for. Sections are the tables deserialized as structs: `[queues]`, a map whose keys are
    /// queue names, and the `[[periodic]]`-style lists have no fixed keys to name in a variable.
    fn derive(defaults: &str) -> Result<EnvKeys, String> {
        let root = Value::from(Toml::from_str::<Dict>(defaults).map_err(|e| e.to_string())?);
        let found = RefCell::new(BTreeMap::new());
        Settings::deserialize(Probe {
            value: &root,
            path: Vec::new(),
            found: &found,
        })
        .map_err(|e| e.to_string())?;
        Ok(EnvKeys(found.into_inner()))
    }

    pub(super) fn kind(&self, section: &str, key: &str) -> Option<ValueKind> {
        self.0.get(&format!("{section}.{key}")).copied()
    }

    /// The setting an environment variable sets, if it is one of ours.
    pub(super) fn env_setting(&self, name: &str) -> Option<(String, ValueKind)> {
        let rest = name.strip_prefix(ENV_PREFIX)?;
        let (section, key) = rest.split_once('_')?;
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let kind = self.kind(&section, &key)?;
        Some((format!("{section}.{key}"), kind))
    }

    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, ValueKind)> {
        self.0.iter().map(|(key, kind)| (key.as_str(), *kind))
    }
}

pub(super) fn typed_value(raw: &str, kind: ValueKind) -> Value {
    let text = || Value::from(raw.to_string());
    match kind {
        ValueKind::Text => text(),
        ValueKind::Int => raw
            .trim()
            .parse::<i64>()
            .map_or_else(|_| text(), Value::from),
        ValueKind::Float => raw
            .trim()
            .parse::<f64>()
            .map_or_else(|_| text(), Value::from),
        ValueKind::Bool => raw
            .trim()
            .parse::<bool>()
            .map_or_else(|_| text(), Value::from),
        ValueKind::List => {
            let inner = raw.trim();
            let inner = inner
                .strip_prefix('[')
                .and_then(|s| s.strip_suffix(']'))
                .unwrap_or(inner);
            let items: Vec<Value> = split_list(inner)
                .into_iter()
                .map(|s| Value::from(s.trim_matches(|c| c == '"' || c == '\'').to_string()))
                .collect();
            Value::from(items)
        }
    }
}

/// A deserializer over the defaults that hands every request on to figment's own, after noting
/// which kind a `section.key` field asked for.
struct Probe<'v, 'f> {
    value: &'v Value,
    path: Vec<&'v str>,
    found: &'f RefCell<BTreeMap<String, ValueKind>>,
}

impl Probe<'_, '_> {
    fn note(&self, kind: ValueKind) {
        if let [section, key] = self.path.as_slice() {
            self.found
                .borrow_mut()
                .insert(format!("{section}.{key}"), kind);
        }
    }
}

/// The kind a value of the defaults has, for types that take more than one shape (a list of
/// queues is a TOML array or one comma-separated string).
fn shape(value: &Value) -> Option<ValueKind> {
    Some(match value {
        Value::String(..) | Value::Char(..) => ValueKind::Text,
        Value::Bool(..) => ValueKind::Bool,
        Value::Num(..) if value.to_f64().is_some() => ValueKind::Float,
        Value::Num(..) => ValueKind::Int,
        Value::Array(..) => ValueKind::List,
        Value::Dict(..) | Value::Empty(..) => return None,
    })
}

macro_rules! noted {
    ($($method:ident => $kind:expr),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, figment::Error> {
            if let Some(kind) = $kind {
                self.note(kind);
            }
            self.value.$method(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for Probe<'_, '_> {
    type Error = figment::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, figment::Error> {
        if let Some(kind) = shape(self.value) {
            self.note(kind);
        }
        self.value.deserialize_any(visitor)
    }

    noted! {
        deserialize_bool => Some(ValueKind::Bool),
        deserialize_i8 => Some(ValueKind::Int),
        deserialize_i16 => Some(ValueKind::Int),
        deserialize_i32 => Some(ValueKind::Int),
        deserialize_i64 => Some(ValueKind::Int),
        deserialize_u8 => Some(ValueKind::Int),
        deserialize_u16 => Some(ValueKind::Int),
        deserialize_u32 => Some(ValueKind::Int),
        deserialize_u64 => Some(ValueKind::Int),
        deserialize_f32 => Some(ValueKind::Float),
        deserialize_f64 => Some(ValueKind::Float),
        deserialize_char => Some(ValueKind::Text),
        deserialize_str => Some(ValueKind::Text),
        deserialize_string => Some(ValueKind::Text),
        deserialize_bytes => Some(ValueKind::Text),
        deserialize_byte_buf => Some(ValueKind::Text),
        deserialize_identifier => Some(ValueKind::Text),
        deserialize_seq => Some(ValueKind::List),
        deserialize_map => None::<ValueKind>,
        deserialize_unit => None::<ValueKind>,
        deserialize_ignored_any => None::<ValueKind>,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, figment::Error> {
        match self.value {
            Value::Empty(..) => self.value.deserialize_option(visitor),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        self.value.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        self.note(ValueKind::List);
        self.value.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        self.note(ValueKind::List);
        self.value.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        match self.value {
            Value::Dict(_, dict) => visitor.visit_map(Fields {
                entries: dict.iter(),
                pending: None,
                path: self.path,
                found: self.found,
            }),
            _ => self.value.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, figment::Error> {
        self.note(ValueKind::Text);
        self.value.deserialize_enum(name, variants, visitor)
    }
}

/// A struct's fields as the defaults give them, each value probed in turn.
struct Fields<'v, 'f> {
    entries: btree_map::Iter<'v, String, Value>,
    pending: Option<(&'v str, &'v Value)>,
    path: Vec<&'v str>,
    found: &'f RefCell<BTreeMap<String, ValueKind>>,
}

impl<'de> MapAccess<'de> for Fields<'_, '_> {
    type Error = figment::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, figment::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.pending = Some((key.as_str(), value));
        seed.deserialize(key.as_str().into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, figment::Error> {
        let (key, value) = self.pending.take().ok_or_else(|| {
            <figment::Error as de::Error>::custom("a value was asked for before its key")
        })?;
        let mut path = self.path.clone();
        path.push(key);
        seed.deserialize(Probe {
            value,
            path,
            found: self.found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::test_support::*;

    #[test]
    fn kinds_follow_the_field_types() {
        let keys = EnvKeys::get().expect("the defaults fit the settings");
        let expected = [
            ("database", "url", ValueKind::Text),
            ("database", "max_connections", ValueKind::Int),
            ("database", "sqlite_synchronous", ValueKind::Text),
            ("worker", "queues", ValueKind::List),
            ("worker", "lease", ValueKind::Text),
            ("worker", "metrics_bind", ValueKind::Text),
            ("web", "bind", ValueKind::Text),
            // default.toml writes both rates as integers; the fields are f64.
            ("telegram", "messages_per_second", ValueKind::Float),
            ("telegram", "messages_per_chat_per_second", ValueKind::Float),
            ("bots", "command_burst", ValueKind::Int),
            ("transcripts", "local_dir", ValueKind::Text),
        ];
        for (section, key, kind) in expected {
            assert_eq!(keys.kind(section, key), Some(kind), "{section}.{key}");
        }
        // Maps and lists of tables have no fixed keys a variable could name.
        for (section, key) in [("queues", "panel"), ("periodic", "name"), ("panels", "url")] {
            assert_eq!(keys.kind(section, key), None, "{section}.{key}");
        }
    }

    #[test]
    fn env_keys_match_default_toml() {
        let keys = EnvKeys::get().expect("the defaults fit the settings");
        let defaults: Dict = Toml::from_str(DEFAULTS).expect("defaults parse");
        let mut derived: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (setting, _) in keys.iter() {
            let (section, key) = setting.split_once('.').expect("section.key");
            derived.entry(section).or_default().push(key);
        }
        let mut in_file: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (section, table) in &defaults {
            if let Some(table) = table.as_dict().filter(|t| !t.is_empty()) {
                in_file.insert(section, table.keys().map(String::as_str).collect());
            }
        }
        assert_eq!(derived, in_file);
    }

    #[test]
    fn every_default_key_is_settable_from_the_environment() {
        let keys = EnvKeys::get().expect("the defaults fit the settings");
        let defaults: Dict = Toml::from_str(DEFAULTS).expect("defaults parse");
        let baseline = load(None, &[], &[]).expect("defaults");
        let mut seen = 0;
        for (section, table) in &defaults {
            let Some(table) = table.as_dict() else {
                continue;
            };
            for (key, value) in table {
                let name = format!("{ENV_PREFIX}{section}_{key}").to_ascii_uppercase();
                let (setting, _) = keys
                    .env_setting(&name)
                    .unwrap_or_else(|| panic!("{name} is not read"));
                assert_eq!(setting, format!("{section}.{key}"));
                // The default, written as an operator would type it, must give the default back.
                let text = match value {
                    Value::String(_, s) => s.clone(),
                    Value::Array(_, items) => items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                        .join(","),
                    other => render_number_or_bool(other),
                };
                let loaded = load(None, &[(name.as_str(), text.as_str())], &[])
                    .unwrap_or_else(|e| panic!("{name}={text:?}: {e}"));
                assert_eq!(loaded, baseline, "{name}={text:?}");
                seen += 1;
            }
        }
        assert_eq!(
            seen,
            keys.iter().count(),
            "every derived key is in default.toml"
        );
    }

    fn render_number_or_bool(value: &Value) -> String {
        match (
            value.to_bool(),
            value.to_i128(),
            value.to_u128(),
            value.to_f64(),
        ) {
            (Some(b), ..) => b.to_string(),
            (_, Some(n), ..) => n.to_string(),
            (_, _, Some(n), _) => n.to_string(),
            (_, _, _, Some(x)) => x.to_string(),
            _ => panic!("unexpected default {value:?}"),
        }
    }

    #[test]
    fn fractional_telegram_rates_are_accepted_from_the_environment_and_flags() {
        let s = load(
            None,
            &[
                ("JOBQ_TELEGRAM_MESSAGES_PER_SECOND", "2.5"),
                ("JOBQ_TELEGRAM_MESSAGES_PER_CHAT_PER_SECOND", "0.5"),
            ],
            &[],
        )
        .expect("fractional rates load");
        assert_eq!(s.telegram.messages_per_second, 2.5);
        assert_eq!(s.telegram.messages_per_chat_per_second, 0.5);
        let s = load(None, &[("JOBQ_TELEGRAM_MESSAGES_PER_SECOND", "12")], &[]).expect("whole");
        assert_eq!(s.telegram.messages_per_second, 12.0);
        let s = load(None, &[], &[("telegram.messages_per_second", "2.5")]).expect("flag");
        assert_eq!(s.telegram.messages_per_second, 2.5);

        let err = load_err(None, &[("JOBQ_TELEGRAM_MESSAGES_PER_SECOND", "fast")], &[]);
        assert!(
            err.contains("telegram.messages_per_second = \"fast\""),
            "{err}"
        );
        assert!(err.contains("JOBQ_TELEGRAM_MESSAGES_PER_SECOND"), "{err}");
        // Still range-checked after parsing.
        let err = load_err(None, &[("JOBQ_TELEGRAM_MESSAGES_PER_SECOND", "0.0")], &[]);
        assert!(err.contains("telegram.messages_per_second = 0"), "{err}");
        assert!(err.contains("is out of range"), "{err}");
    }

    #[test]
    fn a_fraction_is_still_refused_where_an_integer_is_expected() {
        let err = load_err(None, &[("JOBQ_DATABASE_MAX_CONNECTIONS", "2.5")], &[]);
        assert!(err.contains("database.max_connections = \"2.5\""), "{err}");
        assert!(err.contains("JOBQ_DATABASE_MAX_CONNECTIONS"), "{err}");
    }

    #[test]
    fn texts_that_do_not_parse_as_their_kind_are_kept_as_text() {
        let text = |v: &str| Value::from(v.to_string());
        assert_eq!(typed_value(" 7 ", ValueKind::Int), Value::from(7i64));
        assert_eq!(typed_value("seven", ValueKind::Int), text("seven"));
        assert_eq!(typed_value("2.5", ValueKind::Float), Value::from(2.5f64));
        assert_eq!(typed_value("fast", ValueKind::Float), text("fast"));
        assert_eq!(typed_value("true", ValueKind::Bool), Value::from(true));
        assert_eq!(typed_value("yes", ValueKind::Bool), text("yes"));
        assert_eq!(typed_value("30s", ValueKind::Text), text("30s"));
        assert_eq!(
            typed_value("[a, 'b']", ValueKind::List),
            Value::from(vec![text("a"), text("b")])
        );
    }
}
