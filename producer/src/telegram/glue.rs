//! teloxide glue: updates in (long polling, or a webhook), [`Action`]s out. Our own loop
//! rather than teloxide's dispatcher, so every error passes through [`BotToken::mask`] before
//! it is logged (teloxide's own listeners log request errors, whose URL holds the token).
//!
//! Long polling confirms a batch of updates (the next `offset`) only after it was handled: a
//! crash in between redelivers it, which the keys derived from the update make harmless.
//! Within a batch, chats are handled concurrently and each chat's updates in order, so one
//! chat's dialogue never races itself and one slow chat does not hold up the others past the
//! per-update time limit.
//!
//! Webhook mode answers Telegram only after the update was handled (200), or with a 500 when
//! it could not be in time, so Telegram delivers it again: an update is never acknowledged and
//! then lost. Both modes take the chat's turn ([`ChatTurns`]) around each update, so two
//! updates of one chat (concurrent webhook posts) are handled one after the other, in the
//! order they arrived.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use teloxide::Bot;
use teloxide::RequestError;
use teloxide::payloads::{
    AnswerCallbackQuerySetters, EditMessageTextSetters, SendMessageSetters, SetWebhookSetters,
};
use teloxide::requests::Requester;
use teloxide::types::{
    CallbackQueryId, ChatId, InlineKeyboardButton, InlineKeyboardMarkup, MessageId, Update,
    UpdateKind,
};

use super::logic::{Action, Button, Incoming, Press, Shop};
use super::token::BotToken;

/// How long `getUpdates` waits for an update before answering empty.
const POLL_SECONDS: u32 = 25;
/// The longest one update's handling may take (database, then the Bot API calls).
const PER_UPDATE: Duration = Duration::from_secs(60);
/// How long to wait after a failed `getUpdates` (doubling up to a minute).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Where updates come from.
#[derive(Debug, Clone)]
pub enum Mode {
    /// `getUpdates` long polling (the default).
    Polling,
    /// Telegram posts updates to `url`, served on `bind` (path `/telegram/webhook`).
    Webhook { url: url::Url, bind: SocketAddr },
}

impl Mode {
    /// Webhook mode from the flags: an http(s) URL and an `ADDR:PORT`.
    pub fn webhook(url: &str, bind: &str) -> Result<Mode, String> {
        let url = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| format!("--webhook {url:?} is not an http(s) URL"))?;
        let bind = bind
            .parse()
            .map_err(|_| format!("--webhook-bind {bind:?} is not ADDR:PORT"))?;
        Ok(Mode::Webhook { url, bind })
    }
}

/// The bot's connection: the teloxide client, the token to mask, and the chats' turns.
#[derive(Clone)]
pub struct Connection {
    bot: Bot,
    token: BotToken,
    turns: Arc<ChatTurns>,
}

/// One lock per chat with an update in hand: a chat's updates are handled one at a time, in
/// the order they asked (tokio's mutex is fair). Entries go when no one holds or waits.
#[derive(Default)]
pub struct ChatTurns {
    chats: std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl ChatTurns {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<tokio::sync::Mutex<()>>>> {
        // Only inserts and removals happen under it: a panic leaves the map usable.
        self.chats
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `work` in `chat`'s turn.
    pub async fn in_turn<T>(&self, chat: i64, work: impl Future<Output = T>) -> T {
        let lock = self.map().entry(chat).or_default().clone();
        let result = {
            let _turn = lock.lock().await;
            work.await
        };
        let mut map = self.map();
        // The map's and ours: nobody else holds or waits for this chat.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&chat);
        }
        result
    }

    /// Chats with an update in hand or waiting (for tests).
    pub fn busy(&self) -> usize {
        self.map().len()
    }
}

impl Connection {
    /// A client for `token` at `api_url`, with a request timeout longer than a long poll.
    pub fn new(token: BotToken, api_url: &url::Url) -> Result<Connection, String> {
        let client = teloxide::net::default_reqwest_settings()
            .timeout(Duration::from_secs(u64::from(POLL_SECONDS) + 15))
            .build()
            .map_err(|e| token.mask(&format!("cannot build the HTTP client: {e}")))?;
        let mut base = api_url.clone();
        // teloxide appends `bot<TOKEN>/<Method>`: a base ending in `/` would give `//bot…`.
        if let Ok(mut segments) = base.path_segments_mut() {
            segments.pop_if_empty();
        }
        let bot = Bot::with_client(token.expose(), client).set_api_url(base);
        Ok(Connection {
            bot,
            token,
            turns: Arc::new(ChatTurns::default()),
        })
    }

