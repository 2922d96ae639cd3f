//! A fake Telegram Bot API server, served over real HTTP so teloxide talks to it through
//! `Bot::new(token).set_api_url(fake.url())`.
//!
//! - `POST /bot{token}/{method}` (also GET); the method name is matched case-insensitively
//!   (teloxide sends `SendMessage`); a wrong token is 401 `Unauthorized`, an unknown method 404
//!   `Not Found`, as Telegram answers. Parameters are read from a JSON body, a urlencoded body,
//!   a multipart body (text fields) or the query string.
//! - Every call is recorded with its method and parameters ([`FakeTelegram::calls`]); messages
//!   sent (`sendMessage`, `sendPhoto`, `sendDocument`, `forwardMessage`, `copyMessage`) also as
//!   [`SentMessage`]s with the time received ([`FakeTelegram::sent`]).
//! - `sendMessage` answers a real Message body (`message_id`, `date`, `chat`, `from`, `text`);
//!   `editMessageText`, `answerCallbackQuery`, `deleteMessage`, `getMe`, `deleteWebhook`,
//!   `getWebhookInfo`, `setMyCommands` answer what teloxide expects.
//! - `getUpdates` serves updates pushed with [`FakeTelegram::push_update`], honouring `offset`
//!   (confirms and forgets earlier updates), `limit` and `timeout` (a long poll that wakes as
//!   soon as an update is pushed).
//!
//! Faults: a chat's state ([`ChatState`]: blocked, deactivated, not found, can't initiate) and
//! one-shot or repeated [`Fault`]s by method and chat ([`FakeTelegram::inject`]): 429 with
//! `parameters.retry_after`, a status (5xx: teloxide then waits 10 s before reading it), a
//! dropped connection before or after the message is recorded, a stall.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::common::{self, Listening};
use common::unix_now;

/// The bot's own user id (the `from` of the messages it sends).
pub const BOT_ID: i64 = 7_000_000_001;

/// The methods the fake knows, spelled as Telegram documents them.
const METHODS: &[&str] = &[
    "getMe",
    "getUpdates",
    "deleteWebhook",
    "setWebhook",
    "getWebhookInfo",
    "setMyCommands",
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "forwardMessage",
    "copyMessage",
    "editMessageText",
    "deleteMessage",
    "answerCallbackQuery",
];

/// Methods whose success is a message reaching a chat.
const SENDING: &[&str] = &[
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "forwardMessage",
    "copyMessage",
];

/// What a chat answers to messages sent to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatState {
    /// Messages are delivered.
    Open,
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// 403 `Forbidden: user is deactivated`.
    Deactivated,
    /// 400 `Bad Request: chat not found`.
    NotFound,
    /// 403 `Forbidden: bot can't initiate conversation with a user` (the user never started
    /// the bot).
    CantInitiate,
}

/// A fault the fake answers with instead of (or after) handling a call.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after = N`; nothing applied.
    RetryAfter(u32),
    /// This HTTP status with a matching error body; nothing applied.
    Status(u16),
    /// The connection breaks before anything is applied.
    Drop,
    /// The call is applied (the message recorded), then the connection breaks in the answer.
    DropAfterApply,
    /// Wait this long, then handle the call normally.
    Stall(Duration),
}

/// Where a [`Fault`] applies and how many times. Every `None` matches anything.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub fault: Fault,
    /// A method name, any case (`sendMessage`).
    pub method: Option<String>,
    /// The call's `chat_id`.
    pub chat: Option<i64>,
    pub remaining: u32,
}

impl FaultRule {
    /// `fault` on the next call of any method.
    pub fn new(fault: Fault) -> Self {
        FaultRule {
            fault,
            method: None,
            chat: None,
            remaining: 1,
        }
    }

    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.into());
        self
    }

    pub fn chat(mut self, chat: i64) -> Self {
        self.chat = Some(chat);
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.remaining = times;
        self
    }
}

/// One call the fake received (authorised or not).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiCall {
    /// As documented (`sendMessage`) when known, else as sent.
    pub method: String,
    pub params: Value,
    pub received_at: SystemTime,
}

/// A message the bot sent (or forwarded, or copied) that reached its chat.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    pub method: String,
    pub chat_id: i64,
    pub message_id: i64,
    /// The text, or a photo's or document's caption.
    pub text: String,
    pub received_at: SystemTime,
}

struct Api {
    token: String,
    chats: HashMap<i64, ChatState>,
    faults: Vec<FaultRule>,
    calls: Vec<ApiCall>,
    sent: Vec<SentMessage>,
    /// Per chat, the last message id given.
    message_ids: HashMap<i64, i64>,
    updates: VecDeque<Value>,
    next_update_id: i64,
}

struct Inner {
    api: Mutex<Api>,
    /// Woken on every pushed update, for long-polling `getUpdates`.
    pushed: Notify,
}

