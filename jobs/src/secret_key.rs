//! The secret key: what makes client names (and so subscription links) unguessable.
//!
//! A panel client's name is also the secret part of its subscription link, so it must not be
//! guessable from anything public (the subscription id, the user). It is derived with
//! HMAC-SHA256 under this key from the subscription's id: the same id always gives the same
//! name (a retried job finds the client it created), and without the key no name can be guessed.
//!
//! The key comes from `JOBQ_SECRET_KEY` (at least 32 random bytes, hex or base64, e.g.
//! `openssl rand -hex 32`); every worker of one database must share it. On the embedded SQLite
//! default without it, one is generated on first run and kept next to the database file
//! (`jobq-secret.key`, owner-only permissions), then reused. Neither the key nor anything derived
//! from it appears in logs or errors.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

use crate::configuration::DatabaseSettings;
use crate::kinds::SubscriptionId;
use crate::subscriptions::ClientName;

/// The environment variable holding the key.
pub const SECRET_KEY_ENV: &str = "JOBQ_SECRET_KEY";
/// The file a generated key is kept in, in the SQLite database's directory.
pub const KEY_FILE_NAME: &str = "jobq-secret.key";
/// Keys shorter than this (decoded) are refused.
pub const MIN_KEY_BYTES: usize = 32;
/// The prefix of every client name, so admins can tell jobq's clients on a panel.
pub const CLIENT_NAME_PREFIX: &str = "jq";
/// Characters after the prefix: 20 base32 characters, 100 bits of the MAC.
const CLIENT_NAME_HASH_CHARS: usize = 20;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The key. `Debug` shows `[REDACTED]`; nothing displays it.
#[derive(Clone)]
pub struct SecretKey(SecretSlice<u8>);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

/// Where [`SecretKey::load`] found the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `JOBQ_SECRET_KEY`.
    Environment,
    /// The key file next to the SQLite database; `created` on the run that generated it.
    File { path: PathBuf, created: bool },
}

/// Why no key could be had. Never contains the key, or the text it was given as.
#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("{SECRET_KEY_ENV} {0}")]
    BadEnv(String),
    #[error("the secret key file {} {problem}", path.display())]
    BadFile { path: PathBuf, problem: String },
    #[error("cannot {action} the secret key file {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{SECRET_KEY_ENV} is not set, and {0}: set it to the same key on every worker (e.g. \
         `openssl rand -hex 32`)"
    )]
    Missing(&'static str),
    #[error("cannot generate a secret key: {0}")]
    Random(String),
}