    /// The teloxide client.
    pub(super) fn bot(&self) -> &Bot {
        &self.bot
    }

    /// An error's text, free of the token.
    pub fn describe(&self, error: &RequestError) -> String {
        self.token.mask(&error.to_string())
    }

    /// Checks the token with `getMe` before serving: a wrong one stops the bot clearly.
    pub async fn check(&self) -> Result<String, String> {
        match self.bot.get_me().await {
            Ok(me) => Ok(me.username.clone().unwrap_or_default()),
            Err(error) => Err(self.describe(&error)),
        }
    }
}

/// Long polling until `shutdown` completes.
pub async fn poll(conn: &Connection, shop: &Shop, shutdown: impl Future<Output = ()>) {
    // getUpdates is refused while a webhook is set (left by an earlier `--webhook` run).
    if let Err(error) = conn.bot.delete_webhook().await {
        tracing::warn!(error = %conn.describe(&error), "could not remove a webhook before polling");
    }
    tokio::pin!(shutdown);
    let mut offset: i64 = 0;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let result = tokio::select! {
            () = &mut shutdown => return,
            result = get_updates(conn, offset) => result,
        };
        match result {
            Ok(batch) => {
                backoff = FIRST_BACKOFF;
                if let Some(last) = batch.last_id {
                    offset = last.saturating_add(1);
                }
                handle_batch(conn, shop, batch.updates).await;
            }
            Err(Polled::RetryAfter(after)) => tokio::time::sleep(after).await,
            Err(Polled::Failed(error)) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "getUpdates failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// One `getUpdates` answer: the updates that read, and the highest id seen (read or not),
/// which the next offset confirms.
struct Batch {
    updates: Vec<Update>,
    last_id: Option<i64>,
}

enum Polled {
    RetryAfter(Duration),
    /// Why the call failed, free of the token.
    Failed(String),
}

/// `getUpdates` by our own request rather than teloxide's: its answer is read one update at a
/// time, so an update that does not read (a faulty or hostile API) is skipped alone instead of
/// failing the whole answer, and ids are 64-bit, so the offset can always confirm it.
async fn get_updates(conn: &Connection, offset: i64) -> Result<Batch, Polled> {
    let mut url = conn.bot.api_url();
    url.path_segments_mut()
        .map_err(|()| Polled::Failed("the Bot API URL cannot take a path".into()))?
        .push(&format!("bot{}", conn.bot.token()))
        .push("getUpdates");
    let body = serde_json::json!({"offset": offset, "timeout": POLL_SECONDS});
    let failed = |what: &str, error: &dyn std::fmt::Display| {
        Polled::Failed(conn.token.mask(&format!("{what}: {error}")))
    };
    let response = conn
        .bot
        .client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| failed("the request failed", &e.without_url()))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| failed("the answer was cut", &e.without_url()))?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| failed(&format!("the answer ({status}) is not JSON"), &e))?;
    if answer["ok"] != serde_json::Value::Bool(true) {
        if let Some(seconds) = answer["parameters"]["retry_after"].as_u64() {
            return Err(Polled::RetryAfter(Duration::from_secs(seconds)));
        }
        let description = answer["description"].as_str().unwrap_or("no description");
        return Err(failed(&format!("refused ({status})"), &description));
    }
    let Some(raw) = answer["result"].as_array() else {
        return Err(failed("the answer has no result list", &status));
    };
    let mut batch = Batch {
        updates: Vec::with_capacity(raw.len()),
        last_id: None,
    };
    for raw in raw {
        let id = raw["update_id"].as_i64();
        batch.last_id = batch.last_id.max(id);
        match read_update(raw) {
            Ok(update) => batch.updates.push(update),
            Err(error) => tracing::warn!(update = ?id, %error, "a telegram update was skipped"),
        }
    }
    Ok(batch)
}

