//! The S-UI client, following `docs/panel-api.md`:
//!
//! - the token API (`{B}apiv2/:action`, header `Token`), or, given a login user and password
//!   instead, the cookie session (`{B}api/login` → cookie `s-ui`, `X-Requested-With:
//!   XMLHttpRequest` so a lapsed session answers `Invalid login` rather than a redirect; one
//!   re-login and one retry when it lapses);
//! - form-encoded bodies only; the `{success,msg,obj}` envelope, an error decided by `success`
//!   alone (the message is only read to tell a bad credential from a refused request);
//! - one `reqwest` client (connection pool) per panel, rustls, a timeout on every call;
//! - the version from `status?r=sys` (`appVersion`), detected once: the token API needs 1.2 or
//!   later (before it `/apiv2` is a 404); 1.2–1.5 are spoken, anything else is refused;
//! - edits are read-modify-write of the whole row (`save` `edit` replaces the row): the row is
//!   read in full (`clients?id=N`, never the summary listing, which in 1.5 reads
//!   `delayStart`…`totalDown` as zero) right before the write, so the usage counters written back
//!   are at most one round trip old.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use jobs::redact::{mask, mask_urls};
use reqwest::header::{COOKIE, HeaderMap, RETRY_AFTER, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, OnceCell};

use super::credentials::ClientCredentials;
use super::limited::PanelLimits;
use super::{
    ClientChange, NewClient, Panel, PanelClient, PanelError, PanelInbound, PanelVersion,
    SubscriptionLink,
};

/// The oldest version spoken: the token API arrived in 1.2.0.
const OLDEST: (u32, u32) = (1, 2);
/// The newest minor version this client knows the differences of.
const NEWEST: (u32, u32) = (1, 5);
/// How often one request is sent while the panel answers 429, before its job snoozes.
const SENDS_PER_429: u32 = 3;
/// The wait after a 429 that gave no Retry-After.
const RETRY_AFTER_UNSAID: Duration = Duration::from_secs(1);

/// How the client proves who it is.
#[derive(Clone)]
pub enum SuiAuth {
    /// An API token (`api/addToken`), sent as the `Token` header to `/apiv2`.
    Token(String),
    /// A login user and password: the `/api` cookie session.
    Login { user: String, pass: String },
}

impl fmt::Debug for SuiAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuiAuth::Token(token) => write!(f, "Token({})", mask(token)),
            SuiAuth::Login { user, .. } => {
                write!(f, "Login {{ user: {}, pass: {} }}", mask(user), mask(""))
            }
        }
    }
}

tokio::task_local! {
    /// Set while a task holds one permit for a group of requests ([`SuiPanel::holding`]).
    static HOLDING_PERMIT: ();
}

