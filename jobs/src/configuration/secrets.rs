//! Secrets read from the environment variables the settings name: panel credentials, S3 keys
//! and admin tokens. None of them is ever shown.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, ConfigProblem, Settings};

/// The variable holding the token of the single admin named [`DEFAULT_ADMIN`].
pub const ADMIN_TOKEN_ENV: &str = "JOBQ_ADMIN_TOKEN";
/// The name [`ADMIN_TOKEN_ENV`]'s holder acts under.
pub const DEFAULT_ADMIN: &str = "admin";
/// Tokens shorter than this are refused: they could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

/// A dashboard admin with their token, read from the environment. The token is a secret:
/// `Debug` shows `[REDACTED]`, and nothing displays it.
#[derive(Debug, Clone)]
pub struct AdminToken {
    pub name: String,
    pub token: SecretString,
}

/// The S3 credentials of `[transcripts]`, read from the variables it names. `Debug` shows
/// `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
}

/// How jobq signs in to a panel, with the secrets read from the environment. `Debug` shows
/// `[REDACTED]` for every secret.
#[derive(Debug, Clone)]
pub enum PanelAuth {
    /// `Token: <token>` on the token API.
    Token(SecretString),
    /// A login form, then the session cookie.
    Login {
        user: SecretString,
        password: SecretString,
    },
}

impl Settings {
    /// The S3 credentials from the variables `[transcripts]` names; an unset or empty one is
    /// an error naming the setting and the variable (never a value).
    pub fn transcript_s3_credentials(&self) -> Result<S3Credentials, ConfigError> {
        self.transcript_s3_credentials_from(|name| std::env::var(name).ok())
    }

    /// [`Settings::transcript_s3_credentials`] with the environment given as a lookup.
    pub fn transcript_s3_credentials_from(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Credentials, ConfigError> {
        let t = &self.transcripts;
        let mut problems = Vec::new();
        let mut read = |field: &str, var: &str| {
            let value = lookup(var).filter(|v| !v.trim().is_empty());
            if value.is_none() {
                problems.push(ConfigProblem {
                    setting: Some(format!("transcripts.{field}")),
                    value: None,
                    origin: None,
                    message: format!(
                        "names the environment variable `{var}`, which is not set: set it to the \
                         S3 {}",
                        if field == "s3_access_key_env" {
                            "access key id"
                        } else {
                            "secret access key"
                        }
                    ),
                });
            }
            value.map(SecretString::from)
        };
        let access = read("s3_access_key_env", &t.s3_access_key_env);
        let secret = read("s3_secret_key_env", &t.s3_secret_key_env);
        match (access, secret) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(S3Credentials {
                access_key_id,
                secret_access_key,
            }),
            _ => Err(ConfigError::new(problems)),
        }
    }

    /// Every panel's credentials, by panel name, read from the environment variables its entry
    /// names. An unset or empty variable is an error naming the panel and the variable (never
    /// a value); all such problems are reported together.
    pub fn panel_credentials(&self) -> Result<BTreeMap<String, PanelAuth>, ConfigError> {
        self.panel_credentials_from(|name| std::env::var(name).ok())
    }