type Shared = Arc<Inner>;

fn lock(shared: &Shared) -> MutexGuard<'_, Api> {
    common::lock(&shared.api)
}

/// A running fake Bot API. Dropping it stops the listener.
pub struct FakeTelegram {
    shared: Shared,
    listening: Listening,
}

impl std::fmt::Debug for FakeTelegram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("FakeTelegram")
            .field("addr", &self.addr())
            .finish()
    }
}

impl FakeTelegram {
    /// Listens on `127.0.0.1:0`, accepting the bot token `token`.
    pub async fn start(token: &str) -> std::io::Result<FakeTelegram> {
        Self::start_on(common::any_local_port(), token).await
    }

    /// Listens on `bind`, accepting the bot token `token`.
    pub async fn start_on(bind: SocketAddr, token: &str) -> std::io::Result<FakeTelegram> {
        let shared = Arc::new(Inner {
            api: Mutex::new(Api {
                token: token.into(),
                chats: HashMap::new(),
                faults: Vec::new(),
                calls: Vec::new(),
                sent: Vec::new(),
                message_ids: HashMap::new(),
                updates: VecDeque::new(),
                next_update_id: 1,
            }),
            pushed: Notify::new(),
        });
        let app = Router::new().fallback(request).with_state(shared.clone());
        let listening = Listening::bind(bind, app).await?;
        Ok(FakeTelegram { shared, listening })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// `http://ADDR`: what `[telegram] api_url` is set to.
    pub fn url(&self) -> String {
        self.listening.url()
    }

    /// Sets how a chat answers messages (every chat is [`ChatState::Open`] until told).
    pub fn set_chat(&self, chat_id: i64, state: ChatState) {
        lock(&self.shared).chats.insert(chat_id, state);
    }

    /// Adds a fault rule; rules are tried in the order added.
    pub fn inject(&self, rule: FaultRule) {
        lock(&self.shared).faults.push(rule);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<ApiCall> {
        lock(&self.shared).calls.clone()
    }

    /// The calls of one method (any case).
    pub fn calls_of(&self, method: &str) -> Vec<ApiCall> {
        lock(&self.shared)
            .calls
            .iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .cloned()
            .collect()
    }

    /// Every message that reached a chat, in the order received.
    pub fn sent(&self) -> Vec<SentMessage> {
        lock(&self.shared).sent.clone()
    }

    /// The messages that reached `chat_id`.
    pub fn sent_to(&self, chat_id: i64) -> Vec<SentMessage> {
        lock(&self.shared)
            .sent
            .iter()
            .filter(|m| m.chat_id == chat_id)
            .cloned()
            .collect()
    }

    /// Queues an update for `getUpdates` and wakes a waiting long poll. Without an
    /// `update_id` the next one is given; returns the update's id.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let id = {
            let mut api = lock(&self.shared);
            let id = match update.get("update_id").and_then(Value::as_i64) {
                Some(id) => id,
                None => {
                    let id = api.next_update_id;
                    if let Some(map) = update.as_object_mut() {
                        map.insert("update_id".into(), json!(id));
                    }
                    id
                }
            };
            api.next_update_id = api.next_update_id.max(id + 1);
            api.updates.push_back(update);
            id
        };
        self.shared.pushed.notify_waiters();
        id
    }

    /// Updates pushed and not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        lock(&self.shared).updates.len()
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn ok(result: Value) -> Response {
    reply(StatusCode::OK, json!({"ok": true, "result": result}))
}

fn api_error(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    reply(
        status,
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

fn retry_after(seconds: u32) -> Response {
    reply(
        StatusCode::TOO_MANY_REQUESTS,
        json!({
            "ok": false, "error_code": 429,
            "description": format!("Too Many Requests: retry after {seconds}"),
            "parameters": {"retry_after": seconds},
        }),
    )
}

/// A body that fails as soon as it is read: the client sees a broken connection.
fn broken(parts: Option<axum::http::response::Parts>) -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("connection dropped by the fake"))
    });
    match parts {
        Some(parts) => Response::from_parts(parts, Body::from_stream(stream)),
        None => Response::new(Body::from_stream(stream)),
    }
}

/// The documented spelling of `method`, if the fake knows it.
fn canonical(method: &str) -> Option<&'static str> {
    METHODS
        .iter()
        .copied()
        .find(|m| m.eq_ignore_ascii_case(method))
}

/// A request's parameters: JSON body, urlencoded or multipart body, then the query string.
fn params(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Value {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut map = Map::new();
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(object)) = serde_json::from_slice(body) {
            map = object;
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        for (k, v) in form_urlencoded::parse(body) {
            map.insert(k.into_owned(), form_value(&v));
        }
    } else if let Some(boundary) = content_type.split("boundary=").nth(1) {
        for (k, v) in multipart_fields(body, boundary.trim_matches('"')) {
            map.insert(k, form_value(&v));
        }
    }
    if let Some(query) = uri.query() {
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| form_value(&v));
        }
    }
    Value::Object(map)
}