/// How to reach one panel.
#[derive(Clone)]
pub struct SuiOptions {
    /// The base URL including the web path, e.g. `http://127.0.0.1:2095/app/`.
    pub url: String,
    pub auth: SuiAuth,
    /// The limit of each call, from connecting to the last byte of the answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl SuiOptions {
    pub fn new(url: impl Into<String>, auth: SuiAuth) -> Self {
        SuiOptions {
            url: url.into(),
            auth,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for SuiOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuiOptions")
            .field("url", &mask_urls(&self.url))
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// One S-UI panel: one connection pool, one login session, its version once detected.
pub struct SuiPanel {
    base: String,
    auth: SuiAuth,
    timeout: Duration,
    http: reqwest::Client,
    /// The `s-ui` cookie of the current login session.
    session: Mutex<Option<String>>,
    version: OnceCell<PanelVersion>,
    /// The entry's limits across all workers, when the panel is used by handlers.
    limits: Option<PanelLimits>,
}

impl fmt::Debug for SuiPanel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuiPanel")
            .field("url", &mask_urls(&self.base))
            .field("auth", &self.auth)
            .field("timeout", &self.timeout)
            .field("version", &self.version.get())
            .finish()
    }
}

/// A call's form fields or query.
type Fields<'a> = &'a [(&'a str, &'a str)];

impl SuiPanel {
    pub fn new(options: SuiOptions) -> Result<SuiPanel, PanelError> {
        let mut base = options.url.trim().to_owned();
        if !base.ends_with('/') {
            base.push('/');
        }
        if reqwest::Url::parse(&base).is_err() {
            return Err(PanelError::Rejected(format!(
                "the panel URL {} does not parse",
                mask_urls(&base)
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| PanelError::Transport(describe(&error)))?;
        Ok(SuiPanel {
            base,
            auth: options.auth,
            timeout: options.timeout,
            http,
            session: Mutex::new(None),
            version: OnceCell::new(),
            limits: None,
        })
    }

    /// Sends every request through `limits` (concurrency and rate across all workers).
    pub fn with_limits(mut self, limits: PanelLimits) -> SuiPanel {
        self.limits = Some(limits);
        self
    }

    /// The limits a request must pass, unless the task already holds a permit for a group of
    /// requests ([`Self::holding`]).
    fn gate(&self) -> Option<&PanelLimits> {
        let held = HOLDING_PERMIT.try_with(|_| ()).is_ok();
        self.limits.as_ref().filter(|_| !held)
    }

    /// Runs `requests` requests under one permit and that many turns taken up front, so nothing
    /// waits between them (an edit's read and write stay as close as the API allows).
    async fn holding<T>(
        &self,
        requests: u32,
        work: impl Future<Output = Result<T, PanelError>>,
    ) -> Result<T, PanelError> {
        let Some(limits) = self.gate() else {
            return work.await;
        };
        let permit = limits.enter(requests).await?;
        let result = HOLDING_PERMIT.scope((), work).await;
        limits.leave(permit).await;
        result
    }

    /// One call, its answer's `obj`. With a login session, a lapsed session is logged in again
    /// once and the call repeated (the panel applied nothing for an unauthenticated call).
    async fn call(
        &self,
        method: Method,
        action: &str,
        query: Fields<'_>,
        form: Fields<'_>,
    ) -> Result<Value, PanelError> {
        let result = match &self.auth {
            SuiAuth::Token(token) => {
                let request = self
                    .http
                    .request(method, format!("{}apiv2/{action}", self.base))
                    .header("Token", token.as_str());
                self.send(request, query, form, true).await
            }
            SuiAuth::Login { .. } => {
                let cookie = self.session_cookie(false).await?;
                match self
                    .send(
                        self.session_request(&method, action, &cookie),
                        query,
                        form,
                        false,
                    )
                    .await
                {
                    Err(Lapsed) => {
                        let cookie = self.session_cookie(true).await?;
                        self.send(
                            self.session_request(&method, action, &cookie),
                            query,
                            form,
                            false,
                        )
                        .await
                    }
                    other => other,
                }
            }
        };
        let result = result.unwrap_or_else(|Lapsed| {
            Err(PanelError::Auth(
                "the login session was refused right after logging in".into(),
            ))
        });
        if let Err(error) = &result {
            tracing::debug!(panel = %mask_urls(&self.base), action, %error, "s-ui call failed");
        }
        result
    }

    fn session_request(
        &self,
        method: &Method,
        action: &str,
        cookie: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method.clone(), format!("{}api/{action}", self.base))
            .header(COOKIE, format!("s-ui={cookie}"))
            .header("X-Requested-With", "XMLHttpRequest")
    }

    /// The session cookie: the current one, or a new login when there is none or `renew`.
    async fn session_cookie(&self, renew: bool) -> Result<String, PanelError> {
        let SuiAuth::Login { user, pass } = &self.auth else {
            return Err(PanelError::Auth("no login configured".into()));
        };
        let mut session = self.session.lock().await;
        if let (Some(cookie), false) = (session.as_ref(), renew) {
            return Ok(cookie.clone());
        }
        *session = None;
        let permit = match self.gate() {
            Some(limits) => Some(limits.enter(1).await?),
            None => None,
        };
        let response = self
            .http
            .post(format!("{}api/login", self.base))
            .header("X-Requested-With", "XMLHttpRequest")
            .form(&[("user", user.as_str()), ("pass", pass.as_str())])
            .send()
            .await;
        if let (Some(limits), Some(permit)) = (self.gate(), permit) {
            limits.leave(permit).await;
        }
        let response = response
            .map_err(|e| transport(&e, self.timeout))
            .inspect_err(|error| super::record_call(Err(error)))?;
        let cookie = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == "s-ui")
            .map(|(_, value)| value.to_owned());
        let login = match envelope(response, self.timeout).await {
            Ok(_) => Ok(()),
            Err(Envelope::Failed(msg)) => Err(PanelError::Auth(msg)),
            Err(Envelope::Error(error)) => Err(error),
        };
        super::record_call(login.as_ref().map(|_| ()));
        login?;
        let cookie = cookie.ok_or_else(|| {
            PanelError::UnexpectedResponse("login succeeded without an s-ui cookie".into())
        })?;
        *session = Some(cookie.clone());
        Ok(cookie)
    }

    /// Sends one request inside the panel's limits (if it has any), holding its permit until
    /// the answer is read; `Err(Lapsed)` when a cookie session was not accepted. A 429 slows
    /// every worker's rate for this panel, and the request is sent again once the limits give
    /// it a turn past the Retry-After (a 429 applied nothing), a few times before the job is
    /// told to wait.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        query: Fields<'_>,
        form: Fields<'_>,
        token_api: bool,
    ) -> Result<Result<Value, PanelError>, Lapsed> {
        let mut tries = 0;
        let mut request = request;
        loop {
            tries += 1;
            let again = request.try_clone();
            let result = match self.gate() {
                None => self.send_now(request, query, form, token_api).await,
                Some(limits) => match limits.enter(1).await {
                    Err(error) => Ok(Err(error)),
                    Ok(permit) => {
                        let result = self.send_now(request, query, form, token_api).await;
                        limits.leave(permit).await;
                        result
                    }
                },
            };
            let Ok(Err(PanelError::RateLimited { retry_after })) = &result else {
                return result;
            };
            let Some(limits) = &self.limits else {
                return result;
            };
            limits
                .slowed(retry_after.unwrap_or(RETRY_AFTER_UNSAID))
                .await;
            // Inside a group of requests under one permit the turns were taken already: the
            // job waits instead.
            match again {
                Some(again) if tries < SENDS_PER_429 && self.gate().is_some() => request = again,
                _ => return result,
            }
        }
    }