impl SecretKey {
    /// Parses a key given as hex or base64 (standard or URL-safe, padded or not). The error
    /// says what is wrong without repeating the text.
    pub fn parse(text: &str) -> Result<SecretKey, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!(
                "is empty: use at least {MIN_KEY_BYTES} random bytes, hex or base64 \
                 (e.g. `openssl rand -hex 32`)"
            ));
        }
        let is_hex = text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit());
        let bytes = if is_hex {
            hex::decode(text).ok()
        } else {
            use base64::engine::general_purpose::{
                STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
            };
            [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
        };
        let Some(bytes) = bytes else {
            return Err(
                "is neither hex nor base64: generate one with `openssl rand -hex 32`".to_string(),
            );
        };
        if bytes.len() < MIN_KEY_BYTES {
            return Err(format!(
                "is too short: it decodes to {} bytes, at least {MIN_KEY_BYTES} random bytes are \
                 needed (e.g. `openssl rand -hex 32`)",
                bytes.len()
            ));
        }
        if looks_weak(&bytes) {
            return Err(
                "is too weak: it decodes to a pattern or text, not random bytes; generate one \
                 with `openssl rand -hex 32`"
                    .to_string(),
            );
        }
        Ok(SecretKey(SecretSlice::from(bytes)))
    }

    /// 32 fresh random bytes from the operating system.
    pub fn generate() -> Result<SecretKey, SecretKeyError> {
        let mut bytes = vec![0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| SecretKeyError::Random(e.to_string()))?;
        Ok(SecretKey(SecretSlice::from(bytes)))
    }

    /// The key for a process on `database`: `JOBQ_SECRET_KEY` if set; else, on SQLite with a
    /// database file, the key file next to it, generated (and logged) on the first run.
    pub fn load(database: &DatabaseSettings) -> Result<(SecretKey, KeySource), SecretKeyError> {
        let env = match std::env::var_os(SECRET_KEY_ENV) {
            None => None,
            Some(value) => Some(value.into_string().map_err(|_| {
                SecretKeyError::BadEnv("is not valid UTF-8: use hex or base64".to_string())
            })?),
        };
        Self::load_with(database, env.as_deref())
    }

    /// [`SecretKey::load`] with the variable's value given (for tests).
    pub fn load_with(
        database: &DatabaseSettings,
        env: Option<&str>,
    ) -> Result<(SecretKey, KeySource), SecretKeyError> {
        if let Some(value) = env {
            let key = Self::parse(value).map_err(SecretKeyError::BadEnv)?;
            return Ok((key, KeySource::Environment));
        }
        let Some(db_file) = database.url.sqlite_path() else {
            return Err(SecretKeyError::Missing(match database.url.backend() {
                crate::configuration::Backend::Postgres => {
                    "the database is PostgreSQL, whose workers may run on many machines"
                }
                crate::configuration::Backend::Sqlite => {
                    "the SQLite database is in memory, with no directory to keep a key in"
                }
            }));
        };
        let dir = match db_file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (key, path, created) = Self::load_or_create_file(&dir)?;
        if created {
            tracing::info!(
                path = %path.display(),
                "{SECRET_KEY_ENV} is not set: generated a secret key and stored it (owner-only) \
                 at this path; it is reused from now on. Keep it with the database."
            );
        }
        Ok((key, KeySource::File { path, created }))
    }

    /// The key in `dir`/[`KEY_FILE_NAME`], created (mode 0600) if absent. Two processes starting
    /// together agree on one key: the file appears whole or not at all, never overwritten.
    pub fn load_or_create_file(dir: &Path) -> Result<(SecretKey, PathBuf, bool), SecretKeyError> {
        let path = dir.join(KEY_FILE_NAME);
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| SecretKeyError::Io {
                action,
                path,
                source,
            }
        };
        if path.exists() {
            return Ok((read_key_file(&path)?, path, false));
        }
        std::fs::create_dir_all(dir).map_err(io("create the directory of", &path))?;
        let key = Self::generate()?;
        let temp = dir.join(format!(".{KEY_FILE_NAME}.{:016x}.tmp", fastrand::u64(..)));
        let written = (|| {
            let mut file = owner_only_options()
                .open(&temp)
                .map_err(io("create", &temp))?;
            let text = format!("{}\n", hex::encode(key.0.expose_secret()));
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io("write", &temp))?;
            Ok::<(), SecretKeyError>(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        // A hard link never replaces an existing file: if another process got there first, its
        // key wins and ours is dropped.
        let linked = std::fs::hard_link(&temp, &path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                if let Ok(d) = std::fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok((key, path, true))
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((read_key_file(&path)?, path, false))
            }
            Err(e) => Err(io("create", &path)(e)),
        }
    }

    /// HMAC-SHA256 of `message` under this key, separated by `purpose` so that no two uses of
    /// the key can produce each other's values.
    pub fn mac(&self, purpose: &str, message: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.expose_secret()) else {
            unreachable!("HMAC accepts keys of every length")
        };
        mac.update(b"jobq\0");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// The panel client name of subscription `id`: `jq` and 20 characters of a-z and 2-7 (100
    /// bits of the MAC), 22 in all. Stable for one key and id; unguessable without the key.
    pub fn client_name(&self, id: SubscriptionId) -> ClientName {
        let digest = self.mac("client-name/v1", id.get().to_string().as_bytes());
        let mut name = String::with_capacity(CLIENT_NAME_PREFIX.len() + CLIENT_NAME_HASH_CHARS);
        name.push_str(CLIENT_NAME_PREFIX);
        name.push_str(&base32(&digest, CLIENT_NAME_HASH_CHARS));
        ClientName::new(name)
    }

    /// The signature of a local transcript link: HMAC of the object's key and the link's
    /// expiry (Unix seconds), so neither can be changed without the key. Compare it in
    /// constant time.
    pub fn transcript_link_mac(&self, object_key: &str, expires: i64) -> [u8; 32] {
        let message = format!("{object_key}\n{expires}");
        self.mac("transcript-link/v1", message.as_bytes())
    }
}

fn read_key_file(path: &Path) -> Result<SecretKey, SecretKeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretKeyError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    restrict_permissions(path);
    SecretKey::parse(&text).map_err(|problem| SecretKeyError::BadFile {
        path: path.to_path_buf(),
        problem: format!("{problem} (delete it only if no subscription was created with it)"),
    })
}

/// A key file others can read is tightened to owner-only, with a warning.
#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        let tightened = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", mode & 0o777),
            tightened = tightened.is_ok(),
            "the secret key file was readable by other users: set to owner-only (0600)"
        );
    }
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

fn owner_only_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

