//! `GET /transcripts/{guild}/{channel}.html?expires=UNIX&sig=HEX`: a ticket transcript from the
//! local store, for whoever holds the link the worker DMed (no login: the link is the
//! credential). The signature (HMAC under the secret key over the object key and the expiry)
//! is compared in constant time, then the expiry; any failure is the same 403, so a guesser
//! learns nothing. Only `<digits>/<digits>.html` is served: no path can leave the directory.
//! The file is streamed as `text/html` with a policy that allows no script at all.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jobs::configuration::{DatabaseSettings, Settings, TranscriptStoreKind};
use jobs::secret_key::SecretKey;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

/// The policy transcripts are served with: styles of the page itself, nothing else; sandboxed
/// (no script, no forms, no navigation of the opener).
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'; sandbox";
const CHUNK: usize = 64 * 1024;

/// The local store's links, when `[transcripts] store = "local"`.
#[derive(Clone)]
pub struct TranscriptLinks {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    database: DatabaseSettings,
    /// Loaded on the first request (as the worker does): a dashboard that serves no
    /// transcript needs no key.
    key: OnceCell<Option<Arc<SecretKey>>>,
}

impl TranscriptLinks {
    /// `None` unless transcripts are stored locally.
    pub fn from_settings(settings: &Settings) -> Option<TranscriptLinks> {
        let t = &settings.transcripts;
        (t.store == TranscriptStoreKind::Local).then(|| TranscriptLinks {
            inner: Arc::new(Inner {
                dir: t.local_dir.clone(),
                database: settings.database.clone(),
                key: OnceCell::new(),
            }),
        })
    }

    /// The route, with its own state and headers.
    pub fn router(self) -> Router {
        Router::new()
            .route("/transcripts/{guild}/{file}", get(serve))
            .with_state(self)
    }

    async fn key(&self) -> Option<Arc<SecretKey>> {
        self.inner
            .key
            .get_or_init(|| async {
                match SecretKey::load(&self.inner.database) {
                    Ok((key, _)) => Some(Arc::new(key)),
                    Err(error) => {
                        tracing::warn!(%error, "transcript links cannot be checked without the secret key");
                        None
                    }
                }
            })
            .await
            .clone()
    }
}

#[derive(Deserialize)]
struct LinkQuery {
    expires: Option<String>,
    sig: Option<String>,
}

async fn serve(
    State(links): State<TranscriptLinks>,
    Path((guild, file)): Path<(String, String)>,
    Query(query): Query<LinkQuery>,
) -> Response {
    let Some(object_key) = object_key(&guild, &file) else {
        return refuse(StatusCode::NOT_FOUND, "No such transcript.");
    };
    let Some(key) = links.key().await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Transcript links cannot be checked right now.",
        );
    };
    let now = chrono::Utc::now().timestamp();
    if !link_is_valid(&key, &object_key, &query, now) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This link is not valid, or it has expired. Ask for a new one.",
        );
    }
    let path = links.inner.dir.join(&guild).join(&file);
    match tokio::fs::File::open(&path).await {
        Ok(file) => transcript_response(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            refuse(StatusCode::NOT_FOUND, "No such transcript.")
        }
        Err(error) => {
            tracing::warn!(%error, key = %object_key, "cannot read a transcript");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The transcript cannot be read.",
            )
        }
    }
}

/// `<guild>/<channel>.html` when both are snowflakes; nothing else is ever a key.
fn object_key(guild: &str, file: &str) -> Option<String> {
    let digits = |s: &str| (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    let channel = file.strip_suffix(".html")?;
    (digits(guild) && digits(channel)).then(|| format!("{guild}/{channel}.html"))
}

/// The signature first, in constant time, then the expiry.
fn link_is_valid(key: &SecretKey, object_key: &str, query: &LinkQuery, now: i64) -> bool {
    let (Some(expires), Some(sig)) = (&query.expires, &query.sig) else {
        return false;
    };
    let Ok(expires) = expires.parse::<i64>() else {
        return false;
    };
    let Ok(given) = hex::decode(sig) else {
        return false;
    };
    let expected = key.transcript_link_mac(object_key, expires);
    let signed: bool = expected.as_slice().ct_eq(given.as_slice()).into();
    signed && expires > now
}

fn transcript_response(file: tokio::fs::File) -> Response {
    let chunks = futures::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0; CHUNK];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    headers(&mut response, "text/html; charset=utf-8");
    response
}

fn refuse(status: StatusCode, message: &'static str) -> Response {
    let mut response = (status, message).into_response();
    headers(&mut response, "text/plain; charset=utf-8");
    response
}

fn headers(response: &mut Response, content_type: &'static str) {
    let h = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_TYPE, content_type);
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::CACHE_CONTROL, "private, no-store");
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073";

    fn query(expires: i64, sig: &str) -> LinkQuery {
        LinkQuery {
            expires: Some(expires.to_string()),
            sig: Some(sig.to_string()),
        }
    }

    #[test]
    fn only_snowflake_keys_are_served() {
        assert_eq!(object_key("12", "34.html").as_deref(), Some("12/34.html"));
        for (guild, file) in [
            ("..", "34.html"),
            ("12", "..%2f34.html"),
            ("12", "34.htm"),
            ("12", ".html"),
            ("12", "34.html.bak"),
            ("1a", "34.html"),
            ("12", "-3.html"),
            ("123456789012345678901", "3.html"),
        ] {
            assert_eq!(object_key(guild, file), None, "{guild}/{file}");
        }
    }

    #[test]
    fn a_link_is_valid_only_as_signed_and_before_its_expiry() {
        let key = SecretKey::parse(HEX_KEY).expect("key");
        let sig = hex::encode(key.transcript_link_mac("1/2.html", 2_000));
        assert!(link_is_valid(&key, "1/2.html", &query(2_000, &sig), 1_999));
        assert!(
            !link_is_valid(&key, "1/2.html", &query(2_000, &sig), 2_000),
            "expired"
        );
        assert!(
            !link_is_valid(&key, "1/2.html", &query(3_000, &sig), 1_999),
            "expiry moved"
        );
        assert!(
            !link_is_valid(&key, "1/3.html", &query(2_000, &sig), 1_999),
            "other object"
        );
        let mut tampered = sig.clone().into_bytes();
        tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(tampered).expect("hex");
        assert!(!link_is_valid(
            &key,
            "1/2.html",
            &query(2_000, &tampered),
            1_999
        ));
        assert!(!link_is_valid(
            &key,
            "1/2.html",
            &query(2_000, &sig[..62]),
            1_999
        ));
        assert!(!link_is_valid(&key, "1/2.html", &query(2_000, "zz"), 1_999));
        let missing = LinkQuery {
            expires: None,
            sig: Some(sig),
        };
        assert!(!link_is_valid(&key, "1/2.html", &missing, 1_999));
        let other = SecretKey::generate().expect("key");
        let forged = hex::encode(other.transcript_link_mac("1/2.html", 2_000));
        assert!(!link_is_valid(
            &key,
            "1/2.html",
            &query(2_000, &forged),
            1_999
        ));
    }
}