    /// Sends one request and counts it ([`super::record_call`]; a lapsed session counts as
    /// refused).
    async fn send_now(
        &self,
        request: reqwest::RequestBuilder,
        query: Fields<'_>,
        form: Fields<'_>,
        token_api: bool,
    ) -> Result<Result<Value, PanelError>, Lapsed> {
        let result = self.send_uncounted(request, query, form, token_api).await;
        match &result {
            Ok(answer) => super::record_call(answer.as_ref().map(|_| ())),
            Err(Lapsed) => super::record_call(Err(&PanelError::Auth(String::new()))),
        }
        result
    }

    async fn send_uncounted(
        &self,
        request: reqwest::RequestBuilder,
        query: Fields<'_>,
        form: Fields<'_>,
        token_api: bool,
    ) -> Result<Result<Value, PanelError>, Lapsed> {
        let mut request = request.query(query);
        if !form.is_empty() {
            request = request.form(form);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Ok(Err(transport(&error, self.timeout))),
        };
        let status = response.status();
        if token_api && status == StatusCode::NOT_FOUND {
            return Ok(Err(PanelError::UnsupportedVersion(
                "the panel has no token API here (/apiv2 answered 404): S-UI older than 1.2, \
                 or a wrong web path in the panel URL"
                    .into(),
            )));
        }
        if !token_api && status.is_redirection() {
            return Err(Lapsed);
        }
        match envelope(response, self.timeout).await {
            Ok(obj) => Ok(Ok(obj)),
            Err(Envelope::Failed(msg)) if !token_api && msg == "Invalid login" => Err(Lapsed),
            Err(Envelope::Failed(msg)) if token_api && msg.ends_with("invalid token") => Ok(Err(
                PanelError::Auth(format!("{msg} (wrong or expired API token)")),
            )),
            Err(Envelope::Failed(msg)) => Ok(Err(PanelError::Rejected(msg))),
            Err(Envelope::Error(error)) => Ok(Err(error)),
        }
    }

