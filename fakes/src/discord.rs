//! A fake Discord REST API (v10), enough for what jobq does over REST, served over real HTTP so
//! serenity talks to it through `HttpBuilder::new(token).proxy(fake.url()).ratelimiter_disabled(true)`.
//!
//! Routes (everything under `/api/v10`, `Authorization: Bot TOKEN` checked, 401 otherwise):
//! - `POST /users/@me/channels` `{"recipient_id"}` → the user's DM channel object (the same
//!   channel on every call, as Discord does);
//! - `POST /channels/{id}/messages` `{"content"}` → a full message object; recorded ([`FakeDiscord::sent`]);
//! - `GET /channels/{id}/messages?limit=&before=&after=` → the channel's history, **newest first**,
//!   `limit` 1–100 (default 50; outside that range a 400 `50035 Invalid Form Body`, as Discord);
//!   `after` gives the `limit` messages right after that id (still newest first);
//! - `GET /channels/{id}` → the channel object (name, guild, topic);
//! - `POST /interactions/{id}/{token}/callback` → 204; recorded ([`FakeDiscord::interaction_responses`]);
//! - `PUT /applications/{app}/guilds/{guild}/commands` → the commands back with ids; recorded
//!   ([`FakeDiscord::command_registrations`]).
//!
//! History is seeded from tests with [`FakeDiscord::seed_history`] (or [`FakeDiscord::seed_many`]):
//! authors, content, timestamps and attachments `{id, filename, url, size}`. Message ids are
//! snowflakes derived from the timestamps, so id order is time order, as on Discord.
//!
//! Faults: a user's DMs closed ([`FakeDiscord::close_dms`]: 403 code 50007 "Cannot send messages
//! to this user"), and one-shot or repeated [`Fault`]s matched by route, channel or user
//! ([`FakeDiscord::inject`]): 429 with `retry_after` in the body and the `Retry-After` header,
//! 5xx, a dropped connection (before or after the message is recorded), a stall.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::common::{self, Listening};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds: snowflakes count from it.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// The bot user the fake answers as (author of the messages it sends).
pub const BOT_USER_ID: u64 = 1_000_000_000_000_000_001;

/// Who wrote a seeded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedAuthor {
    pub id: u64,
    pub username: String,
    /// Shown as the display name; `None`: `username`.
    pub global_name: Option<String>,
    pub bot: bool,
}

impl SeedAuthor {
    pub fn new(id: u64, username: &str) -> Self {
        SeedAuthor {
            id,
            username: username.into(),
            global_name: None,
            bot: false,
        }
    }
}

/// A file attached to a seeded message (Discord's attachment object, the fields jobq reads).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedAttachment {
    pub id: u64,
    pub filename: String,
    pub url: String,
    pub size: u64,
}

/// One message of a channel's history, as a test seeds it.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedMessage {
    pub author: SeedAuthor,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub attachments: Vec<SeedAttachment>,
}

impl SeedMessage {
    pub fn new(author: SeedAuthor, content: &str, timestamp: DateTime<Utc>) -> Self {
        SeedMessage {
            author,
            content: content.into(),
            timestamp,
            attachments: Vec::new(),
        }
    }

    /// Adds an attachment (builder style).
    pub fn attachment(mut self, id: u64, filename: &str, url: &str, size: u64) -> Self {
        self.attachments.push(SeedAttachment {
            id,
            filename: filename.into(),
            url: url.into(),
            size,
        });
        self
    }
}

/// A message stored in a channel (seeded or sent through the API).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub id: u64,
    pub channel_id: u64,
    pub author: SeedAuthor,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    pub attachments: Vec<SeedAttachment>,
}

/// A message the bot sent through `POST /channels/{id}/messages`.
#[derive(Clone, Debug, PartialEq)]
pub struct SentMessage {
    pub message_id: u64,
    pub channel_id: u64,
    /// The DM's recipient when the channel is a DM channel.
    pub user_id: Option<u64>,
    pub content: String,
    /// When the fake received the request.
    pub received_at: SystemTime,
}

