//! [`ConfigError`]: every problem found, each naming its setting, value and origin.

use std::fmt;

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting, e.g. `worker.concurrency` or `periodic[1].every`.
    pub setting: Option<String>,
    /// The value given, as written (strings quoted; database passwords masked).
    pub value: Option<String>,
    /// Where the value came from, e.g. ``environment variable `JOBQ_WORKER_LEASE` ``.
    pub origin: Option<String>,
    /// What is wrong and what is allowed, e.g. `is out of range: allowed 1 to 10000`.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.setting, &self.value) {
            (Some(setting), Some(value)) => write!(f, "{setting} = {value} {}", self.message)?,
            (Some(setting), None) => write!(f, "{setting} {}", self.message)?,
            (None, _) => f.write_str(&self.message)?,
        }
        if let Some(origin) = &self.origin {
            write!(f, " (from {origin})")?;
        }
        Ok(())
    }
}

/// The configuration could not be loaded: one or more [`ConfigProblem`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_problems(&self.problems))]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut out = format!("{} configuration problems:", many.len());
            for problem in many {
                out.push_str("\n  - ");
                out.push_str(&problem.to_string());
            }
            out
        }
    }
}

impl ConfigError {
    /// The problems found; at least one.
    pub fn new(problems: Vec<ConfigProblem>) -> Self {
        ConfigError { problems }
    }

    pub fn single(problem: ConfigProblem) -> Self {
        ConfigError {
            problems: vec![problem],
        }
    }

    pub fn message(message: String, origin: Option<String>) -> Self {
        Self::single(ConfigProblem {
            setting: None,
            value: None,
            origin,
            message,
        })
    }

    /// Every problem found (at least one).
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }
}