    async fn get(&self, action: &str, query: Fields<'_>) -> Result<Value, PanelError> {
        self.call(Method::GET, action, query, &[]).await
    }

    async fn save(&self, action: &str, data: &str) -> Result<Value, PanelError> {
        let form = [("object", "clients"), ("action", action), ("data", data)];
        self.call(Method::POST, "save", &[], &form).await
    }

    /// The whole row read, `change` applied, written back.
    async fn read_modify_write(
        &self,
        id: u64,
        change: &ClientChange,
    ) -> Result<PanelClient, PanelError> {
        let mut row = self.read_row(id).await?.ok_or(PanelError::NotFound(id))?;
        if let Some(enable) = change.enable {
            row.insert("enable".into(), json!(enable));
        }
        if let Some(expiry) = change.expiry {
            row.insert("expiry".into(), json!(expiry));
        }
        if let Some(volume) = change.volume {
            row.insert("volume".into(), json!(volume));
        }
        if let Some(inbounds) = &change.inbounds {
            row.insert("inbounds".into(), json!(inbounds));
        }
        if change.reset_usage {
            row.insert("up".into(), json!(0));
            row.insert("down".into(), json!(0));
        }
        self.save("edit", &Value::Object(row.clone()).to_string())
            .await?;
        client_from(&row)
            .ok_or_else(|| PanelError::UnexpectedResponse("the row has no id or name".into()))
    }

    async fn detect_version(&self) -> Result<PanelVersion, PanelError> {
        let obj = self.get("status", &[("r", "sys")]).await?;
        let text = obj
            .pointer("/sys/appVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                PanelError::UnexpectedResponse("status?r=sys has no sys.appVersion".into())
            })?;
        let version = PanelVersion::parse(text).ok_or_else(|| {
            PanelError::UnsupportedVersion(format!("version {text:?} does not parse"))
        })?;
        check_version(version)?;
        Ok(version)
    }

    /// The full row as the panel holds it (`clients?id=N`), every field kept.
    async fn read_row(&self, id: u64) -> Result<Option<Map<String, Value>>, PanelError> {
        let id = id.to_string();
        let obj = self.get("clients", &[("id", &id)]).await?;
        // An unknown id gives `[]`; accept `null` too.
        let rows = obj.get("clients").and_then(Value::as_array);
        Ok(rows
            .and_then(|rows| rows.first())
            .and_then(Value::as_object)
            .cloned())
    }
}

/// The supported range: 1.2 (the token API) to 1.5.
fn check_version(version: PanelVersion) -> Result<(), PanelError> {
    if !version.at_least(OLDEST.0, OLDEST.1) {
        return Err(PanelError::UnsupportedVersion(format!(
            "S-UI {version} is older than 1.2.0, the first with the token API; upgrade the panel"
        )));
    }
    if version.at_least(NEWEST.0, NEWEST.1 + 1) {
        return Err(PanelError::UnsupportedVersion(format!(
            "S-UI {version} is newer than 1.5, the last this client was checked against"
        )));
    }
    Ok(())
}

/// A cookie session that was not accepted (redirect or `Invalid login`).
struct Lapsed;

enum Envelope {
    /// `success: false`, with the panel's message (trimmed, links masked).
    Failed(String),
    Error(PanelError),
}