/// Which API call a [`Fault`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `POST /users/@me/channels`.
    CreateDm,
    /// `POST /channels/{id}/messages`.
    SendMessage,
    /// `GET /channels/{id}/messages`.
    History,
    /// `GET /channels/{id}`.
    GetChannel,
    /// `POST /interactions/{id}/{token}/callback`.
    InteractionCallback,
    /// `PUT /applications/{app}/guilds/{guild}/commands`.
    GuildCommands,
}

/// An answer to an interaction, as the bot posted it.
#[derive(Clone, Debug, PartialEq)]
pub struct InteractionResponse {
    pub interaction_id: u64,
    pub token: String,
    /// `{"type": 4, "data": {"content", "flags", ...}}`.
    pub body: Value,
}

/// A bulk overwrite of one guild's commands.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRegistration {
    pub application_id: u64,
    pub guild_id: u64,
    /// The array of commands sent.
    pub body: Value,
}

/// A fault the fake answers with instead of (or after) handling a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 with `{"message","retry_after":SECS,"global"}`, `Retry-After` (whole seconds, rounded
    /// up) and `X-RateLimit-*` headers; nothing is applied.
    RateLimited { retry_after: f64, global: bool },
    /// This status (e.g. 502) with a JSON error body; nothing is applied.
    Status(u16),
    /// The connection breaks before anything is applied.
    Drop,
    /// The request is applied (a message recorded), then the connection breaks in the answer.
    DropAfterApply,
    /// Wait this long, then handle the request normally.
    Stall(Duration),
}

/// Where a [`Fault`] applies, and how many times. Every `None` matches anything.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRule {
    pub fault: Fault,
    pub route: Option<Route>,
    pub channel: Option<u64>,
    /// Matches requests on this user's DM channel and `CreateDm` for this user.
    pub user: Option<u64>,
    pub remaining: u32,
}

impl FaultRule {
    /// `fault` on the next request of any kind.
    pub fn new(fault: Fault) -> Self {
        FaultRule {
            fault,
            route: None,
            channel: None,
            user: None,
            remaining: 1,
        }
    }

    pub fn on(mut self, route: Route) -> Self {
        self.route = Some(route);
        self
    }

    pub fn channel(mut self, channel: u64) -> Self {
        self.channel = Some(channel);
        self
    }

    pub fn user(mut self, user: u64) -> Self {
        self.user = Some(user);
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.remaining = times;
        self
    }
}

#[derive(Clone, Debug)]
struct Channel {
    /// `Some(user)`: the DM channel with that user.
    recipient: Option<u64>,
    name: Option<String>,
    guild_id: Option<u64>,
    topic: Option<String>,
    /// Keyed by id, so iteration is oldest first.
    messages: BTreeMap<u64, StoredMessage>,
}

struct Api {
    token: String,
    channels: HashMap<u64, Channel>,
    dm_channels: HashMap<u64, u64>,
    closed_dms: HashSet<u64>,
    faults: Vec<FaultRule>,
    sent: Vec<SentMessage>,
    /// `METHOD path` of every request (authorised or not), in order.
    requests: Vec<String>,
    interaction_responses: Vec<InteractionResponse>,
    command_registrations: Vec<CommandRegistration>,
    /// The last snowflake handed out, so ids stay unique and increasing.
    last_id: u64,
}

type Shared = Arc<Mutex<Api>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Api> {
    common::lock(shared)
}

impl Api {
    /// A snowflake for `at`, greater than every id handed out before.
    fn next_id(&mut self, at: DateTime<Utc>) -> u64 {
        let ms = (at.timestamp_millis() - DISCORD_EPOCH_MS).max(0) as u64;
        let id = (ms << 22).max(self.last_id + 1);
        self.last_id = id;
        id
    }

    fn dm_channel(&mut self, user: u64) -> u64 {
        if let Some(id) = self.dm_channels.get(&user) {
            return *id;
        }
        let id = self.next_id(Utc::now());
        self.channels.insert(
            id,
            Channel {
                recipient: Some(user),
                name: None,
                guild_id: None,
                topic: None,
                messages: BTreeMap::new(),
            },
        );
        self.dm_channels.insert(user, id);
        id
    }

