//! A fake S-UI panel that behaves like S-UI v1.2–v1.5 as `docs/panel-api.md` describes it,
//! traps included:
//!
//! - everything lives under the web path `B` (default `/app/`); anything else is a 404;
//! - `B apiv2/:action` with the `Token` header (only from v1.2.0: older versions have no such
//!   route), `B api/:action` with the `s-ui` cookie session from `B api/login` (`user`/`pass`);
//! - form fields from an `application/x-www-form-urlencoded` body or the query string; a JSON
//!   body is not parsed (so its fields are simply missing);
//! - always HTTP 200 with `{"success","msg","obj"}` and S-UI's message shapes (`": invalid
//!   token\n"`, `"failed: unknown action:  x\n"`, `"save: record not found"`, ...);
//! - a clients table where duplicate names are accepted, `save` `new`/`edit`/`del` where `edit`
//!   replaces the whole row (omitted fields become zero), the summary listing that in v1.5 reads
//!   `delayStart`…`totalDown` as zero, `load` with `subURI`, `status?r=sys` with `appVersion`;
//! - a subscription listener (`GET {subPath}{name}`: base64 links, `Subscription-Userinfo`;
//!   disabled or unknown client: 400 `Error!`).
//!
//! Faults ([`Fault`]) are injected through [`FakeSui`] or `POST /__fake/sui/fault` (outside `B`).

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::common::{self, Listening};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use common::unix_now as now;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;

/// The token `jobq dev-panel` uses when none is given.
pub const DEV_TOKEN: &str = "jobqdevpanel0000000000000000token";

/// How the fake starts.
#[derive(Clone, Debug)]
pub struct SuiOptions {
    /// Where the panel listens (`127.0.0.1:0`: any free port).
    pub bind: SocketAddr,
    /// The web path `B`, with a leading and a trailing `/`.
    pub web_path: String,
    /// What `status?r=sys` reports as `appVersion`, and which behaviours apply (`1.1.3`, `1.2.0`,
    /// `1.4.1`, `1.5.1`, ...; a pre-release such as `1.2.0-beta.3` counts as older than `1.2.0`).
    pub version: String,
    /// The API token (never expires until [`FakeSui::expire_token`]); `None`: no token exists.
    pub token: Option<String>,
    /// The login user and password (S-UI's default is `admin`/`admin`).
    pub user: String,
    pub pass: String,
    /// The `subURI` setting; `None`: derived as S-UI does, `http://HOST:SUBPORT/sub/`.
    pub sub_uri: Option<String>,
    /// Where the subscription listener listens; `None`: no listener.
    pub sub_bind: Option<SocketAddr>,
    /// The inbounds the panel has.
    pub inbounds: Vec<FakeInbound>,
}

impl Default for SuiOptions {
    fn default() -> Self {
        SuiOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            web_path: "/app/".into(),
            version: "1.5.1".into(),
            token: Some(DEV_TOKEN.into()),
            user: "admin".into(),
            pass: "admin".into(),
            sub_uri: None,
            sub_bind: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            inbounds: vec![
                FakeInbound::new(1, "vless", "vless-in", 443),
                FakeInbound::new(2, "trojan", "trojan-in", 8443),
            ],
        }
    }
}

/// One inbound of the panel.
#[derive(Clone, Debug)]
pub struct FakeInbound {
    pub id: u64,
    pub kind: String,
    pub tag: String,
    pub listen_port: u16,
}

impl FakeInbound {
    pub fn new(id: u64, kind: &str, tag: &str, listen_port: u16) -> Self {
        FakeInbound {
            id,
            kind: kind.into(),
            tag: tag.into(),
            listen_port,
        }
    }
}

/// A fault the fake injects into the requests it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `502 Bad Gateway` from the proxy in front of the panel; nothing is applied.
    BadGateway,
    /// Wait this long before handling the request (a client that gives up first applies nothing).
    Stall(Duration),
    /// Handle the request (apply the change), then break the connection in the response.
    DropAfterApply,
    /// `429 Too Many Requests` with this `Retry-After` value; nothing is applied.
    TooManyRequests { retry_after: String },
}

#[derive(Clone, Debug)]
struct FaultRule {
    fault: Fault,
    /// `None`: any request under `B`; else only this action (`save`, `clients`, `login`, ...).
    action: Option<String>,
    remaining: u32,
}

/// One client row, as S-UI's `model.Client` holds it (and, serialised, as its JSON names it).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientRow {
    pub id: u64,
    pub enable: bool,
    pub name: String,
    pub config: Value,
    pub inbounds: Value,
    pub links: Value,
    pub volume: i64,
    pub expiry: i64,
    pub up: i64,
    pub down: i64,
    pub desc: String,
    pub group: String,
    pub remark: String,
    pub delay_start: bool,
    pub auto_reset: bool,
    pub reset_days: i64,
    pub next_reset: i64,
    pub total_up: i64,
    pub total_down: i64,
    pub created_at: i64,
    pub online_at: i64,
}