/// The envelope of an answer: `obj` when `success` is true.
async fn envelope(response: reqwest::Response, timeout: Duration) -> Result<Value, Envelope> {
    let status = response.status();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = retry_after(response.headers(), SystemTime::now());
        return Err(Envelope::Error(PanelError::RateLimited { retry_after }));
    }
    if status.is_server_error() {
        return Err(Envelope::Error(PanelError::Server(status.as_u16())));
    }
    if status.is_client_error() {
        return Err(Envelope::Error(PanelError::Rejected(format!(
            "HTTP {}",
            status.as_u16()
        ))));
    }
    if status != StatusCode::OK {
        return Err(Envelope::Error(PanelError::UnexpectedResponse(format!(
            "HTTP {}",
            status.as_u16()
        ))));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| Envelope::Error(transport(&e, timeout)))?;
    let value: Value = serde_json::from_slice(&body).map_err(|_| {
        Envelope::Error(PanelError::UnexpectedResponse(
            "the body is not the panel's JSON envelope".into(),
        ))
    })?;
    match value.get("success").and_then(Value::as_bool) {
        Some(true) => Ok(value.get("obj").cloned().unwrap_or(Value::Null)),
        Some(false) => {
            let msg = value.get("msg").and_then(Value::as_str).unwrap_or("");
            Err(Envelope::Failed(mask_urls(msg.trim())))
        }
        None => Err(Envelope::Error(PanelError::UnexpectedResponse(
            "the envelope has no boolean success".into(),
        ))),
    }
}

/// `Retry-After` as seconds or an HTTP date (a date in the past is zero).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn transport(error: &reqwest::Error, timeout: Duration) -> PanelError {
    if error.is_timeout() {
        PanelError::Timeout(timeout)
    } else {
        PanelError::Transport(describe(error))
    }
}

/// The error and its causes, without the URL (its web path may be a secret).
fn describe(error: &reqwest::Error) -> String {
    let mut text = mask_urls(&error.to_string());
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&mask_urls(&cause.to_string()));
        source = cause.source();
    }
    text
}

