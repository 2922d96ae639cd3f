//! Where transcripts go: object_store's local filesystem or S3, written create-if-absent, and
//! the links their owners get.
//!
//! Writing streams: a transcript is buffered up to one part ([`PART_SIZE`]); if it ends there
//! it is written with one `PutMode::Create` put (S3 `If-None-Match: *`, a hard link locally),
//! so an object that exists is never replaced. A longer one is uploaded in parts of
//! [`PART_SIZE`] with at most [`PARTS_IN_FLIGHT`] in flight, so memory stays near
//! `PART_SIZE * (PARTS_IN_FLIGHT + 1)` whatever the length. Multipart uploads have no create
//! mode in object_store; the caller checks [`TranscriptStore::exists`] first, which leaves
//! one race (see the handler's docs). Neither path ever shows a partial object: S3 publishes
//! a multipart object on completion, the local store renames its staged file into place.
//!
//! Links: S3 gets a presigned GET URL; the local store gets
//! `{base}/transcripts/{key}?expires=UNIX&sig=HEX`, an HMAC under the secret key that
//! `jobq web` checks before serving the file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jobs::configuration::{DatabaseSettings, Settings, TranscriptStoreKind};
use jobs::secret_key::SecretKey;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, RetryConfig, WriteMultipart,
};
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

/// Bytes per multipart part (S3 needs at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once.
pub const PARTS_IN_FLIGHT: usize = 2;
const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// Why the store could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum StoreSetupError {
    #[error(transparent)]
    Credentials(#[from] jobs::configuration::ConfigError),
    #[error("transcripts.store = \"s3\": {0}")]
    S3(String),
    #[error("transcripts.local_dir: {0}")]
    Local(String),
    #[error("{0}")]
    Discord(String),
}

/// A storage failure, classified for the job.
#[derive(Debug)]
pub enum StoreError {
    /// Credentials refused, or the store cannot do what is asked: retrying will not help.
    Permanent(String),
    Retryable(String),
}

impl From<object_store::Error> for StoreError {
    fn from(error: object_store::Error) -> Self {
        use object_store::Error as E;
        let text = format!("storage: {error}");
        match error {
            E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. } => StoreError::Permanent(text),
            _ => StoreError::Retryable(text),
        }
    }
}

/// What [`Upload::finish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Created,
    /// Another attempt wrote it first (the create-if-absent put found it).
    AlreadyThere,
}

/// A link and when it stops working.
#[derive(Debug, Clone)]
pub struct Link {
    pub url: String,
    pub expires: DateTime<Utc>,
}

pub struct TranscriptStore {
    backend: Backend,
}

enum Backend {
    Local(Box<LocalStore>),
    S3 { s3: Arc<AmazonS3> },
}

/// The local directory, opened (and created) on first use, so a worker that never writes a
/// transcript leaves no directory behind.
struct LocalStore {
    dir: PathBuf,
    fs: OnceCell<Arc<LocalFileSystem>>,
    base_url: String,
    keys: LinkKey,
}

/// The secret key local links are signed with: the one loaded at start (with `[[panels]]`),
/// else loaded on first use.
struct LinkKey {
    loaded: OnceCell<Arc<SecretKey>>,
    database: DatabaseSettings,
}

impl LinkKey {
    async fn get(&self) -> Result<Arc<SecretKey>, StoreError> {
        self.loaded
            .get_or_try_init(|| async {
                SecretKey::load(&self.database)
                    .map(|(key, _)| Arc::new(key))
                    .map_err(|e| {
                        StoreError::Permanent(format!(
                            "cannot sign the transcript link (transcripts.store = \"local\"): {e}"
                        ))
                    })
            })
            .await
            .cloned()
    }
}

impl TranscriptStore {
    /// From `[transcripts]`; with `store = "s3"`, the credentials from the variables it names
    /// (an unset one stops start-up, naming it). `key`: the secret key if already loaded.
    pub fn from_settings(
        settings: &Settings,
        key: Option<Arc<SecretKey>>,
    ) -> Result<Self, StoreSetupError> {
        let t = &settings.transcripts;
        let backend = match t.store {
            TranscriptStoreKind::Local => Backend::Local(Box::new(LocalStore {
                dir: std::path::absolute(&t.local_dir)
                    .map_err(|e| StoreSetupError::Local(format!("{e}")))?,
                fs: OnceCell::new(),
                base_url: settings.transcript_base_url(),
                keys: LinkKey {
                    loaded: OnceCell::new_with(key),
                    database: settings.database.clone(),
                },
            })),
            TranscriptStoreKind::S3 => Backend::S3 {
                s3: Arc::new(s3(settings)?),
            },
        };
        Ok(TranscriptStore { backend })
    }

    /// The object a ticket's transcript is stored as: `<guild>/<channel>.html` (S3:
    /// under `transcripts/`).
    pub fn path_for(&self, guild: i64, channel: i64) -> Path {
        match self.backend {
            Backend::Local(_) => Path::from(format!("{guild}/{channel}.html")),
            Backend::S3 { .. } => Path::from(format!("transcripts/{guild}/{channel}.html")),
        }
    }

    async fn store(&self) -> Result<Arc<dyn ObjectStore>, StoreError> {
        match &self.backend {
            Backend::S3 { s3 } => Ok(s3.clone()),
            Backend::Local(local) => {
                let fs = local
                    .fs
                    .get_or_try_init(|| async {
                        std::fs::create_dir_all(&local.dir).map_err(|e| {
                            StoreError::Retryable(format!(
                                "storage: cannot create {}: {e}",
                                local.dir.display()
                            ))
                        })?;
                        LocalFileSystem::new_with_prefix(&local.dir)
                            .map(Arc::new)
                            .map_err(StoreError::from)
                    })
                    .await?;
                Ok(fs.clone())
            }
        }
    }