/// What `data` decodes to: every field optional, as Go's `json.Unmarshal` into a struct leaves
/// omitted fields at zero.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ClientIn {
    #[serde(default)]
    id: u64,
    #[serde(default)]
    enable: bool,
    #[serde(default)]
    name: String,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    inbounds: Value,
    #[serde(default)]
    links: Value,
    #[serde(default)]
    volume: i64,
    #[serde(default)]
    expiry: i64,
    #[serde(default)]
    up: i64,
    #[serde(default)]
    down: i64,
    #[serde(default)]
    desc: String,
    #[serde(default)]
    group: String,
    #[serde(default)]
    remark: String,
    #[serde(default)]
    delay_start: bool,
    #[serde(default)]
    auto_reset: bool,
    #[serde(default)]
    reset_days: i64,
    #[serde(default)]
    next_reset: i64,
    #[serde(default)]
    total_up: i64,
    #[serde(default)]
    total_down: i64,
    #[serde(default)]
    created_at: i64,
    #[serde(default)]
    online_at: i64,
}

/// A version as S-UI numbers them; a pre-release sorts before its release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    major: u32,
    minor: u32,
    patch: u32,
    /// 1 for a release, 0 for a pre-release.
    release: u8,
}

impl Version {
    fn parse(text: &str) -> Version {
        let text = text.trim().trim_start_matches('v');
        let (numbers, pre) = match text.split_once('-') {
            Some((numbers, _)) => (numbers, true),
            None => (text, false),
        };
        let mut parts = numbers.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Version {
            major: parts.next().unwrap_or(0),
            minor: parts.next().unwrap_or(0),
            patch: parts.next().unwrap_or(0),
            release: if pre { 0 } else { 1 },
        }
    }

    fn at_least(self, major: u32, minor: u32) -> bool {
        self >= Version {
            major,
            minor,
            patch: 0,
            release: 1,
        }
    }
}

struct Panel {
    options: SuiOptions,
    version: Version,
    clients: BTreeMap<u64, ClientRow>,
    next_id: u64,
    /// (token, expiry unix seconds; 0 = never).
    tokens: Vec<(String, i64)>,
    sessions: HashSet<String>,
    faults: Vec<FaultRule>,
    /// Unix seconds of the last change (for `load?lu=`).
    last_change: i64,
    /// `METHOD path-after-B` of every request under `B`, in order.
    requests: Vec<String>,
    /// When each of those requests arrived.
    request_times: Vec<std::time::Instant>,
    /// Requests being answered now, and the most there have been at once.
    in_flight: u32,
    max_in_flight: u32,
    /// How long every request takes (a slow panel), before faults.
    latency: Duration,
    /// At most this many requests answered per second (a sliding second); the rest get 429
    /// with `Retry-After: 1` and apply nothing. `None`: no limit.
    rate_limit: Option<u32>,
    /// When each request the limit let through arrived, and how many it refused.
    accepted_times: Vec<std::time::Instant>,
    rate_limited: u32,
    sub_port: u16,
}

/// Counts a request in flight until dropped.
struct InFlight(Shared);

impl InFlight {
    fn enter(shared: &Shared) -> InFlight {
        let mut panel = lock(shared);
        panel.in_flight += 1;
        panel.max_in_flight = panel.max_in_flight.max(panel.in_flight);
        panel.request_times.push(std::time::Instant::now());
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).in_flight -= 1;
    }
}

type Shared = Arc<Mutex<Panel>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Panel> {
    common::lock(shared)
}

/// A running fake panel. Dropping it stops the listeners.
pub struct FakeSui {
    shared: Shared,
    listening: Listening,
    /// The subscription listener, when asked for.
    sub_listening: Option<Listening>,
}

impl std::fmt::Debug for FakeSui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSui")
            .field("addr", &self.addr())
            .finish()
    }
}