fn as_i64(row: &Map<String, Value>, key: &str) -> i64 {
    row.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn client_from(row: &Map<String, Value>) -> Option<PanelClient> {
    Some(PanelClient {
        id: row.get("id").and_then(Value::as_u64)?,
        name: row.get("name").and_then(Value::as_str)?.to_owned(),
        enable: row.get("enable").and_then(Value::as_bool).unwrap_or(false),
        volume: as_i64(row, "volume"),
        expiry: as_i64(row, "expiry"),
        up: as_i64(row, "up"),
        down: as_i64(row, "down"),
        inbounds: row
            .get("inbounds")
            .and_then(Value::as_array)
            .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default(),
    })
}

fn clients_from(obj: &Value) -> Result<Vec<PanelClient>, PanelError> {
    let Some(rows) = obj.get("clients") else {
        return Err(PanelError::UnexpectedResponse(
            "no clients in the answer".into(),
        ));
    };
    let rows = match rows {
        Value::Null => return Ok(Vec::new()),
        Value::Array(rows) => rows,
        _ => {
            return Err(PanelError::UnexpectedResponse(
                "clients is not a list".into(),
            ));
        }
    };
    rows.iter()
        .map(|row| {
            row.as_object().and_then(client_from).ok_or_else(|| {
                PanelError::UnexpectedResponse("a client row without id or name".into())
            })
        })
        .collect()
}

#[async_trait]
impl Panel for SuiPanel {
    async fn version(&self) -> Result<PanelVersion, PanelError> {
        self.version
            .get_or_try_init(|| self.detect_version())
            .await
            .copied()
    }

    async fn list_clients(&self) -> Result<Vec<PanelClient>, PanelError> {
        self.version().await?;
        let obj = self.get("clients", &[]).await?;
        clients_from(&obj)
    }

    async fn create_client(&self, client: &NewClient) -> Result<Vec<PanelClient>, PanelError> {
        self.version().await?;
        let credentials = ClientCredentials::generate()
            .map_err(|e| PanelError::Transport(format!("client credentials: {e}")))?;
        let data = json!({
            "enable": client.enable,
            "name": client.name,
            "config": credentials.panel_config(&client.name),
            "inbounds": client.inbounds,
            "links": [],
            "volume": client.volume,
            "expiry": client.expiry,
            "up": 0,
            "down": 0,
            "desc": "",
            "group": "",
        });
        let obj = self.save("new", &data.to_string()).await?;
        Ok(clients_from(&obj)?
            .into_iter()
            .filter(|c| c.name == client.name)
            .collect())
    }

    async fn get_client(&self, id: u64) -> Result<Option<PanelClient>, PanelError> {
        self.version().await?;
        Ok(self.read_row(id).await?.as_ref().and_then(client_from))
    }

    async fn edit_client(&self, id: u64, change: &ClientChange) -> Result<PanelClient, PanelError> {
        self.version().await?;
        // Read the whole row and write it straight back: nothing else between the two calls
        // (not even a wait for the panel's limits), so `up`/`down` are as fresh as the API
        // allows (the panel has no partial update).
        self.holding(2, self.read_modify_write(id, change)).await
    }

    async fn delete_client(&self, id: u64) -> Result<(), PanelError> {
        self.version().await?;
        self.save("del", &id.to_string()).await?;
        Ok(())
    }

    async fn inbounds(&self) -> Result<Vec<PanelInbound>, PanelError> {
        self.version().await?;
        let obj = self.get("inbounds", &[]).await?;
        let rows = match obj.get("inbounds") {
            Some(Value::Array(rows)) => rows.clone(),
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(PanelError::UnexpectedResponse(
                    "inbounds is not a list".into(),
                ));
            }
        };
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(PanelInbound {
                    id: row.get("id")?.as_u64()?,
                    kind: row.get("type")?.as_str()?.to_owned(),
                    tag: row
                        .get("tag")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    listen_port: row.get("listen_port").and_then(Value::as_u64).unwrap_or(0),
                })
            })
            .collect())
    }

    async fn subscription_link(&self, name: &str) -> Result<SubscriptionLink, PanelError> {
        self.version().await?;
        let obj = self.get("load", &[]).await?;
        let sub_uri = obj
            .get("subURI")
            .and_then(Value::as_str)
            .ok_or_else(|| PanelError::UnexpectedResponse("load answered without subURI".into()))?;
        Ok(SubscriptionLink::new(format!("{sub_uri}{name}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_range() {
        let v = |t| PanelVersion::parse(t).expect("parses");
        assert!(v("1.2.0-beta.3") < v("1.2.0"));
        assert!(check_version(v("1.2.0-beta.3")).is_err());
        assert!(check_version(v("1.1.4")).is_err());
        assert!(check_version(v("1.2.0")).is_ok());
        assert!(check_version(v("v1.4.2")).is_ok());
        assert!(check_version(v("1.5.1")).is_ok());
        assert!(check_version(v("1.6.0")).is_err());
        assert!(check_version(v("2.0.0")).is_err());
        assert_eq!(PanelVersion::parse("dev"), None);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, later.parse().expect("header"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, "soon".parse().expect("header"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let options = SuiOptions::new(
            "http://panel.example:2095/secretpath/",
            SuiAuth::Token("TOKENTOKENTOKEN123".into()),
        );
        let text = format!("{options:?}");
        assert!(!text.contains("TOKENTOKENTOKEN123"), "{text}");
        assert!(!text.contains("secretpath"), "{text}");
        let login = SuiAuth::Login {
            user: "adminuser".into(),
            pass: "hunter2hunter2".into(),
        };
        assert!(!format!("{login:?}").contains("hunter2"));
        let client = PanelClient {
            id: 1,
            name: "Zq8secretname".into(),
            enable: true,
            volume: 0,
            expiry: 0,
            up: 0,
            down: 0,
            inbounds: vec![],
        };
        assert!(!format!("{client:?}").contains("secretname"));
        let link = SubscriptionLink::new("http://h:2096/sub/Zq8secretname".into());
        assert!(!format!("{link:?} {link}").contains("secretname"));
    }
}