/// One update as teloxide types it, or why it cannot be read. teloxide holds an update id in
/// 32 bits; Telegram's ids are far below that, so an id above is a faulty API's: said, and the
/// update read without it (the offset is ours, 64-bit, and only logs name the id).
fn read_update(raw: &serde_json::Value) -> Result<Update, String> {
    let Some(id) = raw["update_id"].as_i64() else {
        return Err("it has no numeric update_id".into());
    };
    let mut raw = raw.clone();
    if u32::try_from(id).is_err() {
        tracing::warn!(
            update = id,
            "a telegram update_id is outside the range Telegram uses"
        );
        raw["update_id"] = serde_json::Value::from(0);
    }
    // From text, as teloxide reads updates itself: its update types read a borrowed text where
    // they can, which a `Value` cannot lend.
    serde_json::from_str(&raw.to_string())
        .map_err(|e| format!("it does not read as an update: {e}"))
}

/// Handles a batch: chats concurrently, each chat's updates in order.
async fn handle_batch(conn: &Connection, shop: &Shop, updates: Vec<Update>) {
    let mut by_chat: BTreeMap<i64, Vec<Update>> = BTreeMap::new();
    for update in updates {
        let chat = update.chat().map_or(0, |c| c.id.0);
        by_chat.entry(chat).or_default().push(update);
    }
    let chats = by_chat.into_values().map(|updates| async move {
        for update in updates {
            handle_update(conn, shop, update).await;
        }
    });
    futures::future::join_all(chats).await;
}

/// One update, in its chat's turn, within [`PER_UPDATE`] (waiting for the turn included):
/// `false` when it took too long.
pub async fn handle_update(conn: &Connection, shop: &Shop, update: Update) -> bool {
    let id = update.id.0;
    let chat = update.chat().map_or(0, |c| c.id.0);
    let work = async {
        let actions = match incoming(&update) {
            Some(Input::Message(message)) => shop.on_message(&message).await,
            Some(Input::Press(press)) => shop.on_press(&press).await,
            None => return,
        };
        perform(conn, shop, id, actions).await;
    };
    let turn = conn.turns.in_turn(chat, work);
    if tokio::time::timeout(PER_UPDATE, turn).await.is_err() {
        tracing::warn!(update = id, "a telegram update took too long; moving on");
        return false;
    }
    true
}

enum Input {
    Message(Incoming),
    Press(Press),
}

/// The update as plain data; `None` for what the bot ignores (edits, channel posts, messages
/// with no sender).
fn incoming(update: &Update) -> Option<Input> {
    match &update.kind {
        UpdateKind::Message(message) => {
            let from = message.from.as_ref()?;
            Some(Input::Message(Incoming {
                chat: message.chat.id.0,
                message_id: i64::from(message.id.0),
                user: i64::try_from(from.id.0).ok()?,
                name: from.full_name(),
                text: message.text().or(message.caption()).map(str::to_owned),
                has_photo: message.photo().is_some(),
            }))
        }
        UpdateKind::CallbackQuery(query) => {
            let message = query.message.as_ref()?;
            Some(Input::Press(Press {
                callback_id: query.id.0.clone(),
                user: i64::try_from(query.from.id.0).ok()?,
                name: query.from.full_name(),
                chat: message.chat().id.0,
                message_id: i64::from(message.id().0),
                data: query.data.clone().unwrap_or_default(),
            }))
        }
        _ => None,
    }
}