    fn channel_mut(&mut self, id: u64) -> &mut Channel {
        self.channels.entry(id).or_insert_with(|| Channel {
            recipient: None,
            name: None,
            guild_id: None,
            topic: None,
            messages: BTreeMap::new(),
        })
    }
}

/// A running fake Discord API. Dropping it stops the listener.
pub struct FakeDiscord {
    shared: Shared,
    listening: Listening,
}

impl std::fmt::Debug for FakeDiscord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("FakeDiscord")
            .field("addr", &self.addr())
            .finish()
    }
}

impl FakeDiscord {
    /// Listens on `127.0.0.1:0`, accepting `Authorization: Bot {token}`.
    pub async fn start(token: &str) -> std::io::Result<FakeDiscord> {
        Self::start_on(common::any_local_port(), token).await
    }

    /// Listens on `bind`, accepting `Authorization: Bot {token}`.
    pub async fn start_on(bind: SocketAddr, token: &str) -> std::io::Result<FakeDiscord> {
        let shared = Arc::new(Mutex::new(Api {
            token: token.into(),
            channels: HashMap::new(),
            dm_channels: HashMap::new(),
            closed_dms: HashSet::new(),
            faults: Vec::new(),
            sent: Vec::new(),
            requests: Vec::new(),
            interaction_responses: Vec::new(),
            command_registrations: Vec::new(),
            last_id: 0,
        }));
        let app = Router::new().fallback(request).with_state(shared.clone());
        let listening = Listening::bind(bind, app).await?;
        Ok(FakeDiscord { shared, listening })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listening.addr()
    }

    /// `http://ADDR`: what `[discord] api_url` (serenity's proxy) is set to.
    pub fn url(&self) -> String {
        self.listening.url()
    }

    /// Names a (guild text) channel, for `GET /channels/{id}`.
    pub fn set_channel(&self, channel_id: u64, name: &str, guild_id: Option<u64>) {
        let mut api = lock(&self.shared);
        let channel = api.channel_mut(channel_id);
        channel.name = Some(name.into());
        channel.guild_id = guild_id;
    }

    /// Sets a channel's topic (where the ticket tool names the ticket's owner).
    pub fn set_channel_topic(&self, channel_id: u64, topic: &str) {
        lock(&self.shared).channel_mut(channel_id).topic = Some(topic.into());
    }

    /// Appends `messages` (give them oldest first) to a channel's history and returns the ids
    /// given to them, in the same order. The channel exists from then on.
    pub fn seed_history(
        &self,
        channel_id: u64,
        messages: impl IntoIterator<Item = SeedMessage>,
    ) -> Vec<u64> {
        let mut api = lock(&self.shared);
        api.channel_mut(channel_id);
        let mut ids = Vec::new();
        for seed in messages {
            let id = api.next_id(seed.timestamp);
            let stored = StoredMessage {
                id,
                channel_id,
                author: seed.author,
                content: seed.content,
                timestamp: seed.timestamp,
                attachments: seed.attachments,
            };
            api.channel_mut(channel_id).messages.insert(id, stored);
            ids.push(id);
        }
        ids
    }

    /// Seeds `n` messages `"message 1"`…`"message n"` one second apart, ending now, alternating
    /// between `authors` (at least one); returns their ids, oldest first.
    pub fn seed_many(&self, channel_id: u64, n: usize, authors: &[SeedAuthor]) -> Vec<u64> {
        let fallback = [SeedAuthor::new(42, "someone")];
        let authors = if authors.is_empty() {
            &fallback[..]
        } else {
            authors
        };
        let start = Utc::now() - chrono::Duration::seconds(n as i64);
        let seeds = (0..n).map(|i| {
            SeedMessage::new(
                authors[i % authors.len()].clone(),
                &format!("message {}", i + 1),
                start + chrono::Duration::seconds(i as i64),
            )
        });
        self.seed_history(channel_id, seeds)
    }

