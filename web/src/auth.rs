//! Who may use the dashboard, and how each request proves it.
//!
//! - Admins' tokens come from the environment; only their SHA-256 digests are kept, and a
//!   presented token is compared with every admin's digest in constant time.
//! - Browsers log in through a form; the session id (32 random bytes from the OS) goes in an
//!   HttpOnly, SameSite=Strict cookie, and the server keeps, in memory, the session's admin,
//!   CSRF token and expiry, under the id's digest. Sessions end at logout, at expiry, or when
//!   the process restarts.
//! - Scripts send `Authorization: Bearer TOKEN` on every request and need no CSRF token.
//! - Wrong tokens are limited per client address, however they are presented (the login form
//!   or `Authorization: Bearer`): past [`MAX_FAILURES`] a minute, that address is answered 429
//!   for every token, the right one included, so guessing cannot be confirmed. Another
//!   address (another admin) is never locked out by a stranger.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use jobs::configuration::AdminToken;
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AppState, views};

pub const SESSION_COOKIE: &str = "jobq_session";
/// Wrong tokens allowed from one address per [`FAILURE_WINDOW`] before it is answered 429.
const MAX_FAILURES: usize = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it, those without a recent failure are forgotten first.
const MAX_TRACKED: usize = 10_000;

type Digest32 = [u8; 32];

fn digest(text: &str) -> Digest32 {
    Sha256::digest(text.as_bytes()).into()
}

struct Session {
    admin: String,
    csrf: String,
    expires: Instant,
}

pub(crate) struct Auth {
    admins: Vec<(String, Digest32)>,
    sessions: Mutex<HashMap<Digest32, Session>>,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    ttl: Duration,
}

/// A random 256-bit value, hex-encoded: session ids and CSRF tokens.
fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

impl Auth {
    pub(crate) fn new(admins: &[AdminToken], ttl: Duration) -> Auth {
        Auth {
            admins: admins
                .iter()
                .map(|a| (a.name.clone(), digest(a.token.expose_secret())))
                .collect(),
            sessions: Mutex::default(),
            failures: Mutex::default(),
            ttl,
        }
    }

    /// The admin holding `token`. Every admin's digest is compared, in constant time, whatever
    /// matches, so the time taken says nothing about the tokens.
    pub(crate) fn admin_for_token(&self, token: &str) -> Option<String> {
        let presented = digest(token);
        let mut found = None;
        for (name, expected) in &self.admins {
            if bool::from(presented.ct_eq(expected)) {
                found = Some(name.clone());
            }
        }
        found
    }

    /// A new session for `admin`: its id (for the cookie) and its CSRF token.
    fn create_session(&self, admin: String) -> Option<(String, String)> {
        let id = random_token().ok()?;
        let csrf = random_token().ok()?;
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(
            digest(&id),
            Session {
                admin,
                csrf: csrf.clone(),
                expires: now + self.ttl,
            },
        );
        Some((id, csrf))
    }

    /// The admin and CSRF token of a live session.
    fn session(&self, id: &str) -> Option<(String, String)> {
        let mut sessions = self.sessions.lock().ok()?;
        let key = digest(id);
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some((s.admin.clone(), s.csrf.clone())),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    fn end_session(&self, id: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&digest(id));
        }
    }

    /// Records a wrong token presented from `client`.
    fn note_failure(&self, client: IpAddr) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_TRACKED {
            let now = Instant::now();
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= FAILURE_WINDOW)
            });
        }
        failures
            .entry(client)
            .or_default()
            .push_back(Instant::now());
    }

    /// Whether `client` presented too many wrong tokens in the last [`FAILURE_WINDOW`].
    fn locked_out(&self, client: IpAddr) -> bool {
        let Ok(mut failures) = self.failures.lock() else {
            return true;
        };
        let Some(times) = failures.get_mut(&client) else {
            return false;
        };
        let now = Instant::now();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
        {
            times.pop_front();
        }
        if times.is_empty() {
            failures.remove(&client);
            return false;
        }
        times.len() >= MAX_FAILURES
    }
}

/// The admin making a request.
pub(crate) struct Admin {
    pub(crate) name: String,
    /// The session's CSRF token; `None` for Bearer requests, which need none.
    pub(crate) csrf: Option<String>,
}