    pub async fn exists(&self, path: &Path) -> Result<bool, StoreError> {
        match self.store().await?.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts writing `path`; nothing is visible until [`Upload::finish`].
    pub async fn begin(&self, path: Path) -> Result<Upload, StoreError> {
        let attributes = match self.backend {
            // S3 serves the object with this type; the local store has no attributes (jobq web
            // sets the type).
            Backend::S3 { .. } => Attributes::from_iter([(Attribute::ContentType, CONTENT_TYPE)]),
            Backend::Local(_) => Attributes::new(),
        };
        Ok(Upload {
            store: self.store().await?,
            path,
            attributes,
            state: State::Buffer(Vec::new()),
        })
    }

    /// A link to `path` that works for `ttl`.
    pub async fn link(&self, path: &Path, ttl: Duration) -> Result<Link, StoreError> {
        let expires = Utc::now() + ttl;
        let url = match &self.backend {
            Backend::S3 { s3 } => s3
                .signed_url(reqwest::Method::GET, path, ttl)
                .await?
                .to_string(),
            Backend::Local(local) => {
                let key = local.keys.get().await?;
                local_link(&local.base_url, &key, path.as_ref(), expires.timestamp())
            }
        };
        Ok(Link { url, expires })
    }
}

/// `{base}/transcripts/{key}?expires=UNIX&sig=HEX`.
pub fn local_link(base: &str, key: &SecretKey, object_key: &str, expires: i64) -> String {
    let sig = hex_string(&key.transcript_link_mac(object_key, expires));
    format!("{base}/transcripts/{object_key}?expires={expires}&sig={sig}")
}

fn hex_string(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The S3 client: path-style requests, plain HTTP allowed for `http://` endpoints, and few
/// quick retries (the job's own persisted retry does the waiting).
fn s3(settings: &Settings) -> Result<AmazonS3, StoreSetupError> {
    let t = &settings.transcripts;
    let credentials = settings.transcript_s3_credentials()?;
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
    };
    let options = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120));
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&t.s3_bucket)
        .with_region(&t.s3_region)
        .with_access_key_id(credentials.access_key_id.expose_secret())
        .with_secret_access_key(credentials.secret_access_key.expose_secret())
        .with_virtual_hosted_style_request(false)
        .with_retry(retry)
        .with_client_options(options);
    if !t.s3_endpoint.is_empty() {
        builder = builder
            .with_endpoint(t.s3_endpoint.trim_end_matches('/'))
            .with_allow_http(t.s3_endpoint.starts_with("http://"));
    }
    // The builder's errors name settings, never the keys.
    builder
        .build()
        .map_err(|e| StoreSetupError::S3(e.to_string()))
}

/// One transcript being written.
pub struct Upload {
    store: Arc<dyn ObjectStore>,
    path: Path,
    attributes: Attributes,
    state: State,
}

enum State {
    /// Up to one part: written with a single create-if-absent put.
    Buffer(Vec<u8>),
    Multipart(WriteMultipart),
}

impl Upload {
    /// Appends `bytes`, waiting while [`PARTS_IN_FLIGHT`] parts are uploading.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        match &mut self.state {
            State::Buffer(buffer) if buffer.len() + bytes.len() <= PART_SIZE => {
                buffer.extend_from_slice(bytes);
            }
            State::Buffer(buffer) => {
                let buffered = std::mem::take(buffer);
                let options = PutMultipartOptions {
                    attributes: self.attributes.clone(),
                    ..PutMultipartOptions::default()
                };
                let upload = self.store.put_multipart_opts(&self.path, options).await?;
                let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                writer.write(&buffered);
                drop(buffered);
                writer.write(bytes);
                self.state = State::Multipart(writer);
            }
            State::Multipart(writer) => {
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(bytes);
            }
        }
        Ok(())
    }

    pub async fn finish(self) -> Result<Stored, StoreError> {
        match self.state {
            State::Buffer(buffer) => {
                let options = PutOptions {
                    mode: PutMode::Create,
                    attributes: self.attributes,
                    ..PutOptions::default()
                };
                match self
                    .store
                    .put_opts(&self.path, buffer.into(), options)
                    .await
                {
                    Ok(_) => Ok(Stored::Created),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(Stored::AlreadyThere),
                    Err(e) => Err(e.into()),
                }
            }
            State::Multipart(writer) => {
                writer.finish().await?;
                Ok(Stored::Created)
            }
        }
    }

    /// Gives up, removing uploaded parts (best effort: a crash leaves them to the bucket's
    /// lifecycle rule for incomplete multipart uploads).
    pub async fn abort(self) {
        if let State::Multipart(writer) = self.state
            && let Err(error) = writer.abort().await
        {
            tracing::warn!(%error, "could not abort the transcript's multipart upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_links_are_signed_over_key_and_expiry() {
        let key =
            SecretKey::parse("8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073")
                .expect("key");
        let link = local_link("https://shop.example", &key, "1/2.html", 1_900_000_000);
        let prefix = "https://shop.example/transcripts/1/2.html?expires=1900000000&sig=";
        assert!(link.starts_with(prefix), "{link}");
        let sig = &link[prefix.len()..];
        assert_eq!(sig.len(), 64);
        assert_ne!(
            local_link("https://shop.example", &key, "1/2.html", 1_900_000_001),
            link,
            "another expiry, another signature"
        );
        assert_ne!(
            local_link("https://shop.example", &key, "1/3.html", 1_900_000_000)[prefix.len()..]
                .to_string(),
            sig,
            "another object, another signature"
        );
    }
}