/// A form field as Telegram reads it: a JSON value when it parses as one, else the string.
fn form_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.into()))
}

/// The text fields of a multipart body (files are recorded as `"<file NAME>"`).
fn multipart_fields(body: &[u8], boundary: &str) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    for part in text.split(delimiter.as_str()) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let Some(name) = disposition_value(head, "name") else {
            continue;
        };
        let value = match disposition_value(head, "filename") {
            Some(file) => format!("<file {file}>"),
            None => content.trim_end_matches("\r\n").to_owned(),
        };
        fields.push((name, value));
    }
    fields
}

fn disposition_value(head: &str, key: &str) -> Option<String> {
    let needle = format!("{key}=\"");
    let start = head
        .find(&format!(" {needle}"))
        .or_else(|| head.find(&format!(";{needle}")))?
        + 1;
    let rest = &head[start + needle.len()..];
    rest.split('"').next().map(str::to_owned)
}

/// A `chat_id` parameter as a number (Telegram also takes `"@channel"`: not modelled).
fn chat_of(params: &Value) -> Option<i64> {
    match params.get("chat_id")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Takes one use of the first rule matching this call.
fn take_fault(api: &mut Api, method: &str, chat: Option<i64>) -> Option<Fault> {
    common::take_use(
        &mut api.faults,
        |rule| &mut rule.remaining,
        |rule| {
            rule.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && rule.chat.is_none_or(|c| Some(c) == chat)
        },
    )
    .map(|rule| rule.fault)
}

async fn request(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((token, method)) = uri
        .path()
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return api_error(404, "Not Found");
    };
    let params = params(&headers, &uri, &body);
    let name = canonical(method).map_or_else(|| method.to_owned(), str::to_owned);
    let chat = chat_of(&params);
    let fault = {
        let mut api = lock(&shared);
        api.calls.push(ApiCall {
            method: name.clone(),
            params: params.clone(),
            received_at: SystemTime::now(),
        });
        if token != api.token {
            return api_error(401, "Unauthorized");
        }
        if canonical(method).is_none() {
            return api_error(404, "Not Found");
        }
        take_fault(&mut api, &name, chat)
    };
    match fault {
        Some(Fault::RetryAfter(seconds)) => return retry_after(seconds),
        Some(Fault::Status(code)) => {
            let reason = StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Error");
            return api_error(code, reason);
        }
        Some(Fault::Drop) => return broken(None),
        Some(Fault::Stall(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::DropAfterApply) | None => {}
    }
    let response = if name == "getUpdates" {
        get_updates(&shared, &params).await
    } else {
        handle(&mut lock(&shared), &name, &params)
    };
    if fault == Some(Fault::DropAfterApply) {
        return broken(Some(response.into_parts().0));
    }
    response
}

fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "jobq", "username": "jobq_fake_bot"})
}

fn chat_json(chat_id: i64) -> Value {
    if chat_id < 0 {
        json!({"id": chat_id, "type": "supergroup", "title": format!("group {chat_id}")})
    } else {
        json!({"id": chat_id, "type": "private", "first_name": format!("user{chat_id}")})
    }
}

fn message_json(chat_id: i64, message_id: i64) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("message_id".into(), json!(message_id));
    map.insert("date".into(), json!(unix_now()));
    map.insert("chat".into(), chat_json(chat_id));
    map.insert("from".into(), bot_user());
    map
}

fn handle(api: &mut Api, method: &str, params: &Value) -> Response {
    match method {
        "getMe" => {
            let mut me = bot_user();
            if let Some(map) = me.as_object_mut() {
                for flag in [
                    "can_join_groups",
                    "can_read_all_group_messages",
                    "supports_inline_queries",
                    "has_main_web_app",
                ] {
                    map.insert(flag.into(), json!(false));
                }
            }
            ok(me)
        }
        "getWebhookInfo" => ok(
            json!({"url": "", "has_custom_certificate": false, "pending_update_count": api.updates.len()}),
        ),
        "deleteWebhook"
        | "setWebhook"
        | "setMyCommands"
        | "answerCallbackQuery"
        | "deleteMessage" => ok(json!(true)),
        "editMessageText" => edit_message_text(api, params),
        _ if SENDING.contains(&method) => send(api, method, params),
        _ => api_error(404, "Not Found"),
    }
}