impl FakeSui {
    /// Binds the listeners and serves until the handle is dropped.
    pub async fn start(options: SuiOptions) -> std::io::Result<FakeSui> {
        let listener = TcpListener::bind(options.bind).await?;
        let sub_listener = match options.sub_bind {
            Some(bind) => Some(TcpListener::bind(bind).await?),
            None => None,
        };
        let sub_addr = match &sub_listener {
            Some(l) => Some(l.local_addr()?),
            None => None,
        };
        let mut tokens = Vec::new();
        if let Some(token) = &options.token {
            tokens.push((token.clone(), 0));
        }
        let shared = Arc::new(Mutex::new(Panel {
            version: Version::parse(&options.version),
            options,
            clients: BTreeMap::new(),
            next_id: 1,
            tokens,
            sessions: HashSet::new(),
            faults: Vec::new(),
            last_change: now(),
            requests: Vec::new(),
            request_times: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
            latency: Duration::ZERO,
            rate_limit: None,
            accepted_times: Vec::new(),
            rate_limited: 0,
            sub_port: sub_addr.map(|a| a.port()).unwrap_or(2096),
        }));
        let app = Router::new()
            .fallback(panel_request)
            .with_state(shared.clone());
        let listening = Listening::serve(listener, app)?;
        let sub_listening = match sub_listener {
            Some(sub_listener) => {
                let sub_app = Router::new()
                    .fallback(subscription)
                    .with_state(shared.clone());
                Some(Listening::serve(sub_listener, sub_app)?)
            }
            None => None,
        };
        Ok(FakeSui {
            shared,
            listening,
            sub_listening,
        })
    }

    /// The panel's address.
    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// The subscription listener's address, if any.
    pub fn sub_addr(&self) -> Option<SocketAddr> {
        self.sub_listening.as_ref().map(Listening::addr)
    }

    /// `http://ADDR{B}`: what a panel's `url` is configured to.
    pub fn url(&self) -> String {
        format!(
            "http://{}{}",
            self.addr(),
            lock(&self.shared).options.web_path
        )
    }

    /// `http://ADDR/__fake/sui/`: the admin endpoint for other processes.
    pub fn admin_url(&self) -> String {
        format!("http://{}/__fake/sui/", self.addr())
    }

    /// A snapshot of every row, full, in id order.
    pub fn clients(&self) -> Vec<ClientRow> {
        lock(&self.shared).clients.values().cloned().collect()
    }

    /// The rows named `name`.
    pub fn clients_named(&self, name: &str) -> Vec<ClientRow> {
        lock(&self.shared)
            .clients
            .values()
            .filter(|c| c.name == name)
            .cloned()
            .collect()
    }

    /// Sets a row's usage counters (as the stats job would have counted them). False: no such id.
    pub fn set_usage(&self, id: u64, up: i64, down: i64) -> bool {
        let mut panel = lock(&self.shared);
        match panel.clients.get_mut(&id) {
            Some(row) => {
                row.up = up;
                row.down = down;
                true
            }
            None => false,
        }
    }

    /// What the stats job does every 10 s: adds to `up`/`down` of every row with this name.
    pub fn add_traffic(&self, name: &str, up: i64, down: i64) {
        let mut panel = lock(&self.shared);
        for row in panel.clients.values_mut().filter(|c| c.name == name) {
            row.up += up;
            row.down += down;
            row.online_at = now();
        }
    }

    /// What the deplete job does every minute: disables rows over volume or past expiry.
    pub fn deplete(&self) {
        deplete(&mut lock(&self.shared));
    }

    /// Adds a row directly, as another admin would (returns its id). `row.id` is ignored.
    pub fn insert(&self, mut row: ClientRow) -> u64 {
        let mut panel = lock(&self.shared);
        row.id = panel.next_id;
        panel.next_id += 1;
        let id = row.id;
        panel.clients.insert(id, row);
        panel.last_change = now();
        id
    }

    /// Injects `fault` into the next request under `B`.
    pub fn inject(&self, fault: Fault) {
        self.inject_on(None, fault, 1);
    }

    /// Injects `fault` into the next `times` requests for `action` (any action when `None`).
    pub fn inject_on(&self, action: Option<&str>, fault: Fault, times: u32) {
        lock(&self.shared).faults.push(FaultRule {
            fault,
            action: action.map(str::to_owned),
            remaining: times,
        });
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Makes every token expired (`expiry < now`), so `/apiv2` answers `": invalid token\n"`.
    pub fn expire_token(&self) {
        for token in lock(&self.shared).tokens.iter_mut() {
            token.1 = now() - 1;
        }
    }

    /// Adds a token (expiry in unix seconds, 0 = never), as `api/addToken` would.
    pub fn add_token(&self, token: &str, expiry: i64) {
        lock(&self.shared).tokens.push((token.into(), expiry));
    }

    /// Forgets every login session (as if the cookie had lapsed).
    pub fn drop_sessions(&self) {
        lock(&self.shared).sessions.clear();
    }

    /// Changes the version reported and the behaviours that depend on it.
    pub fn set_version(&self, version: &str) {
        let mut panel = lock(&self.shared);
        panel.options.version = version.into();
        panel.version = Version::parse(version);
    }

    /// `METHOD action` of every request under `B` so far (`"POST apiv2/save"`).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared).requests.clone()
    }

