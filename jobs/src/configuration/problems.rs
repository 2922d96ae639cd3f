//! Naming problems: the setting as the user wrote it, the value given and where it came from.

use figment::value::Value;
use figment::{Figment, Metadata};

use super::allowed::hint;
use super::{ConfigError, ConfigProblem};
use crate::configuration::mask_url;

/// Looks up merged values and their origins, to describe problems.
pub(super) struct Origins<'a> {
    figment: &'a Figment,
    root: Option<Value>,
}

impl<'a> Origins<'a> {
    pub(super) fn new(figment: &'a Figment) -> Self {
        Origins {
            figment,
            root: figment.find_value("").ok(),
        }
    }

    fn node(&self, path: &[String]) -> Option<&Value> {
        let mut current = self.root.as_ref()?;
        for segment in path {
            current = child(current, segment)?;
        }
        Some(current)
    }

    /// `periodic.1.every` → `periodic[1].every`.
    fn display_key(&self, path: &[String]) -> String {
        let mut out = String::new();
        let mut current = self.root.as_ref();
        for segment in path {
            if matches!(current, Some(Value::Array(..))) {
                out.push_str(&format!("[{segment}]"));
            } else {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(segment);
            }
            current = current.and_then(|c| child(c, segment));
        }
        out
    }

    /// The provider of the deepest value found along `path`.
    fn origin(&self, path: &[String]) -> Option<String> {
        (1..=path.len()).rev().find_map(|n| {
            let value = self.node(&path[..n])?;
            self.figment.get_metadata(value.tag()).map(describe_origin)
        })
    }

    fn value(&self, path: &[String]) -> Option<String> {
        let value = self.node(path)?;
        let key = generic_key(path);
        if key == "database.url" {
            return value.as_str().map(|url| format!("{:?}", mask_url(url)));
        }
        if is_url_key(&key) {
            return value
                .as_str()
                .map(|url| format!("{:?}", mask_url_secrets(url)));
        }
        render_value(value)
    }

    pub(super) fn problem(
        &self,
        path: &[String],
        show_value: bool,
        message: String,
    ) -> ConfigProblem {
        ConfigProblem {
            setting: Some(self.display_key(path)),
            value: if show_value { self.value(path) } else { None },
            origin: self.origin(path),
            message,
        }
    }

    pub(super) fn convert(&self, error: figment::Error) -> ConfigError {
        let problems = error.into_iter().map(|e| self.convert_one(e)).collect();
        ConfigError::new(problems)
    }

    fn convert_one(&self, error: figment::Error) -> ConfigProblem {
        use figment::error::Kind;
        let mut path = error.path.clone();
        let with_hint = |message: String, path: &[String]| match hint(&generic_key(path)) {
            Some(hint) => format!("{message}; {hint}"),
            None => message,
        };
        let message = match &error.kind {
            Kind::UnknownField(field, expected) => {
                // figment usually has put the field on the path already.
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
                if expected.is_empty() {
                    "is not a known setting".to_string()
                } else {
                    format!(
                        "is not a known setting: expected one of {}",
                        expected.join(", ")
                    )
                }
            }
            Kind::MissingField(field) => {
                if path.last().map(String::as_str) != Some(&**field) {
                    path.push(field.to_string());
                }
                with_hint("is missing".to_string(), &path)
            }
            Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected)
                if expected == "a duration" =>
            {
                with_hint(
                    "is not a valid duration: use a number and a unit, e.g. \"30s\", \"10m\" \
                     or \"100ms\""
                        .to_string(),
                    &path,
                )
            }
            Kind::InvalidType(_, expected) => {
                let expected = if expected.starts_with("struct ") {
                    "a table"
                } else {
                    expected.as_str()
                };
                with_hint(format!("has the wrong type: expected {expected}"), &path)
            }
            Kind::InvalidValue(_, expected) => {
                with_hint(format!("is not valid: expected {expected}"), &path)
            }
            Kind::UnknownVariant(_, expected) => {
                let expected: Vec<String> = expected.iter().map(|e| format!("{e:?}")).collect();
                format!("is not allowed: expected one of {}", expected.join(", "))
            }
            Kind::Message(message) => message.clone(),
            other => other.to_string(),
        };
        // A key an [[admins]] or [[panels]] entry does not have may be a token written in the
        // file by mistake: never echo it.
        let hide_value = matches!(path.first().map(String::as_str), Some("admins" | "panels"))
            && matches!(error.kind, Kind::UnknownField(..));
        let mut problem = self.problem(&path, !hide_value, message);
        if problem.value.is_none() && !hide_value {
            problem.value = actual_value(&error.kind, &path);
        }
        if problem.origin.is_none() {
            problem.origin = error.metadata.as_ref().map(describe_origin);
        }
        if path.is_empty() {
            problem.setting = None;
        }
        problem
    }
}

fn child<'v>(value: &'v Value, segment: &str) -> Option<&'v Value> {
    match value {
        Value::Dict(_, dict) => dict.get(segment),
        Value::Array(_, items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    }
}

/// `queues.panel.concurrency` → `queues.*.concurrency`; `periodic.1.every` → `periodic.every`.
fn generic_key(path: &[String]) -> String {
    let mut parts: Vec<&str> = path.iter().map(String::as_str).collect();
    match parts.first() {
        Some(&"queues") if parts.len() > 1 => parts[1] = "*",
        Some(&("periodic" | "panels" | "plans"))
            if parts.len() > 1 && parts[1].parse::<usize>().is_ok() =>
        {
            parts.remove(1);
        }
        _ => {}
    }
    parts.join(".")
}