pub(super) fn keyboard(buttons: &[Vec<Button>]) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(buttons.iter().map(|row| {
        row.iter()
            .map(|b| InlineKeyboardButton::callback(b.label.clone(), b.data.clone()))
            .collect::<Vec<_>>()
    }))
}

pub(super) fn message_id(id: i64) -> MessageId {
    MessageId(i32::try_from(id).unwrap_or(i32::MAX))
}

/// How long an immediate reply waits out Telegram's 429 (the per-chat limit) before it is
/// handed to a `send_dm` job, which waits without holding the chat's turn.
const REPLY_WAIT: Duration = Duration::from_secs(3);
/// The most a Telegram message holds, in UTF-16 code units: longer texts are cut to it.
const TEXT_UNITS: usize = 4096;

/// Performs update `update`'s actions in order; a failed one is logged (masked) and the rest
/// go on. Texts are cut to Telegram's limit; a 429 is waited out up to [`REPLY_WAIT`], then a
/// message still refused is handed to a `send_dm` job keyed by the update and its place, so
/// it arrives once even when the update is handled again.
pub async fn perform(conn: &Connection, shop: &Shop, update: u32, actions: Vec<Action>) {
    for (place, action) in actions.into_iter().enumerate() {
        let started = tokio::time::Instant::now();
        loop {
            match attempt(conn, &action).await {
                Ok(()) => break,
                Err(RequestError::RetryAfter(after))
                    if started.elapsed() + after.duration() <= REPLY_WAIT =>
                {
                    tokio::time::sleep(after.duration()).await;
                }
                Err(RequestError::RetryAfter(_)) => {
                    hand_off(shop, update, place, &action).await;
                    break;
                }
                Err(error) => {
                    tracing::warn!(error = %conn.describe(&error), "a telegram reply failed");
                    break;
                }
            }
        }
    }
}

/// One try of an action, its texts cut to Telegram's limit.
async fn attempt(conn: &Connection, action: &Action) -> Result<(), RequestError> {
    match action.clone() {
        Action::Send {
            chat,
            text,
            buttons,
        } => {
            let request = conn
                .bot
                .send_message(ChatId(chat), jobs::text::clip_utf16(&text, TEXT_UNITS));
            if buttons.is_empty() {
                request.await.map(drop)
            } else {
                request.reply_markup(keyboard(&buttons)).await.map(drop)
            }
        }
        Action::Edit {
            chat,
            message_id: id,
            text,
            buttons,
        } => {
            let text = jobs::text::clip_utf16(&text, TEXT_UNITS);
            let request = conn
                .bot
                .edit_message_text(ChatId(chat), message_id(id), text);
            if buttons.is_empty() {
                request.await.map(drop)
            } else {
                request.reply_markup(keyboard(&buttons)).await.map(drop)
            }
        }
        Action::Answer { callback_id, text } => {
            let request = conn.bot.answer_callback_query(CallbackQueryId(callback_id));
            match text {
                Some(text) => request.text(text).await.map(drop),
                None => request.await.map(drop),
            }
        }
        Action::Forward {
            to,
            from_chat,
            message_id: id,
        } => conn
            .bot
            .forward_message(ChatId(to), ChatId(from_chat), message_id(id))
            .await
            .map(drop),
    }
}