    /// [`Settings::panel_credentials`] with the environment given as a lookup (for tests).
    pub fn panel_credentials_from(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, PanelAuth>, ConfigError> {
        let mut problems = Vec::new();
        let mut found = BTreeMap::new();
        for (i, p) in self.panels.iter().enumerate() {
            let mut read = |field: &str, var: &str| {
                let value = lookup(var).filter(|v| !v.trim().is_empty());
                if value.is_none() {
                    problems.push(ConfigProblem {
                        setting: Some(format!("panels[{i}].{field}")),
                        value: None,
                        origin: None,
                        message: format!(
                            "names the environment variable `{var}`, which is not set: set it \
                             to panel {}'s {}",
                            p.name,
                            match field {
                                "token_env" => "API token",
                                "login_user_env" => "login user",
                                _ => "login password",
                            }
                        ),
                    });
                }
                value.map(SecretString::from)
            };
            let auth = match (&p.token_env, &p.login_user_env, &p.login_password_env) {
                (Some(var), _, _) => read("token_env", var).map(PanelAuth::Token),
                (None, Some(user), Some(password)) => {
                    let user = read("login_user_env", user);
                    let password = read("login_password_env", password);
                    user.zip(password)
                        .map(|(user, password)| PanelAuth::Login { user, password })
                }
                // Refused when the settings were loaded.
                _ => None,
            };
            if let Some(auth) = auth {
                found.insert(p.name.clone(), auth);
            }
        }
        if problems.is_empty() {
            Ok(found)
        } else {
            Err(ConfigError::new(problems))
        }
    }

    /// The dashboard's admins with their tokens from the process environment: each
    /// `[[admins]]` entry's `token_env`, and `JOBQ_ADMIN_TOKEN` as the admin named `admin`.
    /// Empty when no token is configured. A named variable that is unset, a token shorter than
    /// [`MIN_TOKEN_LEN`] or two admins sharing a token are errors naming the setting (never the
    /// token).
    pub fn admin_tokens(&self) -> Result<Vec<AdminToken>, ConfigError> {
        self.admin_tokens_from(|name| std::env::var(name).ok())
    }

    /// [`Settings::admin_tokens`] with the environment given as a lookup (for tests).
    pub fn admin_tokens_from(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<AdminToken>, ConfigError> {
        let mut problems = Vec::new();
        let mut admins: Vec<(Option<String>, String, AdminToken)> = Vec::new();
        let mut problem = |setting: Option<String>, message: String| {
            problems.push(ConfigProblem {
                setting,
                value: None,
                origin: None,
                message,
            });
        };
        if let Some(token) = lookup(ADMIN_TOKEN_ENV).filter(|t| !t.is_empty()) {
            admins.push((
                None,
                ADMIN_TOKEN_ENV.to_string(),
                AdminToken {
                    name: DEFAULT_ADMIN.to_string(),
                    token: SecretString::from(token),
                },
            ));
        }
        for (i, a) in self.admins.iter().enumerate() {
            let setting = format!("admins[{i}].token_env");
            match lookup(&a.token_env).filter(|t| !t.is_empty()) {
                None => problem(
                    Some(setting),
                    format!(
                        "names the environment variable `{}`, which is not set: set it to \
                         admin {}'s token, or remove the entry",
                        a.token_env, a.name
                    ),
                ),
                Some(token) => admins.push((
                    Some(setting),
                    a.token_env.clone(),
                    AdminToken {
                        name: a.name.clone(),
                        token: SecretString::from(token),
                    },
                )),
            }
        }
        for (setting, var, admin) in &admins {
            let token = admin.token.expose_secret();
            if token.chars().count() < MIN_TOKEN_LEN || token.trim() != token {
                problem(
                    setting.clone(),
                    format!(
                        "the token in `{var}` is too weak: use at least {MIN_TOKEN_LEN} \
                         characters without surrounding spaces (e.g. `openssl rand -hex 32`)"
                    ),
                );
            }
        }
        for (i, (_, var, a)) in admins.iter().enumerate() {
            for (_, other_var, b) in &admins[i + 1..] {
                if a.name == b.name {
                    problem(
                        None,
                        format!(
                            "two admins are named `{}` (`{var}` and `{other_var}`): the audit \
                             log could not tell them apart",
                            a.name
                        ),
                    );
                } else if a.token.expose_secret() == b.token.expose_secret() {
                    problem(
                        None,
                        format!(
                            "`{var}` and `{other_var}` hold the same token: give each admin \
                             their own, so the audit log can tell them apart"
                        ),
                    );
                }
            }
        }
        if problems.is_empty() {
            Ok(admins.into_iter().map(|(_, _, a)| a).collect())
        } else {
            Err(ConfigError::new(problems))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::test_support::*;

    #[test]
    fn panel_credentials_come_from_the_environment_and_never_show() {
        let file = config_file(PANEL_AND_PLAN);
        let s = load(Some(&file), &[], &[]).expect("loads");
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let creds = s
            .panel_credentials_from(env(&[
                ("PANEL_MAIN_TOKEN", "tok-0123456789abcdef"),
                ("BACKUP_USER", "backup-admin"),
                ("BACKUP_PASS", "backup-password-42"),
            ]))
            .expect("credentials");
        match creds.get("main") {
            Some(PanelAuth::Token(t)) => assert_eq!(t.expose_secret(), "tok-0123456789abcdef"),
            other => panic!("main: {other:?}"),
        }
        match creds.get("backup") {
            Some(PanelAuth::Login { user, password }) => {
                assert_eq!(user.expose_secret(), "backup-admin");
                assert_eq!(password.expose_secret(), "backup-password-42");
            }
            other => panic!("backup: {other:?}"),
        }
        let debug = format!("{creds:?}");
        for secret in ["tok-0123", "backup-admin", "backup-password"] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }

        let err = s
            .panel_credentials_from(env(&[("BACKUP_USER", "backup-admin"), ("BACKUP_PASS", "")]))
            .expect_err("missing variables")
            .to_string();
        assert!(err.contains("panels[0].token_env"), "{err}");
        assert!(err.contains("PANEL_MAIN_TOKEN"), "{err}");
        assert!(err.contains("panel main"), "{err}");
        assert!(err.contains("panels[1].login_password_env"), "{err}");
        assert!(err.contains("BACKUP_PASS"), "{err}");
        assert!(!err.contains("backup-admin"), "a value leaked: {err}");

        let none = load(None, &[], &[]).expect("defaults");
        assert!(
            none.panel_credentials_from(|_| None)
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn admins_checked_and_tokens_read_from_the_environment() {
        let file = config_file(
            "[[admins]]\nname = \"alice\"\ntoken_env = \"TOKEN_ALICE\"\n\n\
             [[admins]]\nname = \"bob\"\ntoken_env = \"TOKEN_BOB\"\n",
        );
        let s = load(Some(&file), &[], &[]).expect("admins load");
        assert_eq!(s.admins.len(), 2);
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let tokens = s
            .admin_tokens_from(env(&[
                ("TOKEN_ALICE", "alice-token-0123456789"),
                ("TOKEN_BOB", "bob-token-0123456789"),
                ("JOBQ_ADMIN_TOKEN", "single-token-0123456789"),
            ]))
            .expect("tokens");
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["admin", "alice", "bob"]);
        // Debug never shows a token.
        let debug = format!("{tokens:?}");
        assert!(!debug.contains("alice-token"), "{debug}");
        assert!(!debug.contains("single-token"), "{debug}");

        let err = s
            .admin_tokens_from(env(&[("TOKEN_ALICE", "alice-token-0123456789")]))
            .expect_err("bob's variable unset")
            .to_string();
        assert!(err.contains("admins[1].token_env"), "{err}");
        assert!(err.contains("TOKEN_BOB"), "{err}");

        let err = s
            .admin_tokens_from(env(&[
                ("TOKEN_ALICE", "short"),
                ("TOKEN_BOB", "bob-token-0123456789"),
            ]))
            .expect_err("weak token")
            .to_string();
        assert!(err.contains("TOKEN_ALICE"), "{err}");
        assert!(err.contains("too weak"), "{err}");
        assert!(!err.contains("short"), "the token leaked: {err}");

        let err = s
            .admin_tokens_from(env(&[
                ("TOKEN_ALICE", "same-token-0123456789"),
                ("TOKEN_BOB", "same-token-0123456789"),
            ]))
            .expect_err("shared token")
            .to_string();
        assert!(err.contains("same token"), "{err}");
        assert!(
            !err.contains("same-token-0123456789"),
            "the token leaked: {err}"
        );

        let none = load(None, &[], &[]).expect("defaults");
        assert!(
            none.admin_tokens_from(|_| None)
                .expect("no admins")
                .is_empty()
        );

        let bad = config_file(
            "[[admins]]\nname = \"Alice Smith\"\ntoken_env = \"token-alice\"\n\n\
             [[admins]]\nname = \"bob\"\ntoken_env = \"B\"\n\n\
             [[admins]]\nname = \"bob\"\ntoken_env = \"C\"\n",
        );
        let err = load_err(Some(&bad), &[], &[]);
        assert!(err.contains("admins[0].name"), "{err}");
        assert!(err.contains("admins[0].token_env"), "{err}");
        assert!(err.contains("admins[2].name"), "{err}");
        let unknown = config_file("[[admins]]\nname = \"a\"\ntoken = \"secret\"\n");
        let err = load_err(Some(&unknown), &[], &[]);
        assert!(err.contains("token"), "{err}");
        assert!(!err.contains("secret"), "the token leaked: {err}");
    }
}