    /// A channel's whole history, oldest first (seeded and sent).
    pub fn history(&self, channel_id: u64) -> Vec<StoredMessage> {
        lock(&self.shared)
            .channels
            .get(&channel_id)
            .map(|c| c.messages.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every message the bot sent, in the order received.
    pub fn sent(&self) -> Vec<SentMessage> {
        lock(&self.shared).sent.clone()
    }

    /// The messages sent to `user`'s DM channel.
    pub fn sent_to_user(&self, user: u64) -> Vec<SentMessage> {
        lock(&self.shared)
            .sent
            .iter()
            .filter(|m| m.user_id == Some(user))
            .cloned()
            .collect()
    }

    /// `user` no longer accepts DMs from the bot: sends to their DM channel get 403 code 50007.
    pub fn close_dms(&self, user: u64) {
        lock(&self.shared).closed_dms.insert(user);
    }

    pub fn open_dms(&self, user: u64) {
        lock(&self.shared).closed_dms.remove(&user);
    }

    /// Adds a fault rule; rules are tried in the order added.
    pub fn inject(&self, rule: FaultRule) {
        lock(&self.shared).faults.push(rule);
    }

    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Every interaction response posted, in order.
    pub fn interaction_responses(&self) -> Vec<InteractionResponse> {
        lock(&self.shared).interaction_responses.clone()
    }

    /// Every guild command registration, in order.
    pub fn command_registrations(&self) -> Vec<CommandRegistration> {
        lock(&self.shared).command_registrations.clone()
    }

    /// `METHOD path` of every request so far (`"GET /api/v10/channels/5/messages"`).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.shared).requests.clone()
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: u64, message: &str) -> Response {
    json_response(status, json!({"message": message, "code": code}))
}

fn rate_limited(retry_after: f64, global: bool) -> Response {
    let body = json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global});
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, body);
    let headers = response.headers_mut();
    let whole = retry_after.max(0.0).ceil() as u64;
    let pairs = [
        ("retry-after", whole.to_string()),
        ("x-ratelimit-limit", "5".into()),
        ("x-ratelimit-remaining", "0".into()),
        ("x-ratelimit-reset-after", format!("{retry_after:.3}")),
        (
            "x-ratelimit-scope",
            if global { "global" } else { "user" }.into(),
        ),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    if global && let Ok(value) = HeaderValue::from_str("true") {
        headers.insert("x-ratelimit-global", value);
    }
    response
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

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, false)
}

fn user_json(author: &SeedAuthor) -> Value {
    json!({
        "id": author.id.to_string(),
        "username": author.username,
        "global_name": author.global_name.clone().unwrap_or_else(|| author.username.clone()),
        "discriminator": "0",
        "avatar": null,
        "bot": author.bot,
    })
}

fn bot_author() -> SeedAuthor {
    SeedAuthor {
        id: BOT_USER_ID,
        username: "jobq-bot".into(),
        global_name: None,
        bot: true,
    }
}

fn message_json(message: &StoredMessage) -> Value {
    let attachments: Vec<Value> = message
        .attachments
        .iter()
        .map(|a| {
            json!({
                "id": a.id.to_string(), "filename": a.filename, "size": a.size,
                "url": a.url, "proxy_url": a.url,
            })
        })
        .collect();
    json!({
        "id": message.id.to_string(),
        "channel_id": message.channel_id.to_string(),
        "author": user_json(&message.author),
        "content": message.content,
        "timestamp": timestamp(message.timestamp),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": attachments,
        "embeds": [],
        "pinned": false,
        "type": 0,
    })
}

fn channel_json(id: u64, channel: &Channel) -> Value {
    match channel.recipient {
        Some(user) => json!({
            "id": id.to_string(),
            "type": 1,
            "last_message_id": channel.messages.keys().next_back().map(u64::to_string),
            "recipients": [user_json(&SeedAuthor::new(user, &format!("user{user}")))],
        }),
        None => json!({
            "id": id.to_string(),
            "type": 0,
            "guild_id": channel.guild_id.map(|g| g.to_string()),
            "name": channel.name.clone().unwrap_or_else(|| format!("channel-{id}")),
            "topic": channel.topic,
            "position": 0,
            "permission_overwrites": [],
        }),
    }
}

/// What a request is, once its path is parsed.
enum Call {
    CreateDm,
    SendMessage(u64),
    History(u64),
    GetChannel(u64),
    InteractionCallback(u64, String),
    GuildCommands { application: u64, guild: u64 },
}