/// A message Telegram still refuses after [`REPLY_WAIT`], as a `send_dm` job keyed
/// `telegram:reply:<update>:<place>` (its buttons are not carried: a DM is text). Other
/// actions are only logged: they make no sense later.
async fn hand_off(shop: &Shop, update: u32, place: usize, action: &Action) {
    let Action::Send { chat, text, .. } = action else {
        tracing::warn!(
            update,
            "a telegram reply was rate-limited past the wait; dropped"
        );
        return;
    };
    let dm = jobs::kinds::UserId::parse(*chat)
        .map_err(|e| e.to_string())
        .and_then(|user| {
            let to = jobs::kinds::Recipient::new(jobs::kinds::Platform::Telegram, user);
            jobs::kinds::SendDm::new(to, jobs::text::clip_utf16(text, TEXT_UNITS))
                .map_err(|e| e.to_string())
        });
    let options = jobs::EnqueueOptions {
        key: Some(format!("telegram:reply:{update}:{place}")),
        ..jobs::EnqueueOptions::default()
    };
    let enqueued = match dm {
        Ok(dm) => shop
            .queue
            .enqueue(&dm, options)
            .await
            .map_err(|e| e.to_string()),
        Err(why) => Err(why),
    };
    match enqueued {
        Ok(job) => tracing::info!(
            update,
            dm_job = job.id,
            "a rate-limited telegram reply goes as a DM job"
        ),
        Err(error) => {
            tracing::warn!(update, %error, "a rate-limited telegram reply could not be handed to a DM job")
        }
    }
}

/// Webhook mode: registers `url` with a secret Telegram echoes in a header, then serves
/// `POST /telegram/webhook` on `bind` until `shutdown` (requests in hand are finished). Each
/// update is handled, in its chat's turn, before it is answered: 200 once handled, 500 when it
/// took too long (Telegram then delivers it again, which its keys make harmless).
pub async fn webhook(
    conn: &Connection,
    shop: &Shop,
    url: url::Url,
    bind: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let secret = webhook_secret()?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen on {bind} for the webhook: {e}"))?;
    conn.bot
        .set_webhook(url.clone())
        .secret_token(secret.clone())
        .await
        .map_err(|e| format!("setWebhook failed: {}", conn.describe(&e)))?;
    tracing::info!(%bind, url = %url, "telegram webhook registered");
    let state = Arc::new(WebhookState {
        conn: conn.clone(),
        shop: shop.clone(),
        secret,
    });
    let app = axum::Router::new()
        .route("/telegram/webhook", axum::routing::post(receive))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("the webhook server failed: {e}"))
}

struct WebhookState {
    conn: Connection,
    shop: Shop,
    secret: String,
}

async fn receive(
    axum::extract::State(state): axum::extract::State<Arc<WebhookState>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !same(given.as_bytes(), state.secret.as_bytes()) {
        return axum::http::StatusCode::UNAUTHORIZED;
    }
    let update = serde_json::from_slice(&body).map_err(|e| format!("it is not JSON: {e}"));
    let update = match update.and_then(|raw| read_update(&raw)) {
        Ok(update) => update,
        Err(error) => {
            // Answered 200 so Telegram does not redeliver what we will never read.
            tracing::warn!(%error, "a webhook update was skipped");
            return axum::http::StatusCode::OK;
        }
    };
    if handle_update(&state.conn, &state.shop, update).await {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// Constant-time comparison, so the secret cannot be guessed byte by byte from timings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 32 random bytes as hex (Telegram allows A-Z, a-z, 0-9, _ and -).
fn webhook_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("no randomness for the webhook secret: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_chats_updates_take_turns_and_other_chats_do_not_wait() {
        let turns = Arc::new(ChatTurns::default());
        let (held_tx, held_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let first = {
            let (turns, order) = (turns.clone(), order.clone());
            tokio::spawn(async move {
                turns
                    .in_turn(1, async {
                        let _ = held_tx.send(());
                        let _ = release_rx.await;
                        order.lock().unwrap().push("first");
                    })
                    .await
            })
        };
        held_rx.await.unwrap();
        let second = {
            let (turns, order) = (turns.clone(), order.clone());
            tokio::spawn(async move {
                turns
                    .in_turn(1, async { order.lock().unwrap().push("second") })
                    .await
            })
        };
        // Another chat goes ahead while chat 1 is held.
        turns.in_turn(2, async {}).await;
        while turns.busy() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            order.lock().unwrap().is_empty(),
            "the second waited its turn"
        );
        release_tx.send(()).unwrap();
        first.await.unwrap();
        second.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["first", "second"]);
        assert_eq!(turns.busy(), 0, "entries go when done");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        let secret = webhook_secret().unwrap();
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