/// Random bytes do not look like this (each test fails 32 random bytes with odds far below
/// 1 in 10^12):
/// - few distinct values: a low-entropy pattern (`00…`, a short alphabet);
/// - all printable ASCII: a passphrase encoded (odds for random bytes about 1 in 10^14);
/// - few distinct steps between neighbours: a counting sequence (`00 01 02 …`, `ff fd fb …`);
/// - a repetition of a shorter block (`range(16)` twice).
fn looks_weak(bytes: &[u8]) -> bool {
    use std::collections::BTreeSet;
    let distinct = bytes.iter().collect::<BTreeSet<_>>().len();
    let steps = bytes
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .collect::<BTreeSet<_>>()
        .len();
    let repeats =
        (1..=bytes.len() / 2).any(|period| bytes.iter().zip(&bytes[period..]).all(|(a, b)| a == b));
    distinct < 16 || steps < 16 || repeats || bytes.iter().all(|b| (0x20..0x7f).contains(b))
}

/// The first `chars` characters of `bytes` in lowercase base32 (RFC 4648 alphabet, no padding).
fn base32(bytes: &[u8], chars: usize) -> String {
    let mut out = String::with_capacity(chars);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
            if out.len() == chars {
                return out;
            }
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 && out.len() < chars {
        // The last bits, padded with zeros.
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::Settings;

    const HEX_KEY: &str = "8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073";

    fn key() -> SecretKey {
        SecretKey::parse(HEX_KEY).expect("valid key")
    }

    fn id(n: i64) -> SubscriptionId {
        SubscriptionId::try_from(n).expect("positive")
    }

    fn sqlite_settings(dir: &Path) -> DatabaseSettings {
        let url = format!("sqlite://{}", dir.join("jobq.db").display());
        Settings::load_with_env(None, [("JOBQ_DATABASE_URL", url.as_str())], &[])
            .expect("settings")
            .database
    }

    #[test]
    fn client_names_are_stable_distinct_and_in_the_panels_alphabet() {
        let k = key();
        let a = k.client_name(id(1));
        assert_eq!(a, k.client_name(id(1)), "stable for one id");
        assert_eq!(
            a,
            SecretKey::parse(HEX_KEY)
                .expect("same key")
                .client_name(id(1)),
            "stable across processes"
        );
        let name = a.expose();
        assert_eq!(name.len(), 22, "{name}");
        assert!(name.starts_with("jq"), "{name}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "{name}"
        );
        let names: std::collections::BTreeSet<String> = (1..=2000)
            .map(|n| k.client_name(id(n)).expose().to_string())
            .collect();
        assert_eq!(names.len(), 2000, "different ids give different names");
        let other = SecretKey::generate().expect("random key");
        assert_ne!(other.client_name(id(1)), a, "another key, another name");
        // Known answer: the derivation must not change under existing subscriptions.
        assert_eq!(name, KNOWN_NAME_OF_ID_1);
    }

    /// `client_name(1)` under [`HEX_KEY`], checked independently:
    /// `'jq' + b32(HMAC-SHA256(key, b"jobq\0client-name/v1\0" + b"1")).lower()[:20]`.
    /// Changing the derivation would change the names of retried provisions.
    const KNOWN_NAME_OF_ID_1: &str = "jqpicx776gmerkbrp25kxz";

    #[test]
    fn base32_is_rfc4648() {
        // RFC 4648 test vectors, lowercase, unpadded.
        assert_eq!(base32(b"f", 2), "my");
        assert_eq!(base32(b"foobar", 8), "mzxw6ytb");
        assert_eq!(base32(b"foob", 7), "mzxw6yq");
    }

    #[test]
    fn keys_parse_from_hex_and_base64() {
        let raw: Vec<u8> = hex::decode(HEX_KEY).expect("hex");
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let forms = [
            hex::encode(&raw),
            hex::encode_upper(&raw),
            STANDARD.encode(&raw),
            URL_SAFE_NO_PAD.encode(&raw),
            format!("  {}\n", hex::encode(&raw)),
        ];
        let expected = SecretKey(SecretSlice::from(raw.clone())).client_name(id(7));
        for form in forms {
            let k = SecretKey::parse(&form).unwrap_or_else(|e| panic!("{form}: {e}"));
            assert_eq!(k.client_name(id(7)), expected, "{form}");
        }
    }

    #[test]
    fn random_keys_are_never_taken_for_patterns() {
        for _ in 0..10_000 {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).expect("random");
            assert!(!looks_weak(&bytes), "{}", hex::encode(bytes));
        }
    }

    #[test]
    fn weak_or_malformed_keys_are_refused_without_echoing_them() {
        let cases = [
            ("", "empty"),
            ("correct horse battery staple", "neither hex nor base64"),
            ("abcdef0123456789", "too short"),
            (&"00".repeat(32), "too weak"),
            (&"0123456789abcdef".repeat(4), "too weak"),
            // Counting sequences and repeated blocks: every byte value distinct, still a pattern.
            (&hex::encode((0u8..32).collect::<Vec<_>>()), "too weak"),
            (
                &hex::encode((0u8..32).rev().collect::<Vec<_>>()),
                "too weak",
            ),
            (
                &hex::encode((0u8..64).step_by(2).collect::<Vec<_>>()),
                "too weak",
            ),
            (
                &hex::encode((0u8..16).chain(0..16).collect::<Vec<_>>()),
                "too weak",
            ),
            (
                &hex::encode([0x8f, 0x1c, 0x55, 0x3a, 0xd0, 0x07, 0xe4, 0x92].repeat(4)),
                "too weak",
            ),
            // 48 bytes of base64-encoded text: a passphrase, not a key.
            (
                "dGhpcyBpcyBteSB2ZXJ5IGxvbmcgYW5kIHZlcnkgc2VjcmV0IHBhc3NwaHJhc2UhISE=",
                "too weak",
            ),
        ];
        let dir = tempfile::tempdir().expect("dir");
        let settings = sqlite_settings(dir.path());
        for (value, why) in cases {
            let err = SecretKey::load_with(&settings, Some(value))
                .expect_err(value)
                .to_string();
            assert!(err.starts_with(SECRET_KEY_ENV), "{value}: {err}");
            assert!(err.contains(why), "{value}: {err}");
            if !value.is_empty() {
                assert!(!err.contains(value), "the value leaked: {err}");
            }
        }
        // A refused variable never falls back to the file.
        assert!(!dir.path().join(KEY_FILE_NAME).exists());
        let debug = format!("{:?}", key());
        assert!(!debug.contains("8b80c836"), "{debug}");
    }

    #[test]
    fn the_environment_wins() {
        let dir = tempfile::tempdir().expect("dir");
        let (k, source) =
            SecretKey::load_with(&sqlite_settings(dir.path()), Some(HEX_KEY)).expect("env key");
        assert_eq!(source, KeySource::Environment);
        assert_eq!(k.client_name(id(3)), key().client_name(id(3)));
        assert!(!dir.path().join(KEY_FILE_NAME).exists(), "no file written");
    }

    #[test]
    fn on_sqlite_a_key_is_generated_once_owner_only_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("data");
        let settings = sqlite_settings(&data);
        let (first, source) = SecretKey::load_with(&settings, None).expect("generated");
        let path = data.join(KEY_FILE_NAME);
        assert_eq!(
            source,
            KeySource::File {
                path: path.clone(),
                created: true
            }
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
        }
        let (again, source) = SecretKey::load_with(&settings, None).expect("reused");
        assert_eq!(
            source,
            KeySource::File {
                path: path.clone(),
                created: false
            }
        );
        assert_eq!(again.client_name(id(9)), first.client_name(id(9)));
        // No temporary files left behind.
        let entries: Vec<_> = std::fs::read_dir(&data)
            .expect("dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(entries, [std::ffi::OsString::from(KEY_FILE_NAME)]);

        // A damaged file is an error naming it, not a silent new key.
        std::fs::write(&path, "not a key\n").expect("overwrite");
        let err = SecretKey::load_with(&settings, None)
            .expect_err("damaged")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_readable_by_others_is_tightened() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let (first, path, created) = SecretKey::load_or_create_file(dir.path()).expect("created");
        assert!(created);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (again, _, created) = SecretKey::load_or_create_file(dir.path()).expect("reused");
        assert!(!created);
        assert_eq!(again.client_name(id(1)), first.client_name(id(1)));
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    #[test]
    fn concurrent_first_runs_agree_on_one_key() {
        let dir = tempfile::tempdir().expect("dir");
        let names: Vec<ClientName> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        SecretKey::load_or_create_file(dir.path())
                            .expect("key")
                            .0
                            .client_name(id(1))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        assert!(names.windows(2).all(|w| w[0] == w[1]), "{names:?}");
    }

    #[test]
    fn postgres_and_in_memory_need_the_variable() {
        for url in ["postgres://postgres@127.0.0.1/x", "sqlite::memory:"] {
            let settings = Settings::load_with_env(None, [("JOBQ_DATABASE_URL", url)], &[])
                .expect("settings")
                .database;
            let err = SecretKey::load_with(&settings, None)
                .expect_err(url)
                .to_string();
            assert!(err.contains(SECRET_KEY_ENV), "{err}");
            assert!(err.contains("is not set"), "{err}");
            assert!(SecretKey::load_with(&settings, Some(HEX_KEY)).is_ok());
        }
    }
}