/// Settings holding URLs other than the database's: shown with [`mask_url_secrets`].
fn is_url_key(generic_key: &str) -> bool {
    matches!(
        generic_key,
        "panels.url"
            | "telegram.api_url"
            | "discord.api_url"
            | "web.public_base_url"
            | "transcripts.public_base_url"
            | "transcripts.s3_endpoint"
    )
}

/// A URL as it may be shown: user and password (an access key id is a credential too), every
/// query value and the fragment replaced by `****`. Errs on the side of masking too much for
/// URLs that do not parse.
pub(crate) fn mask_url_secrets(url: &str) -> String {
    let (head, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let (authority_end, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority_end.rfind('@') {
        Some(at) => format!("****@{}", &authority_end[at + 1..]),
        None => authority_end.to_string(),
    };
    let (tail, fragment) = match tail.split_once('#') {
        Some((before, _)) => (before, "#****"),
        None => (tail, ""),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) => format!("{name}=****"),
                    None => "****".to_string(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{head}{host}{tail}{fragment}")
}

fn describe_origin(metadata: &Metadata) -> String {
    match &metadata.source {
        Some(source) => format!("{} {source}", metadata.name),
        None => metadata.name.to_string(),
    }
}

/// The value as written; `None` for tables (too long to repeat).
fn render_value(value: &Value) -> Option<String> {
    Some(match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{c:?}"),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(..) => match (value.to_i128(), value.to_u128(), value.to_f64()) {
            (Some(n), _, _) => n.to_string(),
            (None, Some(n), _) => n.to_string(),
            (None, None, Some(x)) => x.to_string(),
            (None, None, None) => "?".to_string(),
        },
        Value::Empty(..) => "none".to_string(),
        Value::Array(_, items) => {
            let items: Vec<String> = items
                .iter()
                .map(|v| render_value(v).unwrap_or_else(|| "{…}".to_string()))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::Dict(..) => return None,
    })
}

fn actual_value(kind: &figment::error::Kind, path: &[String]) -> Option<String> {
    use figment::error::{Actual, Kind};
    if is_url_key(&generic_key(path)) {
        return None;
    }
    let actual = match kind {
        Kind::InvalidType(actual, _) | Kind::InvalidValue(actual, _) => actual,
        _ => return None,
    };
    Some(match actual {
        Actual::Bool(b) => b.to_string(),
        Actual::Unsigned(n) => n.to_string(),
        Actual::Signed(n) => n.to_string(),
        Actual::Float(x) => x.to_string(),
        Actual::Char(c) => format!("{c:?}"),
        Actual::Str(s) => format!("{s:?}"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn url_secrets_are_masked() {
        use super::mask_url_secrets as m;
        assert_eq!(
            m("http://AKIAEXAMPLE:s3cr3t@s3.local:9000/b"),
            "http://****@s3.local:9000/b"
        );
        assert_eq!(
            m("https://u:pw@shop.example/"),
            "https://****@shop.example/"
        );
        assert_eq!(
            m("http://p.example/app/?token=abc&x"),
            "http://p.example/app/?token=****&****"
        );
        assert_eq!(m("http://p.example/a#tok"), "http://p.example/a#****");
        assert_eq!(
            m("http://p.example:2095/app/"),
            "http://p.example:2095/app/"
        );
        assert_eq!(m("not a url?token=abc"), "not a url?token=****");
    }

    use crate::configuration::test_support::*;

    #[test]
    fn malformed_duration_names_key_and_env_var() {
        let err = load_err(None, &[("JOBQ_WORKER_SHUTDOWN_GRACE", "3 parsecs")], &[]);
        assert!(err.contains("worker.shutdown_grace"), "{err}");
        assert!(err.contains("\"3 parsecs\""), "{err}");
        assert!(err.contains("JOBQ_WORKER_SHUTDOWN_GRACE"), "{err}");
        assert!(err.contains("not a valid duration"), "{err}");

        let err = load_err(None, &[("JOBQ_WORKER_CONCURRENCY", "many")], &[]);
        assert!(err.contains("worker.concurrency = \"many\""), "{err}");
        assert!(err.contains("JOBQ_WORKER_CONCURRENCY"), "{err}");

        let file = config_file("[worker]\nlease = 30\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("worker.lease = 30"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");
    }

    #[test]
    fn unknown_keys_rejected() {
        let file = config_file("[wroker]\nconcurrency = 4\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("wroker"), "{err}");
        assert!(err.contains("is not a known setting"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");

        let file = config_file("[worker]\nconcurency = 4\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(
            err.contains("worker.concurency = 4 is not a known setting"),
            "{err}"
        );
        assert!(err.contains(&file.path().display().to_string()), "{err}");

        let file = config_file("[queues.panel]\nconcurrency = 4\nweight = 2\n");
        let err = load_err(Some(&file), &[], &[]);
        assert!(err.contains("queues.panel.weight"), "{err}");

        let err = load_err(None, &[], &[("worker.concurency", "4")]);
        assert!(err.contains("worker.concurency"), "{err}");
        assert!(err.contains("command-line override"), "{err}");

        let err = load_err(None, &[], &[("worker..x", "4")]);
        assert!(err.contains("worker..x"), "{err}");
    }

    #[test]
    fn bad_enum_value_lists_allowed() {
        let err = load_err(None, &[("JOBQ_LOG_FORMAT", "xml")], &[]);
        assert!(err.contains("log.format = \"xml\""), "{err}");
        assert!(err.contains("\"human\", \"json\""), "{err}");
        assert!(err.contains("JOBQ_LOG_FORMAT"), "{err}");
    }
}