/// The error a chat in `state` answers with, if any.
fn chat_refusal(state: ChatState) -> Option<Response> {
    match state {
        ChatState::Open => None,
        ChatState::Blocked => Some(api_error(403, "Forbidden: bot was blocked by the user")),
        ChatState::Deactivated => Some(api_error(403, "Forbidden: user is deactivated")),
        ChatState::NotFound => Some(api_error(400, "Bad Request: chat not found")),
        ChatState::CantInitiate => Some(api_error(
            403,
            "Forbidden: bot can't initiate conversation with a user",
        )),
    }
}

fn text_param(params: &Value, key: &str) -> String {
    params
        .get(key)
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

fn send(api: &mut Api, method: &str, params: &Value) -> Response {
    let Some(chat_id) = chat_of(params) else {
        return api_error(400, "Bad Request: chat not found");
    };
    if let Some(refusal) = chat_refusal(api.chats.get(&chat_id).copied().unwrap_or(ChatState::Open))
    {
        return refusal;
    }
    let text = match method {
        "sendMessage" => text_param(params, "text"),
        "forwardMessage" | "copyMessage" => original_text(api, params),
        _ => text_param(params, "caption"),
    };
    if method == "sendMessage" && text.trim().is_empty() {
        return api_error(400, "Bad Request: message text is empty");
    }
    let message_id = {
        let last = api.message_ids.entry(chat_id).or_insert(0);
        *last += 1;
        *last
    };
    api.sent.push(SentMessage {
        method: method.into(),
        chat_id,
        message_id,
        text: text.clone(),
        received_at: SystemTime::now(),
    });
    let mut message = message_json(chat_id, message_id);
    match method {
        "copyMessage" => return ok(json!({"message_id": message_id})),
        "sendPhoto" => {
            let photo = json!([{"file_id": format!("photo-{chat_id}-{message_id}"),
                "file_unique_id": format!("u{chat_id}-{message_id}"), "width": 640, "height": 480}]);
            message.insert("photo".into(), photo);
            message.insert("caption".into(), json!(text));
        }
        "sendDocument" => {
            let document = json!({"file_id": format!("doc-{chat_id}-{message_id}"),
                "file_unique_id": format!("d{chat_id}-{message_id}")});
            message.insert("document".into(), document);
            message.insert("caption".into(), json!(text));
        }
        _ => {
            message.insert("text".into(), json!(text));
        }
    }
    ok(Value::Object(message))
}

/// The text of the message a forward or copy refers to, if the fake sent it.
fn original_text(api: &Api, params: &Value) -> String {
    let from = params.get("from_chat_id").and_then(|v| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let id = params.get("message_id").and_then(Value::as_i64);
    api.sent
        .iter()
        .find(|m| Some(m.chat_id) == from && Some(m.message_id) == id)
        .map(|m| m.text.clone())
        .unwrap_or_default()
}

fn edit_message_text(api: &mut Api, params: &Value) -> Response {
    if params.get("inline_message_id").is_some() {
        return ok(json!(true));
    }
    let (Some(chat_id), Some(message_id)) = (
        chat_of(params),
        params.get("message_id").and_then(Value::as_i64),
    ) else {
        return api_error(400, "Bad Request: message to edit not found");
    };
    let text = text_param(params, "text");
    let Some(sent) = api
        .sent
        .iter_mut()
        .find(|m| m.chat_id == chat_id && m.message_id == message_id)
    else {
        return api_error(400, "Bad Request: message to edit not found");
    };
    if sent.text == text {
        return api_error(
            400,
            "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
        );
    }
    sent.text = text.clone();
    let mut message = message_json(chat_id, message_id);
    message.insert("text".into(), json!(text));
    message.insert("edit_date".into(), json!(unix_now()));
    ok(Value::Object(message))
}

/// `getUpdates`: confirms updates before `offset`, then answers at once when some are pending,
/// else waits up to `timeout` seconds for one to be pushed.
async fn get_updates(shared: &Shared, params: &Value) -> Response {
    let number = |key: &str| params.get(key).and_then(Value::as_i64);
    let offset = number("offset").unwrap_or(0);
    let limit = number("limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(number("timeout").unwrap_or(0).max(0) as u64);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Registered before looking, so a push between the look and the wait still wakes us.
        let pushed = shared.pushed.notified();
        tokio::pin!(pushed);
        pushed.as_mut().enable();
        let page = take_updates(&mut lock(shared), offset, limit);
        if !page.is_empty() {
            return ok(Value::Array(page));
        }
        if tokio::time::timeout_at(deadline, pushed).await.is_err() {
            return ok(json!([]));
        }
    }
}

fn take_updates(api: &mut Api, offset: i64, limit: usize) -> Vec<Value> {
    let id = |u: &Value| u.get("update_id").and_then(Value::as_i64).unwrap_or(0);
    if offset > 0 {
        // An offset confirms every update before it: Telegram forgets them.
        api.updates.retain(|u| id(u) >= offset);
    }
    api.updates.iter().take(limit).cloned().collect()
}