    /// Makes every later request take `latency` before it is answered (a slow panel).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared).latency = latency;
    }

    /// The most requests under `B` that were being answered at once.
    /// Answers at most `per_second` requests in any second (`None`: no limit); the others get
    /// `429 Too Many Requests` with `Retry-After: 1`, as a panel behind a rate-limiting proxy.
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        lock(&self.shared).rate_limit = per_second;
    }

    /// When each request the rate limit let through arrived.
    pub fn accepted_times(&self) -> Vec<std::time::Instant> {
        lock(&self.shared).accepted_times.clone()
    }

    /// How many requests the rate limit refused with 429.
    pub fn rate_limited(&self) -> u32 {
        lock(&self.shared).rate_limited
    }

    pub fn max_in_flight(&self) -> u32 {
        lock(&self.shared).max_in_flight
    }

    /// When each request under `B` arrived, in order.
    pub fn request_times(&self) -> Vec<std::time::Instant> {
        lock(&self.shared).request_times.clone()
    }

    /// How many logins succeeded or failed so far.
    pub fn login_count(&self) -> usize {
        lock(&self.shared)
            .requests
            .iter()
            .filter(|r| r.ends_with("api/login"))
            .count()
    }
}

fn envelope(success: bool, msg: &str, obj: Value) -> Response {
    let body = json!({"success": success, "msg": msg, "obj": obj});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// S-UI's `jsonMsg(c, prefix, err)`: `"<prefix>: <err>"`.
fn failure(prefix: &str, err: &str) -> Response {
    envelope(false, &format!("{prefix}: {err}"), Value::Null)
}

fn success(obj: Value) -> Response {
    envelope(true, "", obj)
}

/// Go's `fmt.Sprintln(a, b)`: operands separated by a space, then a newline.
fn sprintln(parts: &[&str]) -> String {
    format!("{}\n", parts.join(" "))
}

/// Form fields as Go's `FormValue` reads them: the urlencoded body first, then the query string.
struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    fn read(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Form {
        let mut fields = Vec::new();
        let urlencoded = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.starts_with("application/x-www-form-urlencoded"))
            .unwrap_or(false);
        if urlencoded {
            fields.extend(form_urlencoded::parse(body).into_owned());
        }
        if let Some(query) = uri.query() {
            fields.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        Form { fields }
    }

    fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    fn has(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == key)
    }
}

fn cookie_session(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == "s-ui")
        .map(|(_, v)| v.to_owned())
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Whether the rate limit lets this request through (counted as accepted or refused).
fn within_rate_limit(panel: &mut Panel) -> bool {
    let now = std::time::Instant::now();
    if let Some(limit) = panel.rate_limit {
        let window_start = now.checked_sub(Duration::from_secs(1));
        let in_last_second = panel
            .accepted_times
            .iter()
            .rev()
            .take_while(|t| window_start.is_none_or(|start| **t > start))
            .count();
        if in_last_second >= limit as usize {
            panel.rate_limited += 1;
            return false;
        }
    }
    panel.accepted_times.push(now);
    true
}

/// Takes one use of the first fault rule matching `action`.
fn take_fault(panel: &mut Panel, action: &str) -> Option<Fault> {
    common::take_use(
        &mut panel.faults,
        |rule| &mut rule.remaining,
        |rule| rule.action.as_deref().is_none_or(|a| a == action),
    )
    .map(|rule| rule.fault)
}