impl Call {
    fn parse(method: &Method, path: &str) -> Option<Call> {
        let rest = path.strip_prefix("/api/v10/")?;
        let parts: Vec<&str> = rest.split('/').collect();
        match (method.as_str(), parts.as_slice()) {
            ("POST", ["users", "@me", "channels"]) => Some(Call::CreateDm),
            ("POST", ["channels", id, "messages"]) => id.parse().ok().map(Call::SendMessage),
            ("GET", ["channels", id, "messages"]) => id.parse().ok().map(Call::History),
            ("GET", ["channels", id]) => id.parse().ok().map(Call::GetChannel),
            ("POST", ["interactions", id, token, "callback"]) => id
                .parse()
                .ok()
                .map(|id| Call::InteractionCallback(id, (*token).to_owned())),
            ("PUT", ["applications", app, "guilds", guild, "commands"]) => {
                match (app.parse(), guild.parse()) {
                    (Ok(application), Ok(guild)) => {
                        Some(Call::GuildCommands { application, guild })
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn route(&self) -> Route {
        match self {
            Call::CreateDm => Route::CreateDm,
            Call::SendMessage(_) => Route::SendMessage,
            Call::History(_) => Route::History,
            Call::GetChannel(_) => Route::GetChannel,
            Call::InteractionCallback(..) => Route::InteractionCallback,
            Call::GuildCommands { .. } => Route::GuildCommands,
        }
    }

    fn channel(&self) -> Option<u64> {
        match self {
            Call::CreateDm | Call::InteractionCallback(..) | Call::GuildCommands { .. } => None,
            Call::SendMessage(id) | Call::History(id) | Call::GetChannel(id) => Some(*id),
        }
    }
}

fn authorised(api: &Api, headers: &HeaderMap) -> bool {
    let expected = format!("Bot {}", api.token);
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected)
}

/// Takes one use of the first rule matching this call (`user`: the DM's recipient, if known).
fn take_fault(api: &mut Api, call: &Call, user: Option<u64>) -> Option<Fault> {
    let route = call.route();
    let channel = call.channel();
    common::take_use(
        &mut api.faults,
        |rule| &mut rule.remaining,
        |rule| {
            rule.route.is_none_or(|r| r == route)
                && rule.channel.is_none_or(|c| Some(c) == channel)
                && rule.user.is_none_or(|u| Some(u) == user)
        },
    )
    .map(|rule| rule.fault)
}

/// The user a call concerns: the recipient in a create-DM body, or a DM channel's recipient.
fn call_user(api: &Api, call: &Call, body: &Value) -> Option<u64> {
    match call {
        Call::CreateDm => recipient(body),
        other => other
            .channel()
            .and_then(|id| api.channels.get(&id))
            .and_then(|c| c.recipient),
    }
}

fn recipient(body: &Value) -> Option<u64> {
    match body.get("recipient_id")? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

async fn request(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (call, fault) = {
        let mut api = lock(&shared);
        api.requests.push(format!("{method} {}", uri.path()));
        if !authorised(&api, &headers) {
            return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
        }
        let Some(call) = Call::parse(&method, uri.path()) else {
            return error(StatusCode::NOT_FOUND, 0, "404: Not Found");
        };
        let user = call_user(&api, &call, &body);
        let fault = take_fault(&mut api, &call, user);
        (call, fault)
    };
    match fault {
        Some(Fault::RateLimited {
            retry_after,
            global,
        }) => return rate_limited(retry_after, global),
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
            return error(status, 0, status.canonical_reason().unwrap_or("error"));
        }
        Some(Fault::Drop) => return broken(None),
        Some(Fault::Stall(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::DropAfterApply) | None => {}
    }
    let response = handle(&mut lock(&shared), &call, &body, uri.query());
    if fault == Some(Fault::DropAfterApply) {
        // Applied; the answer never arrives whole.
        return broken(Some(response.into_parts().0));
    }
    response
}

fn handle(api: &mut Api, call: &Call, body: &Value, query: Option<&str>) -> Response {
    match call {
        Call::CreateDm => match recipient(body) {
            Some(user) => {
                let id = api.dm_channel(user);
                json_response(StatusCode::OK, channel_json(id, &api.channels[&id]))
            }
            None => invalid_form("recipient_id", "This field is required"),
        },
        Call::SendMessage(channel) => send_message(api, *channel, body),
        Call::History(channel) => history(api, *channel, query),
        Call::GetChannel(channel) => match api.channels.get(channel) {
            Some(c) => json_response(StatusCode::OK, channel_json(*channel, c)),
            None => error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"),
        },
        Call::InteractionCallback(id, token) => {
            api.interaction_responses.push(InteractionResponse {
                interaction_id: *id,
                token: token.clone(),
                body: body.clone(),
            });
            StatusCode::NO_CONTENT.into_response()
        }
        Call::GuildCommands { application, guild } => {
            register_commands(api, *application, *guild, body)
        }
    }
}

/// Records the overwrite and answers with the commands as Discord would: ids and version added.
fn register_commands(api: &mut Api, application: u64, guild: u64, body: &Value) -> Response {
    api.command_registrations.push(CommandRegistration {
        application_id: application,
        guild_id: guild,
        body: body.clone(),
    });
    let commands = body.as_array().cloned().unwrap_or_default();
    let answered: Vec<Value> = commands
        .into_iter()
        .map(|mut command| {
            let id = api.next_id(Utc::now());
            if let Value::Object(fields) = &mut command {
                fields.insert("id".into(), json!(id.to_string()));
                fields.insert("application_id".into(), json!(application.to_string()));
                fields.insert("guild_id".into(), json!(guild.to_string()));
                fields.insert("version".into(), json!(id.to_string()));
                fields.entry("type").or_insert(json!(1));
                fields.entry("description").or_insert(json!(""));
            }
            command
        })
        .collect();
    json_response(StatusCode::OK, Value::Array(answered))
}

fn invalid_form(field: &str, message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({
            "message": "Invalid Form Body", "code": 50035,
            "errors": {field: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}},
        }),
    )
}

fn send_message(api: &mut Api, channel_id: u64, body: &Value) -> Response {
    let Some(channel) = api.channels.get(&channel_id) else {
        return error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    };
    let user_id = channel.recipient;
    if user_id.is_some_and(|u| api.closed_dms.contains(&u)) {
        return error(
            StatusCode::FORBIDDEN,
            50007,
            "Cannot send messages to this user",
        );
    }
    let content = body
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if content.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        );
    }
    let now = Utc::now();
    let id = api.next_id(now);
    let stored = StoredMessage {
        id,
        channel_id,
        author: bot_author(),
        content: content.clone(),
        timestamp: now,
        attachments: Vec::new(),
    };
    let answer = message_json(&stored);
    api.channel_mut(channel_id).messages.insert(id, stored);
    api.sent.push(SentMessage {
        message_id: id,
        channel_id,
        user_id,
        content,
        received_at: SystemTime::now(),
    });
    json_response(StatusCode::OK, answer)
}

fn history(api: &Api, channel_id: u64, query: Option<&str>) -> Response {
    let Some(channel) = api.channels.get(&channel_id) else {
        return error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    };
    let params: HashMap<String, String> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let number = |key: &str| params.get(key).map(|v| v.parse::<u64>());
    let limit = match number("limit") {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n as usize,
        Some(_) => return invalid_form("limit", "int value should be between 1 and 100."),
    };
    let messages = &channel.messages;
    let page: Vec<&StoredMessage> = match (number("before"), number("after")) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return invalid_form("before", "Value is not snowflake.");
        }
        (Some(Ok(before)), _) => messages
            .range(..before)
            .rev()
            .take(limit)
            .map(|(_, m)| m)
            .collect(),
        (None, Some(Ok(after))) => {
            // The `limit` messages right after `after`, then newest first like every page.
            let mut page: Vec<&StoredMessage> = messages
                .range(after.saturating_add(1)..)
                .take(limit)
                .map(|(_, m)| m)
                .collect();
            page.reverse();
            page
        }
        (None, None) => messages.values().rev().take(limit).collect(),
    };
    let body: Vec<Value> = page.into_iter().map(message_json).collect();
    json_response(StatusCode::OK, Value::Array(body))
}