impl Admin {
    /// Refuses a state-changing browser request whose form lacks the session's CSRF token.
    /// `Some(refusal)` for a browser request without the session's token.
    pub(crate) fn csrf_refusal(&self, presented: Option<&str>) -> Option<Response> {
        let expected = self.csrf.as_ref()?;
        let ok = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
        if ok {
            None
        } else {
            tracing::warn!(admin = %self.name, "request refused: missing or wrong CSRF token");
            Some((
                StatusCode::FORBIDDEN,
                views::message_page(
                    "Request refused",
                    "The form's CSRF token is missing or wrong. Go back, reload the page and try again.",
                ),
            )
                .into_response())
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// Whether the client is a browser asking for a page (sent to the login form) rather than a
/// script (answered 401).
fn wants_page(parts: &Parts) -> bool {
    parts.method == Method::GET
        && parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

fn unauthorized(message: &'static str) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"jobq\""),
    );
    response
}

/// The address a request came from (the peer of its connection); one shared bucket when the
/// router is served without connection info.
pub(crate) struct ClientAddr(pub IpAddr);

impl ClientAddr {
    fn of(parts: &Parts) -> ClientAddr {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        ClientAddr(peer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr::of(parts))
    }
}

fn too_many_failures() -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        "too many wrong tokens from this address in the last minute: wait a minute\n",
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    response
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let auth = &state.inner.auth;
        if let Some(token) = bearer(&parts.headers) {
            let ClientAddr(client) = ClientAddr::of(parts);
            if auth.locked_out(client) {
                tracing::warn!(%client, "request refused: too many wrong tokens from this address");
                return Err(too_many_failures());
            }
            return match auth.admin_for_token(token) {
                Some(name) => Ok(Admin { name, csrf: None }),
                None => {
                    auth.note_failure(client);
                    tracing::warn!(%client, "request refused: wrong bearer token");
                    Err(unauthorized("wrong token\n"))
                }
            };
        }
        if let Some((name, csrf)) = session_cookie(&parts.headers).and_then(|id| auth.session(id)) {
            return Ok(Admin {
                name,
                csrf: Some(csrf),
            });
        }
        if wants_page(parts) {
            let next = parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish();
            return Err(Redirect::to(&format!("/login?{query}")).into_response());
        }
        Err(unauthorized(
            "log in: send Authorization: Bearer TOKEN, or use the login form at /login\n",
        ))
    }
}

/// Only a path on this site: never another host (`//evil`, `/\evil`) or a scheme.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

pub(crate) async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    views::login(&safe_next(q.next.as_deref()), None).into_response()
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    token: Option<String>,
    next: Option<String>,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    Form(form): Form<LoginForm>,
) -> Response {
    let auth = &state.inner.auth;
    let next = safe_next(form.next.as_deref());
    if auth.locked_out(client) {
        tracing::warn!(%client, "login refused: too many failed logins from this address");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            views::login(
                &next,
                Some("Too many failed logins in the last minute. Wait a minute and try again."),
            ),
        )
            .into_response();
    }
    let token = form.token.unwrap_or_default();
    let Some(admin) = auth.admin_for_token(token.trim()) else {
        auth.note_failure(client);
        tracing::warn!(%client, "login refused: wrong token");
        return (
            StatusCode::UNAUTHORIZED,
            views::login(&next, Some("That token is not an admin's token.")),
        )
            .into_response();
    };
    let Some((id, _csrf)) = auth.create_session(admin.clone()) else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            views::message_page("Login failed", "Could not start a session; try again."),
        )
            .into_response();
    };
    tracing::info!(%admin, "admin logged in to the dashboard");
    let secure = if state.inner.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        auth.ttl.as_secs()
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The `csrf` field of a form body. Any body is accepted (a Bearer script may send none).
pub(crate) fn csrf_field(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value.into_owned())
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    admin: Admin,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(refused) = admin.csrf_refusal(csrf_field(&body).as_deref()) {
        return refused;
    }
    if let Some(id) = session_cookie(&headers) {
        state.inner.auth.end_session(id);
    }
    tracing::info!(admin = %admin.name, "admin logged out of the dashboard");
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("jobq_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn auth(ttl: Duration) -> Auth {
        let admins = [
            AdminToken {
                name: "alice".into(),
                token: SecretString::from("alice-token-0123456789"),
            },
            AdminToken {
                name: "bob".into(),
                token: SecretString::from("bob-token-0123456789"),
            },
        ];
        Auth::new(&admins, ttl)
    }

    #[test]
    fn tokens_name_their_admin() {
        let auth = auth(Duration::from_secs(60));
        assert_eq!(
            auth.admin_for_token("alice-token-0123456789").as_deref(),
            Some("alice")
        );
        assert_eq!(
            auth.admin_for_token("bob-token-0123456789").as_deref(),
            Some("bob")
        );
        assert_eq!(auth.admin_for_token("alice-token-012345678"), None);
        assert_eq!(auth.admin_for_token(""), None);
    }

    #[test]
    fn sessions_expire_and_end() {
        let auth = auth(Duration::from_secs(60));
        let (id, csrf) = auth.create_session("alice".into()).expect("session");
        assert_eq!(id.len(), 64);
        assert_ne!(id, csrf);
        assert_eq!(auth.session(&id), Some(("alice".into(), csrf)));
        assert_eq!(auth.session("not-a-session"), None);
        auth.end_session(&id);
        assert_eq!(auth.session(&id), None);

        let expired = self::auth(Duration::ZERO);
        let (id, _) = expired.create_session("bob".into()).expect("session");
        assert_eq!(expired.session(&id), None);
    }

    #[test]
    fn failed_logins_are_limited_per_address() {
        let auth = auth(Duration::from_secs(60));
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        let admin: IpAddr = "198.51.100.7".parse().expect("ip");
        for _ in 0..MAX_FAILURES {
            assert!(!auth.locked_out(stranger));
            auth.note_failure(stranger);
        }
        assert!(auth.locked_out(stranger));
        assert!(!auth.locked_out(admin), "another address is not locked out");
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/jobs?state=failed")), "/jobs?state=failed");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn csrf_checked_for_sessions_only() {
        let browser = Admin {
            name: "alice".into(),
            csrf: Some("abc".into()),
        };
        assert!(browser.csrf_refusal(Some("abc")).is_none());
        assert!(browser.csrf_refusal(Some("abd")).is_some());
        assert!(browser.csrf_refusal(None).is_some());
        let script = Admin {
            name: "alice".into(),
            csrf: None,
        };
        assert!(script.csrf_refusal(None).is_none());
    }
}