async fn panel_request(
    State(shared): State<Shared>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if let Some(admin) = path.strip_prefix("/__fake/sui/") {
        return admin_request(&shared, &method, admin, &body);
    }
    let web_path = lock(&shared).options.web_path.clone();
    let Some(rest) = path.strip_prefix(&web_path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (api, action) = match rest.split_once('/') {
        Some((api @ ("api" | "apiv2"), action)) if !action.is_empty() && !action.contains('/') => {
            (api.to_owned(), action.to_owned())
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let _in_flight = InFlight::enter(&shared);
    let latency = lock(&shared).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let fault = {
        let mut panel = lock(&shared);
        panel.requests.push(format!("{method} {api}/{action}"));
        if !within_rate_limit(&mut panel) {
            let mut response =
                (StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests").into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        take_fault(&mut panel, &action)
    };
    match &fault {
        Some(Fault::BadGateway) => {
            return (StatusCode::BAD_GATEWAY, "502 Bad Gateway").into_response();
        }
        Some(Fault::TooManyRequests { retry_after }) => {
            let mut response =
                (StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests").into_response();
            if let Ok(value) = HeaderValue::from_str(retry_after) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        Some(Fault::Stall(delay)) => tokio::time::sleep(*delay).await,
        _ => {}
    }
    let form = Form::read(&headers, &uri, &body);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let response = {
        let mut panel = lock(&shared);
        if api == "apiv2" {
            apiv2(&mut panel, &method, &action, &headers, &form, &host)
        } else {
            api_v1(&mut panel, &method, &action, &headers, &form, &host, peer)
        }
    };
    if fault == Some(Fault::DropAfterApply) {
        // The change is applied; the answer never arrives whole.
        let broken = futures::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by the fake"))
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::from_stream(broken));
    }
    response
}

fn apiv2(
    panel: &mut Panel,
    method: &Method,
    action: &str,
    headers: &HeaderMap,
    form: &Form,
    host: &str,
) -> Response {
    if !panel.version.at_least(1, 2) {
        // `/apiv2` arrived in v1.2.0: before it, the route does not exist.
        return StatusCode::NOT_FOUND.into_response();
    }
    let token = headers
        .get("Token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let t = now();
    let valid = !token.is_empty()
        && panel
            .tokens
            .iter()
            .any(|(tok, expiry)| tok == token && !(*expiry > 0 && *expiry < t));
    if !valid {
        return failure("", &sprintln(&["invalid token"]));
    }
    if matches!(
        action,
        "login" | "logout" | "addToken" | "deleteToken" | "tokens"
    ) {
        return failure("failed", &sprintln(&["unknown action: ", action]));
    }
    actions(panel, method, action, form, host)
}

fn api_v1(
    panel: &mut Panel,
    method: &Method,
    action: &str,
    headers: &HeaderMap,
    form: &Form,
    host: &str,
    peer: SocketAddr,
) -> Response {
    if action == "login" && method == Method::POST {
        if form.get("user") == panel.options.user && form.get("pass") == panel.options.pass {
            let session = random_token(43);
            panel.sessions.insert(session.clone());
            let mut response = success(Value::Null);
            if let Ok(value) = HeaderValue::from_str(&format!("s-ui={session}; Path=/")) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            return response;
        }
        return failure(
            "",
            &sprintln(&["wrong user or password! IP: ", &peer.ip().to_string()]),
        );
    }
    if action == "logout" && method == Method::GET {
        // No server-side state is kept: the old cookie still works (`docs/panel-api.md`).
        return success(Value::Null);
    }
    let logged_in = cookie_session(headers).is_some_and(|s| panel.sessions.contains(&s));
    if !logged_in {
        let xhr = headers
            .get("X-Requested-With")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "XMLHttpRequest");
        if xhr {
            return envelope(false, "Invalid login", Value::Null);
        }
        let location = format!("{}login", panel.options.web_path);
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    if action == "addToken" && method == Method::POST {
        let days: i64 = form.get("expiry").parse().unwrap_or(0);
        let token = random_token(32);
        let expiry = if days > 0 { now() + days * 86400 } else { 0 };
        panel.tokens.push((token.clone(), expiry));
        return success(Value::String(token));
    }
    actions(panel, method, action, form, host)
}

/// The actions both APIs share.
fn actions(panel: &mut Panel, method: &Method, action: &str, form: &Form, host: &str) -> Response {
    match (method.as_str(), action) {
        ("POST", "save") => save(panel, form, host),
        ("POST", "resetTraffic") => {
            for row in panel.clients.values_mut() {
                row.up = 0;
                row.down = 0;
            }
            panel.last_change = now();
            success(Value::Null)
        }
        ("GET", "clients") => {
            let version = panel.version;
            let ids = form.get("id");
            if ids.is_empty() {
                let clients: Vec<Value> = panel
                    .clients
                    .values()
                    .map(|c| summary_json(c, version))
                    .collect();
                success(json!({ "clients": clients }))
            } else {
                let wanted: Vec<u64> = ids
                    .split(',')
                    .filter_map(|i| i.trim().parse().ok())
                    .collect();
                let clients: Vec<Value> = panel
                    .clients
                    .values()
                    .filter(|c| wanted.contains(&c.id))
                    .map(|c| full_json(c, version))
                    .collect();
                success(json!({ "clients": clients }))
            }
        }
        ("GET", "inbounds") => {
            let ids = form.get("id");
            if ids.is_empty() {
                success(json!({ "inbounds": inbound_summaries(panel) }))
            } else {
                let wanted: Vec<u64> = ids
                    .split(',')
                    .filter_map(|i| i.trim().parse().ok())
                    .collect();
                let full: Vec<Value> = panel
                    .options
                    .inbounds
                    .iter()
                    .filter(|i| wanted.contains(&i.id))
                    .map(|i| inbound_full(panel, i))
                    .collect();
                if full.is_empty() {
                    success(json!({ "inbounds": null }))
                } else {
                    success(json!({ "inbounds": full }))
                }
            }
        }
        ("GET", "load") => {
            let lu: i64 = form.get("lu").parse().unwrap_or(0);
            if form.has("lu") && lu >= panel.last_change {
                return success(json!({ "onlines": onlines(panel) }));
            }
            let version = panel.version;
            let clients: Vec<Value> = panel
                .clients
                .values()
                .map(|c| summary_json(c, version))
                .collect();
            success(json!({
                "config": {},
                "clients": clients,
                "inbounds": inbound_summaries(panel),
                "outbounds": [],
                "endpoints": [],
                "services": [],
                "tls": [],
                "subURI": sub_uri(panel, host),
                "enableTraffic": true,
                "onlines": onlines(panel),
            }))
        }
        ("GET", "onlines") => success(onlines(panel)),
        ("GET", "status") => {
            let mut status = Map::new();
            for part in form.get("r").split(',') {
                if part == "sys" {
                    status.insert("uptime".into(), json!(1000));
                    status.insert(
                        "sys".into(),
                        json!({
                            "appMem": 0, "appThreads": 1, "cpuCount": 2, "hostName": "fake-sui",
                            "appVersion": panel.options.version, "ipv4": [], "ipv6": []
                        }),
                    );
                }
            }
            success(Value::Object(status))
        }
        _ => failure("failed", &sprintln(&["unknown action: ", action])),
    }
}

fn sub_uri(panel: &Panel, host: &str) -> String {
    match &panel.options.sub_uri {
        Some(uri) => uri.clone(),
        None => {
            let hostname = match host.rsplit_once(':') {
                Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
                _ => host,
            };
            format!("http://{hostname}:{}/sub/", panel.sub_port)
        }
    }
}

fn onlines(panel: &Panel) -> Value {
    let t = now();
    let users: Vec<&str> = panel
        .clients
        .values()
        .filter(|c| c.online_at > t - 60)
        .map(|c| c.name.as_str())
        .collect();
    if users.is_empty() {
        json!({})
    } else {
        json!({ "user": users })
    }
}

fn client_inbound_ids(row: &ClientRow) -> Vec<u64> {
    row.inbounds
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn inbound_users(panel: &Panel, inbound: &FakeInbound) -> Vec<String> {
    panel
        .clients
        .values()
        .filter(|c| c.enable && client_inbound_ids(c).contains(&inbound.id))
        .map(|c| c.name.clone())
        .collect()
}

fn inbound_summaries(panel: &Panel) -> Vec<Value> {
    panel
        .options
        .inbounds
        .iter()
        .map(|i| {
            json!({
                "id": i.id, "type": i.kind, "tag": i.tag, "tls_id": 0, "listen": "::",
                "listen_port": i.listen_port, "users": inbound_users(panel, i),
            })
        })
        .collect()
}

fn inbound_full(panel: &Panel, inbound: &FakeInbound) -> Value {
    let users: Vec<Value> = panel
        .clients
        .values()
        .filter(|c| c.enable && client_inbound_ids(c).contains(&inbound.id))
        .map(|c| c.config.get(&inbound.kind).cloned().unwrap_or(Value::Null))
        .collect();
    json!({
        "id": inbound.id, "type": inbound.kind, "tag": inbound.tag, "tls_id": 0,
        "listen": "::", "listen_port": inbound.listen_port, "users": users,
    })
}

/// The fields S-UI 1.4 added to a client row.
const SINCE_1_4: [&str; 6] = [
    "delayStart",
    "autoReset",
    "resetDays",
    "nextReset",
    "totalUp",
    "totalDown",
];
/// The fields S-UI 1.5 added.
const SINCE_1_5: [&str; 3] = ["remark", "createdAt", "onlineAt"];

/// The row as the panel's version writes it, without `config` and `links`.
fn base_json(row: &ClientRow, version: Version) -> Map<String, Value> {
    let mut map = match serde_json::to_value(row) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let mut absent = vec!["config", "links"];
    if !version.at_least(1, 4) {
        absent.extend(SINCE_1_4);
    }
    if !version.at_least(1, 5) {
        absent.extend(SINCE_1_5);
    }
    for field in absent {
        map.remove(field);
    }
    map
}

/// `GET clients?id=N`: the whole row.
fn full_json(row: &ClientRow, version: Version) -> Value {
    let mut map = base_json(row, version);
    map.insert("config".into(), row.config.clone());
    map.insert("links".into(), row.links.clone());
    Value::Object(map)
}

/// `GET clients`: no `config`, no `links`; v1.5 selects only `id`…`onlineAt`, so
/// `delayStart`…`totalDown` read as zero/false.
fn summary_json(row: &ClientRow, version: Version) -> Value {
    let mut map = base_json(row, version);
    if version.at_least(1, 5) {
        for field in SINCE_1_4 {
            let zero = match map.get(field) {
                Some(Value::Bool(_)) => json!(false),
                _ => json!(0),
            };
            map.insert(field.into(), zero);
        }
    }
    Value::Object(map)
}

fn row_from(input: ClientIn, version: Version) -> ClientRow {
    let mut row = ClientRow {
        id: input.id,
        enable: input.enable,
        name: input.name,
        config: input.config,
        inbounds: input.inbounds,
        links: input.links,
        volume: input.volume,
        expiry: input.expiry,
        up: input.up,
        down: input.down,
        desc: input.desc,
        group: input.group,
        ..ClientRow::default()
    };
    if version.at_least(1, 4) {
        row.delay_start = input.delay_start;
        row.auto_reset = input.auto_reset;
        row.reset_days = input.reset_days;
        row.next_reset = input.next_reset;
        row.total_up = input.total_up;
        row.total_down = input.total_down;
    }
    if version.at_least(1, 5) {
        row.remark = input.remark;
        row.created_at = input.created_at;
        row.online_at = input.online_at;
    }
    row
}

/// v1.5's `setConfigIdentity`: every protocol entry's `name` (or `username`) is the client name.
fn set_config_identity(row: &mut ClientRow) {
    let name = row.name.clone();
    if let Some(config) = row.config.as_object_mut() {
        for entry in config.values_mut() {
            if let Some(entry) = entry.as_object_mut() {
                if entry.contains_key("username") {
                    entry.insert("username".into(), json!(name));
                } else {
                    entry.insert("name".into(), json!(name));
                }
            }
        }
    }
}

/// `local` links are regenerated on save; `external` and `sub` ones are kept.
fn rebuild_links(panel: &Panel, row: &mut ClientRow, host: &str) {
    let mut links: Vec<Value> = row
        .links
        .as_array()
        .map(|links| {
            links
                .iter()
                .filter(|l| l.get("type").and_then(Value::as_str) != Some("local"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let hostname = host.split(':').next().unwrap_or("localhost");
    for id in client_inbound_ids(row) {
        if let Some(inbound) = panel.options.inbounds.iter().find(|i| i.id == id) {
            let secret = row
                .config
                .get(&inbound.kind)
                .and_then(|c| c.get("uuid").or_else(|| c.get("password")))
                .and_then(Value::as_str)
                .unwrap_or("");
            links.push(json!({
                "type": "local",
                "remark": inbound.tag,
                "uri": format!("{}://{secret}@{hostname}:{}#{}", inbound.kind, inbound.listen_port, row.name),
            }));
        }
    }
    row.links = Value::Array(links);
}

fn save(panel: &mut Panel, form: &Form, host: &str) -> Response {
    let object = form.get("object");
    let action = form.get("action");
    let data = form.get("data");
    if object != "clients" {
        return failure("save", &sprintln(&["unknown object: ", object]));
    }
    let version = panel.version;
    let mut touched: Vec<u64> = Vec::new();
    match action {
        "new" | "edit" => {
            let raw: Value = match serde_json::from_str(data) {
                Ok(raw) => raw,
                Err(_) if data.trim().is_empty() => {
                    return failure("save", "unexpected end of JSON input");
                }
                Err(err) => return failure("save", &err.to_string()),
            };
            if action == "new" && !(raw.get("inbounds").is_some() && raw.get("links").is_some()) {
                // The server unmarshals the (empty) raw `inbounds`/`links` messages.
                return failure("save", "unexpected end of JSON input");
            }
            let input: ClientIn = match serde_json::from_value(raw) {
                Ok(input) => input,
                Err(err) => return failure("save", &err.to_string()),
            };
            let mut row = row_from(input, version);
            if action == "edit" {
                // gorm `Save` of the whole struct: the row is replaced, omitted fields are zero.
                let Some(old) = panel.clients.get(&row.id) else {
                    return failure("save", "record not found");
                };
                touched.extend(client_inbound_ids(old));
            } else {
                if row.id == 0 || !panel.clients.contains_key(&row.id) {
                    if row.id == 0 {
                        row.id = panel.next_id;
                    }
                    panel.next_id = panel.next_id.max(row.id + 1);
                } else {
                    touched.extend(client_inbound_ids(&panel.clients[&row.id]));
                }
                if version.at_least(1, 5) {
                    row.created_at = now();
                }
            }
            if version.at_least(1, 5) {
                set_config_identity(&mut row);
            }
            rebuild_links(panel, &mut row, host);
            touched.extend(client_inbound_ids(&row));
            panel.clients.insert(row.id, row);
        }
        "del" => {
            let id: u64 = match data.trim().parse() {
                Ok(id) => id,
                Err(_) => return failure("save", "record not found"),
            };
            match panel.clients.remove(&id) {
                Some(old) => touched.extend(client_inbound_ids(&old)),
                None => return failure("save", "record not found"),
            }
        }
        other => return failure("save", &sprintln(&["unknown action: ", other])),
    }
    panel.last_change = now();
    let clients: Vec<Value> = panel
        .clients
        .values()
        .map(|c| summary_json(c, version))
        .collect();
    let mut obj = Map::new();
    obj.insert("clients".into(), Value::Array(clients));
    if !touched.is_empty() {
        obj.insert("inbounds".into(), Value::Array(inbound_summaries(panel)));
    }
    success(Value::Object(obj))
}

async fn subscription(State(shared): State<Shared>, uri: Uri) -> Response {
    let panel = lock(&shared);
    let error = || (StatusCode::BAD_REQUEST, "Error!").into_response();
    let Some(name) = uri.path().strip_prefix("/sub/") else {
        return error();
    };
    let Some(row) = panel.clients.values().find(|c| c.name == name && c.enable) else {
        return error();
    };
    let links: Vec<&str> = row
        .links
        .as_array()
        .map(|links| {
            links
                .iter()
                .filter_map(|l| l.get("uri").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let body = base64::engine::general_purpose::STANDARD.encode(links.join("\n"));
    let userinfo = format!(
        "upload={}; download={}; total={}; expire={}",
        row.up, row.down, row.volume, row.expiry
    );
    let title = if row.remark.is_empty() {
        row.name.clone()
    } else {
        row.remark.clone()
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (key, value) in [
        ("Subscription-Userinfo", userinfo),
        ("Profile-Update-Interval", "12".to_owned()),
        ("Profile-Title", title),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(key, value);
        }
    }
    response
}

#[derive(Deserialize)]
struct AdminFault {
    /// `502`, `stall`, `drop`, `429`.
    fault: String,
    action: Option<String>,
    times: Option<u32>,
    delay_ms: Option<u64>,
    retry_after: Option<String>,
}

#[derive(Deserialize)]
struct AdminUsage {
    id: u64,
    up: i64,
    down: i64,
}

/// The admin endpoint (outside `B`), for tests driving the fake in another process:
/// `POST fault` `{"fault":"502"|"stall"|"drop"|"429","action"?,"times"?,"delay_ms"?,"retry_after"?}`,
/// `POST clear-faults`, `POST usage` `{"id","up","down"}`, `POST expire-token`,
/// `POST drop-sessions`, `POST deplete`, `GET clients`.
fn admin_request(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Response {
    let mut panel = lock(shared);
    let bad = |why: String| (StatusCode::BAD_REQUEST, why).into_response();
    match (method.as_str(), path) {
        ("POST", "fault") => {
            let request: AdminFault = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(err) => return bad(err.to_string()),
            };
            let fault = match request.fault.as_str() {
                "502" => Fault::BadGateway,
                "stall" => Fault::Stall(Duration::from_millis(request.delay_ms.unwrap_or(30_000))),
                "drop" => Fault::DropAfterApply,
                "429" => Fault::TooManyRequests {
                    retry_after: request.retry_after.unwrap_or_else(|| "1".into()),
                },
                other => return bad(format!("unknown fault {other:?}")),
            };
            panel.faults.push(FaultRule {
                fault,
                action: request.action,
                remaining: request.times.unwrap_or(1),
            });
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "clear-faults") => {
            panel.faults.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "usage") => {
            let request: AdminUsage = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(err) => return bad(err.to_string()),
            };
            match panel.clients.get_mut(&request.id) {
                Some(row) => {
                    row.up = request.up;
                    row.down = request.down;
                    StatusCode::NO_CONTENT.into_response()
                }
                None => (StatusCode::NOT_FOUND, "no such client").into_response(),
            }
        }
        ("POST", "expire-token") => {
            let expired = now() - 1;
            for token in panel.tokens.iter_mut() {
                token.1 = expired;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "drop-sessions") => {
            panel.sessions.clear();
            StatusCode::NO_CONTENT.into_response()
        }
        ("POST", "deplete") => {
            deplete(&mut panel);
            StatusCode::NO_CONTENT.into_response()
        }
        ("GET", "clients") => {
            let version = panel.version;
            let rows: Vec<Value> = panel
                .clients
                .values()
                .map(|c| full_json(c, version))
                .collect();
            (
                [(header::CONTENT_TYPE, "application/json")],
                Value::Array(rows).to_string(),
            )
                .into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn deplete(panel: &mut Panel) {
    let t = now();
    let mut changed = false;
    for row in panel.clients.values_mut() {
        let over = row.volume > 0 && row.up + row.down > row.volume;
        let expired = row.expiry > 0 && row.expiry < t;
        if row.enable && (over || expired) {
            row.enable = false;
            changed = true;
        }
    }
    if changed {
        panel.last_change = t;
    }
}
