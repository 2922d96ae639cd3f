//! The Telegram bot end to end, on both backends: a real `jobq telegram` process long-polling
//! the fake Bot API (updates pushed into `getUpdates`, replies read back from the calls it
//! recorded). Each command's reply; `/buy` → confirm (across a restart of the bot) → receipt
//! forwarded → Approve, with the job it enqueues and repeated presses enqueuing nothing; admin
//! commands' jobs (kind, payload, key) and audit entries; a redelivered update enqueuing
//! nothing new; non-admins refused; bad input answered; and the whole path `/provision` →
//! a client on the fake panel → the DM on the fake Bot API, through a real worker. Also: the
//! admins' order notices through a 502, a 429 and a restart (each admin told exactly once),
//! Reject, `/admins remove`, the per-user rate limit, and `--webhook` answering only after
//! an update was handled.

mod support;

use std::time::Duration;

use fakes::sui::FakeSui;
use fakes::telegram::{FakeTelegram, Fault, FaultRule};
use jobs::JobState;
use jobs::driver::JobRecord;
use serde_json::{Value, json};
use support::panel;
use support::*;

on_both_backends!(
    customer_commands_answer_and_bad_input_is_explained,
    buy_confirm_receipt_and_approve_survive_a_restart_and_enqueue_once,
    admin_commands_enqueue_keyed_audited_jobs_and_a_redelivered_update_adds_nothing,
    non_admins_are_refused_and_nothing_is_enqueued,
    provision_on_telegram_reaches_the_panel_and_dms_the_link,
    a_missing_or_malformed_token_stops_the_bot_before_it_connects,
    admin_notices_survive_failed_sends_and_a_restart_and_arrive_once,
    reject_tells_the_customer_by_a_keyed_dm_and_provisions_nothing,
    admins_remove_takes_the_rights_away,
    a_flood_of_commands_is_slowed_and_enqueues_nothing_extra,
    webhook_updates_are_handled_before_they_are_answered,
    replies_arrive_through_a_429_and_fit_telegrams_limit,
    an_update_id_beyond_32_bits_is_said_once_and_the_bot_goes_on,
);

const TOKEN: &str = "424242:TGbotSECRETneverINlogs0123456789ab";
const SECRET_PART: &str = "TGbotSECRETneverINlogs0123456789ab";
const ADMIN: i64 = 9001;
const CUSTOMER: i64 = panel::USER;
/// An admin added through `/admins add` (kept in the database).
const OTHER_ADMIN: i64 = 4242;

struct Setup {
    telegram: FakeTelegram,
    _panel: FakeSui,
    db: TestDb,
}

async fn setup(backend: Backend) -> Setup {
    setup_with(backend, 10_000, 1000).await
}

/// As [`setup`], with this per-user command rate.
async fn setup_with(backend: Backend, per_minute: u32, burst: u32) -> Setup {
    let telegram = FakeTelegram::start(TOKEN).await.expect("fake telegram");
    let panel = panel::fake().await;
    let extra = format!(
        r#"
[[plans]]
name = "pro"
volume_gb = 100
days = 90
inbounds = [1]

[telegram]
api_url = "{}"
admins = [{ADMIN}]

[bots]
commands_per_minute = {per_minute}
command_burst = {burst}
"#,
        telegram.url()
    );
    let db = panel::db_with_panel(backend, &panel, &extra).await;
    Setup {
        telegram,
        _panel: panel,
        db,
    }
}

/// `jobq telegram` with the token, logging at debug, to start (more arguments may follow).
fn jobq_telegram(db: &TestDb) -> Spawn {
    db.spawn(&["telegram"])
        .env("JOBQ_TELEGRAM_TOKEN", TOKEN)
        .log_filter("debug")
}

/// Waits until the bot (re)started polling: one more `getUpdates` than `before`.
async fn polling(fake: &FakeTelegram, before: usize, bot: &Process) {
    until(secs(30), "the bot to poll", bot, || {
        fake.calls_of("getUpdates").len() > before
    })
    .await;
}

async fn start_bot(s: &Setup) -> Process {
    let before = s.telegram.calls_of("getUpdates").len();
    let bot = jobq_telegram(&s.db).start();
    polling(&s.telegram, before, &bot).await;
    bot
}

fn person(id: i64, name: &str) -> Value {
    json!({"id": id, "is_bot": false, "first_name": name})
}

fn chat(id: i64) -> Value {
    json!({"id": id, "type": "private", "first_name": "chat"})
}

/// A text message from `user` in their private chat.
fn message(user: i64, message_id: i64, text: &str) -> Value {
    json!({"message": {"message_id": message_id, "date": 1_790_000_000, "chat": chat(user),
        "from": person(user, "Ann"), "text": text}})
}

fn photo(user: i64, message_id: i64) -> Value {
    json!({"message": {"message_id": message_id, "date": 1_790_000_000, "chat": chat(user),
        "from": person(user, "Ann"),
        "photo": [{"file_id": "f1", "file_unique_id": "u1", "width": 90, "height": 90}]}})
}

/// A press of the button with `data` on the bot's message `message_id` in `user`'s chat.
fn press(user: i64, callback: &str, message_id: i64, data: &str) -> Value {
    json!({"callback_query": {"id": callback, "from": person(user, "Boss"), "chat_instance": "ci",
        "data": data, "message": {"message_id": message_id, "date": 1_790_000_000,
        "chat": chat(user), "from": {"id": fakes::telegram::BOT_ID, "is_bot": true,
        "first_name": "jobq"}, "text": "menu"}}})
}

/// The newest message to `chat` containing `needle` (waits for it).
async fn reply_to(fake: &FakeTelegram, chat: i64, needle: &str, bot: &Process) -> (i64, String) {
    reply_within(fake, chat, needle, bot, Duration::from_secs(20)).await
}

/// As [`reply_to`], waiting up to `within`.
async fn reply_within(
    fake: &FakeTelegram,
    chat: i64,
    needle: &str,
    bot: &Process,
    within: Duration,
) -> (i64, String) {
    eventually_showing(
        within,
        &format!("a message to {chat} containing {needle:?}"),
        || format!("sent: {:#?}\nlog:\n{}", fake.sent_to(chat), bot.shown_log()),
        || async {
            let sent = fake.sent_to(chat);
            let found = sent.into_iter().rev().find(|m| m.text.contains(needle));
            found.map(|m| (m.message_id, m.text))
        },
    )
    .await
}

/// The text of the callback answer for `callback` (waits for it).
async fn answer_of(fake: &FakeTelegram, callback: &str, bot: &Process) -> String {
    eventually_showing(
        secs(20),
        &format!("an answer to {callback}"),
        || format!("log:\n{}", bot.shown_log()),
        || async {
            let answers = fake.calls_of("answerCallbackQuery");
            let call = answers
                .into_iter()
                .find(|c| c.params["callback_query_id"] == callback)?;
            Some(call.params["text"].as_str().unwrap_or("").to_string())
        },
    )
    .await
}

/// The inline buttons' callback data of the newest `sendMessage`/`editMessageText` to `chat`
/// whose text contains `needle`.
fn buttons(fake: &FakeTelegram, chat: i64, needle: &str) -> Vec<String> {
    let calls = fake.calls();
    let call = calls
        .iter()
        .rev()
        .filter(|c| c.method == "sendMessage" || c.method == "editMessageText")
        .find(|c| {
            c.params["chat_id"].as_i64() == Some(chat)
                && c.params["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(needle))
        })
        .unwrap_or_else(|| panic!("no message to {chat} with {needle:?}"));
    call.params["reply_markup"]["inline_keyboard"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["callback_data"].as_str().map(str::to_owned))
        .collect()
}

async fn jobs_in(db: &TestDb) -> Vec<JobRecord> {
    all_jobs(&db.queue().await).await
}

fn assert_no_token(bot: &Process) {
    let log = bot.log_text();
    assert!(
        !log.contains(SECRET_PART),
        "the token in the bot log:\n{log}"
    );
}

async fn customer_commands_answer_and_bad_input_is_explained(backend: Backend) {
    let s = setup(backend).await;
    let bot = start_bot(&s).await;
    let fake = &s.telegram;

    fake.push_update(message(CUSTOMER, 1, "/start"));
    let (_, start) = reply_to(fake, CUSTOMER, "Welcome", &bot).await;
    assert!(
        start.contains("/buy") && start.contains("/status"),
        "{start}"
    );
    assert!(
        !start.contains("/provision"),
        "customers see no admin commands: {start}"
    );

    fake.push_update(message(CUSTOMER, 2, "/plans"));
    let (_, plans) = reply_to(fake, CUSTOMER, "Plans:", &bot).await;
    assert!(plans.contains("basic: 10 GB, 30 days"), "{plans}");
    assert!(plans.contains("pro: 100 GB, 90 days"), "{plans}");

    fake.push_update(message(CUSTOMER, 3, "/status"));
    reply_to(fake, CUSTOMER, "You have no subscriptions yet", &bot).await;

    fake.push_update(message(CUSTOMER, 4, "/link"));
    reply_to(fake, CUSTOMER, "no active subscription with a link", &bot).await;

    fake.push_update(message(CUSTOMER, 5, "/frobnicate"));
    reply_to(fake, CUSTOMER, "I don't know /frobnicate", &bot).await;

    fake.push_update(message(CUSTOMER, 6, "hello"));
    reply_to(fake, CUSTOMER, "Send /start", &bot).await;

    // An admin's bad input: what is wrong and how to write it, nothing enqueued.
    fake.push_update(message(ADMIN, 7, "/provision abc basic"));
    let (_, bad_id) = reply_to(fake, ADMIN, "is not a user id", &bot).await;
    assert!(
        bad_id.contains("Usage: /provision USER_ID PLAN"),
        "{bad_id}"
    );
    fake.push_update(message(ADMIN, 8, "/provision 5"));
    reply_to(fake, ADMIN, "/provision needs a user id and a plan", &bot).await;
    fake.push_update(message(ADMIN, 9, "/provision 5 gold"));
    let (_, unknown) = reply_to(fake, ADMIN, "Unknown plan “gold”", &bot).await;
    assert!(unknown.contains("basic, pro"), "{unknown}");
    fake.push_update(message(ADMIN, 10, "/renew 5 0"));
    reply_to(fake, ADMIN, "0 days is not a term", &bot).await;
    fake.push_update(message(ADMIN, 11, "/start"));
    let (_, admin_start) = reply_to(fake, ADMIN, "Welcome", &bot).await;
    assert!(
        admin_start.contains("/provision USER_ID PLAN"),
        "{admin_start}"
    );
    assert!(
        jobs_in(&s.db).await.is_empty(),
        "bad input enqueued something"
    );
    assert_no_token(&bot);
}

async fn buy_confirm_receipt_and_approve_survive_a_restart_and_enqueue_once(backend: Backend) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let mut bot = start_bot(&s).await;

    fake.push_update(message(CUSTOMER, 20, "/buy"));
    let (menu, _) = reply_to(fake, CUSTOMER, "Choose a plan", &bot).await;
    assert_eq!(
        buttons(fake, CUSTOMER, "Choose a plan"),
        ["b:20:0", "b:20:1"]
    );
    fake.push_update(press(CUSTOMER, "cb-plan", menu, "b:20:1"));
    answer_of(fake, "cb-plan", &bot).await;
    reply_to(fake, CUSTOMER, "You chose pro", &bot).await;
    assert_eq!(
        buttons(fake, CUSTOMER, "You chose pro"),
        ["b:20:y", "b:20:n"]
    );

    // A restart in the middle: the dialogue is in the database.
    bot.kill_hard();
    let bot = start_bot(&s).await;
    fake.push_update(press(CUSTOMER, "cb-confirm", menu, "b:20:y"));
    assert_eq!(answer_of(fake, "cb-confirm", &bot).await, "Order #1 placed");
    reply_to(fake, CUSTOMER, "Order #1 placed: pro", &bot).await;
    let (admin_note, note) = reply_to(fake, ADMIN, "New order #1: pro (new)", &bot).await;
    assert!(note.contains(&format!("(id {CUSTOMER})")), "{note}");
    assert_eq!(buttons(fake, ADMIN, "New order #1"), ["o:1:a", "o:1:r"]);

    // Confirm pressed again: the same order, admins not told twice.
    fake.push_update(press(CUSTOMER, "cb-confirm-2", menu, "b:20:y"));
    let again = answer_of(fake, "cb-confirm-2", &bot).await;
    assert!(again.contains("Order #1 is already placed"), "{again}");

    // The receipt photo goes to the admins with the order.
    fake.push_update(photo(CUSTOMER, 21));
    reply_to(fake, CUSTOMER, "Receipt received for order #1", &bot).await;
    reply_to(fake, ADMIN, "Receipt for order #1", &bot).await;
    let forwards = fake.calls_of("forwardMessage");
    assert_eq!(forwards.len(), 1, "{forwards:?}");
    assert_eq!(forwards[0].params["chat_id"], ADMIN);
    assert_eq!(forwards[0].params["from_chat_id"], CUSTOMER);
    assert_eq!(forwards[0].params["message_id"], 21);

    // A customer cannot approve.
    fake.push_update(press(CUSTOMER, "cb-self", admin_note, "o:1:a"));
    assert!(
        answer_of(fake, "cb-self", &bot)
            .await
            .contains("Only admins")
    );
    assert!(jobs_in(&s.db).await.is_empty());

    // Approve: provision_client keyed by the order, and the customer's DM committed with it.
    fake.push_update(press(ADMIN, "cb-approve", admin_note, "o:1:a"));
    assert_eq!(
        answer_of(fake, "cb-approve", &bot).await,
        "Order #1 approved"
    );
    let mut jobs = jobs_in(&s.db).await;
    jobs.sort_by_key(|j| j.id);
    assert_eq!(jobs.len(), 2, "{jobs:#?}");
    assert_eq!(jobs[0].kind, "provision_client");
    assert_eq!(jobs[0].key.as_deref(), Some("order:1"));
    assert_eq!(
        jobs[0].payload,
        json!({"panel": "main", "plan": "pro", "user": {"platform": "telegram", "id": CUSTOMER}})
    );
    assert_eq!(jobs[1].kind, "send_dm");
    assert_eq!(jobs[1].key.as_deref(), Some("order_decision:1"));
    assert_eq!(jobs[1].payload["user"]["id"], CUSTOMER);
    let told = jobs[1].payload["text"].as_str().unwrap_or_default();
    assert!(told.starts_with("Your order #1 is approved"), "{told}");

    // Approve again, and Reject after: answered with the decision, nothing new.
    fake.push_update(press(ADMIN, "cb-approve-2", admin_note, "o:1:a"));
    let twice = answer_of(fake, "cb-approve-2", &bot).await;
    assert!(twice.contains("already decided by admin 9001"), "{twice}");
    fake.push_update(press(ADMIN, "cb-reject", admin_note, "o:1:r"));
    assert!(
        answer_of(fake, "cb-reject", &bot)
            .await
            .contains("already decided")
    );
    assert_eq!(jobs_in(&s.db).await.len(), 2);

    // The customer's /status shows the order being set up.
    fake.push_update(message(CUSTOMER, 22, "/status"));
    reply_to(fake, CUSTOMER, "Order #1 (pro): being set up", &bot).await;

    // The audit log has the approval, from Telegram.
    let audit =
        s.db.queue()
            .await
            .driver()
            .audit_log(10)
            .await
            .expect("audit");
    assert!(
        audit.iter().any(|a| a.surface == "telegram"
            && a.action == "approve_order"
            && a.actor.contains("telegram 9001")),
        "{audit:#?}"
    );
    assert_no_token(&bot);
}

async fn admin_commands_enqueue_keyed_audited_jobs_and_a_redelivered_update_adds_nothing(
    backend: Backend,
) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let mut bot = start_bot(&s).await;

    let provision =
        json!({"update_id": 500, "message": message(ADMIN, 30, "/provision 777 basic")["message"]});
    fake.push_update(provision.clone());
    reply_to(fake, ADMIN, "Provisioning basic for user 777", &bot).await;
    let jobs = jobs_in(&s.db).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].kind, "provision_client");
    assert_eq!(
        jobs[0].key.as_deref(),
        Some(format!("telegram:provision:{ADMIN}:30").as_str())
    );
    assert_eq!(
        jobs[0].payload,
        json!({"panel": "main", "plan": "basic", "user": {"platform": "telegram", "id": 777}})
    );

    // The same update again, to a restarted bot (it never saw it): nothing new.
    bot.kill_hard();
    let bot = start_bot(&s).await;
    fake.push_update(provision);
    reply_to(fake, ADMIN, "Already done: job #", &bot).await;
    assert_eq!(jobs_in(&s.db).await.len(), 1);

    // /renew and /expire need a subscription: said so, nothing enqueued.
    fake.push_update(message(ADMIN, 31, "/renew 777 30"));
    reply_to(fake, ADMIN, "User 777 has no subscription to renew", &bot).await;
    fake.push_update(message(ADMIN, 32, "/expire 777"));
    reply_to(fake, ADMIN, "User 777 has no active subscription", &bot).await;
    assert_eq!(jobs_in(&s.db).await.len(), 1);

    // The shared admin commands.
    fake.push_update(message(ADMIN, 33, "/failed"));
    reply_to(fake, ADMIN, "No failed jobs", &bot).await;
    fake.push_update(message(ADMIN, 34, "/stats"));
    reply_to(fake, ADMIN, "Queues", &bot).await;
    fake.push_update(message(ADMIN, 35, "/discard 1"));
    reply_to(fake, ADMIN, "is now discarded", &bot).await;
    fake.push_update(message(ADMIN, 36, "/retry x"));
    reply_to(fake, ADMIN, "is not a job id", &bot).await;

    // Admins kept in the database: an owner adds one, who may then use admin commands.
    fake.push_update(message(ADMIN, 37, "/admins add 4242"));
    reply_to(fake, ADMIN, "4242 is now an admin", &bot).await;
    fake.push_update(message(4242, 1, "/admins list"));
    reply_to(fake, 4242, "Added admins: 4242", &bot).await;
    fake.push_update(message(4242, 2, "/admins add 5"));
    reply_to(fake, 4242, "Only the owners", &bot).await;

    let audit =
        s.db.queue()
            .await
            .driver()
            .audit_log(20)
            .await
            .expect("audit");
    let actions: Vec<&str> = audit
        .iter()
        .filter(|a| a.surface == "telegram")
        .map(|a| a.action.as_str())
        .collect();
    for action in ["provision", "discard", "add_admin"] {
        assert!(
            actions.contains(&action),
            "{action} not audited: {audit:#?}"
        );
    }
    assert_eq!(actions.iter().filter(|a| **a == "provision").count(), 1);
    assert_no_token(&bot);
}

async fn non_admins_are_refused_and_nothing_is_enqueued(backend: Backend) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let bot = start_bot(&s).await;
    for (i, text) in [
        "/provision 1 basic",
        "/expire 1",
        "/failed",
        "/retry 1",
        "/admins add 5",
    ]
    .iter()
    .enumerate()
    {
        let before = fake.sent_to(CUSTOMER).len();
        fake.push_update(message(CUSTOMER, 40 + i as i64, text));
        until(secs(20), &format!("a reply to {text}"), &bot, || {
            fake.sent_to(CUSTOMER).len() != before
        })
        .await;
        let reply = fake.sent_to(CUSTOMER).last().map(|m| m.text.clone());
        assert_eq!(
            reply.as_deref(),
            Some("That command is for admins only."),
            "{text}"
        );
    }
    assert!(jobs_in(&s.db).await.is_empty());
    let log = bot.log_text();
    assert!(
        log.contains("INFO") && log.contains("not an admin") && log.contains(&CUSTOMER.to_string()),
        "the refusal is logged at INFO with who tried:\n{log}"
    );
}

/// A worker of the panel and message queues, with the panel's and the bot's tokens.
fn spawn_worker(db: &TestDb) -> Process {
    panel::panel_worker(db, "panel,messages")
        .env("JOBQ_TELEGRAM_TOKEN", TOKEN)
        .start()
}

async fn provision_on_telegram_reaches_the_panel_and_dms_the_link(backend: Backend) {
    let telegram = FakeTelegram::start(TOKEN).await.expect("fake telegram");
    let sui = panel::fake().await;
    let extra = format!(
        "\n[telegram]\napi_url = \"{}\"\nadmins = [{ADMIN}]\n",
        telegram.url()
    );
    let db = panel::db_with_panel(backend, &sui, &extra).await;
    let bot = jobq_telegram(&db).start();
    polling(&telegram, 0, &bot).await;
    let worker = spawn_worker(&db);

    telegram.push_update(message(ADMIN, 50, &format!("/provision {CUSTOMER} basic")));
    reply_to(&telegram, ADMIN, "Provisioning basic", &bot).await;
    let queue = db.queue().await;
    let job = jobs_of(&queue, "provision_client").await;
    assert_eq!(job.len(), 1);
    panel::wait_state(&db, &queue, job[0].id, JobState::Completed, &worker).await;
    let subscriptions = panel::subscriptions(&queue).await;
    assert_eq!(subscriptions.len(), 1);
    let name = subscriptions[0].client_name.expose().to_string();
    assert!(
        sui.clients().iter().any(|c| c.name == name),
        "no client {name} on the panel"
    );
    let (_, dm) = reply_to(
        &telegram,
        CUSTOMER,
        "Your subscription (basic) is ready",
        &worker,
    )
    .await;
    assert!(dm.contains(&name), "the DM carries the link: {dm}");

    // /link now resends it as a DM job keyed by the message.
    telegram.push_update(message(CUSTOMER, 51, "/link"));
    reply_to(&telegram, CUSTOMER, "sending your link", &bot).await;
    let link = jobs_of(&queue, "send_dm").await;
    assert!(
        link.iter()
            .any(|j| j.key.as_deref() == Some(&format!("telegram:link:{CUSTOMER}:51"))),
        "{link:#?}"
    );
    assert_no_token(&bot);
}

async fn a_missing_or_malformed_token_stops_the_bot_before_it_connects(backend: Backend) {
    let s = setup(backend).await;
    let missing = s.db.jobq(&["telegram"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("JOBQ_TELEGRAM_TOKEN is not set"),
        "{}",
        stderr(&missing)
    );
    let malformed =
        s.db.command(&["telegram"])
            .env("JOBQ_TELEGRAM_TOKEN", "not-a-token-SECRETVALUE")
            .output()
            .expect("run jobq telegram");
    assert!(!malformed.status.success());
    let error = stderr(&malformed);
    assert!(
        error.contains("JOBQ_TELEGRAM_TOKEN is malformed"),
        "{error}"
    );
    assert!(!error.contains("SECRETVALUE"), "{error}");
    // Nothing reached the Bot API.
    assert!(s.telegram.calls().is_empty(), "{:?}", s.telegram.calls());
}

/// How many messages that reached `chat` contain `needle`.
fn count_to(fake: &FakeTelegram, chat: i64, needle: &str) -> usize {
    fake.sent_to(chat)
        .iter()
        .filter(|m| m.method == "sendMessage" && m.text.contains(needle))
        .count()
}

/// How many `sendMessage` calls to `chat` with `needle` the bot made (delivered or not).
fn attempts_to(fake: &FakeTelegram, chat: i64, needle: &str) -> usize {
    fake.calls_of("sendMessage")
        .iter()
        .filter(|c| {
            c.params["chat_id"].as_i64() == Some(chat)
                && c.params["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(needle))
        })
        .count()
}

fn forwards_to(fake: &FakeTelegram, chat: i64) -> usize {
    fake.calls_of("forwardMessage")
        .iter()
        .filter(|c| c.params["chat_id"].as_i64() == Some(chat))
        .count()
}

/// Waits until `check` holds, for up to `within`; a timeout shows the bot's log.
async fn until(within: Duration, what: &str, bot: &Process, check: impl Fn() -> bool) {
    eventually_showing(
        within,
        what,
        || format!("log:\n{}", bot.shown_log()),
        || std::future::ready(check().then_some(())),
    )
    .await;
}

/// `update` with a fixed `update_id` (to deliver it again).
fn numbered(mut update: Value, id: i64) -> Value {
    update["update_id"] = json!(id);
    update
}

/// `/buy` (message `nonce`) → plan number `plan` → Confirm by the customer; returns the
/// Confirm update (numbered `nonce * 100`, to deliver it again) once the order is placed.
async fn place_order(s: &Setup, bot: &Process, nonce: i64, plan: usize) -> Value {
    let fake = &s.telegram;
    fake.push_update(message(CUSTOMER, nonce, "/buy"));
    let (menu, _) = reply_to(fake, CUSTOMER, "Choose a plan", bot).await;
    let choose = format!("cb-plan-{nonce}");
    fake.push_update(press(CUSTOMER, &choose, menu, &format!("b:{nonce}:{plan}")));
    answer_of(fake, &choose, bot).await;
    let confirm_id = format!("cb-confirm-{nonce}");
    let confirm = numbered(
        press(CUSTOMER, &confirm_id, menu, &format!("b:{nonce}:y")),
        nonce * 100,
    );
    fake.push_update(confirm.clone());
    let answer = answer_of(fake, &confirm_id, bot).await;
    assert!(answer.ends_with("placed"), "{answer}");
    confirm
}

/// Replies that arrive: of two admin commands in a row, the first reply meets Telegram's
/// per-chat limit (429, retry after 1 s) and is sent after it, so both arrive; a 429 longer
/// than the bot waits hands the reply to a `send_dm` job keyed by the update; a reply quoting
/// a 4,080-character argument is cut to Telegram's 4,096 UTF-16 units (the fake refuses more).
async fn replies_arrive_through_a_429_and_fit_telegrams_limit(backend: Backend) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let bot = start_bot(&s).await;
    fake.inject(
        FaultRule::new(Fault::RetryAfter(1))
            .method("sendMessage")
            .chat(ADMIN),
    );
    fake.push_update(message(ADMIN, 70, "/admins add one"));
    fake.push_update(message(ADMIN, 71, "/admins add two"));
    reply_to(fake, ADMIN, "“one” is not a user id", &bot).await;
    reply_to(fake, ADMIN, "“two” is not a user id", &bot).await;

    fake.inject(
        FaultRule::new(Fault::RetryAfter(60))
            .method("sendMessage")
            .chat(ADMIN),
    );
    fake.push_update(message(ADMIN, 72, "/admins add three"));
    let handed = eventually(secs(20), "the reply handed to a DM job", || async {
        let jobs = jobs_in(&s.db).await;
        jobs.into_iter().find(|j| {
            j.kind == "send_dm"
                && j.key
                    .as_deref()
                    .is_some_and(|k| k.starts_with("telegram:reply:"))
        })
    })
    .await;
    assert_eq!(handed.payload["user"]["id"], ADMIN);
    assert!(
        handed.payload["text"]
            .as_str()
            .is_some_and(|t| t.contains("“three” is not a user id")),
        "{handed:#?}"
    );
    fake.clear_faults();

    let long = "x".repeat(4080);
    fake.push_update(message(ADMIN, 73, &format!("/admins add {long}")));
    let (_, text) = reply_to(fake, ADMIN, "“xxxxxxxx", &bot).await;
    assert!(
        text.encode_utf16().count() <= 4096,
        "{} units",
        text.encode_utf16().count()
    );
    assert!(text.ends_with('…'), "cut where it was too long");
}

async fn admin_notices_survive_failed_sends_and_a_restart_and_arrive_once(backend: Backend) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let mut bot = start_bot(&s).await;
    fake.push_update(message(ADMIN, 60, &format!("/admins add {OTHER_ADMIN}")));
    reply_to(fake, ADMIN, "is now an admin", &bot).await;

    // The first admin's notice meets a 502, the other's a 429: both are sent again.
    fake.inject(
        FaultRule::new(Fault::Status(502))
            .method("sendMessage")
            .chat(ADMIN),
    );
    fake.inject(
        FaultRule::new(Fault::RetryAfter(1))
            .method("sendMessage")
            .chat(OTHER_ADMIN),
    );
    let confirm = place_order(&s, &bot, 61, 0).await;
    for admin in [ADMIN, OTHER_ADMIN] {
        reply_to(fake, admin, "New order #1: basic (new)", &bot).await;
        assert_eq!(
            attempts_to(fake, admin, "New order #1"),
            2,
            "one failed send, one delivered"
        );
        assert_eq!(buttons(fake, admin, "New order #1"), ["o:1:a", "o:1:r"]);
    }

    // The receipt: every message to the first admin fails until the bot is restarted.
    fake.inject(
        FaultRule::new(Fault::Status(500))
            .method("sendMessage")
            .chat(ADMIN)
            .times(100_000),
    );
    let receipt = numbered(photo(CUSTOMER, 62), 6200);
    fake.push_update(receipt.clone());
    reply_to(fake, CUSTOMER, "Receipt received for order #1", &bot).await;
    reply_to(fake, OTHER_ADMIN, "Receipt for order #1", &bot).await;
    until(
        Duration::from_secs(20),
        "a failed receipt notice",
        &bot,
        || attempts_to(fake, ADMIN, "Receipt for order #1") >= 1,
    )
    .await;
    assert_eq!(count_to(fake, ADMIN, "Receipt for order #1"), 0);
    bot.kill_hard();
    fake.clear_faults();
    let bot = start_bot(&s).await;
    // Its retry is seconds away (a send the kill cut short would wait for its lease).
    reply_within(
        fake,
        ADMIN,
        "Receipt for order #1",
        &bot,
        Duration::from_secs(90),
    )
    .await;

    // The Confirm and the photo delivered again (as to a bot that crashed before confirming
    // its offset): answered again, nothing new for the admins.
    fake.push_update(confirm);
    fake.push_update(receipt);
    until(
        Duration::from_secs(20),
        "the redelivered Confirm's answer",
        &bot,
        || {
            fake.calls_of("answerCallbackQuery")
                .iter()
                .filter(|c| c.params["callback_query_id"] == "cb-confirm-61")
                .count()
                == 2
        },
    )
    .await;
    until(
        Duration::from_secs(20),
        "the redelivered receipt's answer",
        &bot,
        || count_to(fake, CUSTOMER, "Receipt received for order #1") == 2,
    )
    .await;

    for admin in [ADMIN, OTHER_ADMIN] {
        assert_eq!(count_to(fake, admin, "New order #1"), 1, "admin {admin}");
        assert_eq!(
            count_to(fake, admin, "Receipt for order #1"),
            1,
            "admin {admin}"
        );
        assert_eq!(forwards_to(fake, admin), 1, "admin {admin}");
        assert_eq!(
            buttons(fake, admin, "Receipt for order #1"),
            ["o:1:a", "o:1:r"]
        );
    }
    assert!(jobs_in(&s.db).await.is_empty());
    assert_no_token(&bot);
}

async fn reject_tells_the_customer_by_a_keyed_dm_and_provisions_nothing(backend: Backend) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let bot = start_bot(&s).await;
    place_order(&s, &bot, 80, 0).await;
    let (note, _) = reply_to(fake, ADMIN, "New order #1", &bot).await;

    fake.push_update(press(ADMIN, "cb-reject", note, "o:1:r"));
    assert_eq!(
        answer_of(fake, "cb-reject", &bot).await,
        "Order #1 rejected"
    );
    let jobs = jobs_in(&s.db).await;
    assert_eq!(jobs.len(), 1, "only the customer's DM: {jobs:#?}");
    assert_eq!(jobs[0].kind, "send_dm");
    assert_eq!(jobs[0].key.as_deref(), Some("order_decision:1"));
    assert_eq!(jobs[0].payload["user"]["id"], CUSTOMER);
    let told = jobs[0].payload["text"].as_str().unwrap_or_default();
    assert!(
        told.starts_with("Your order #1 was not approved") && told.contains("contact the shop"),
        "{told}"
    );
    let edits = fake.calls_of("editMessageText");
    assert!(
        edits.iter().any(|e| e.params["chat_id"] == ADMIN
            && e.params["text"]
                .as_str()
                .is_some_and(|t| t.contains("rejected by"))),
        "{edits:#?}"
    );

    // Approve after the rejection: already decided, nothing enqueued.
    fake.push_update(press(ADMIN, "cb-approve", note, "o:1:a"));
    let late = answer_of(fake, "cb-approve", &bot).await;
    assert!(late.contains("already decided"), "{late}");
    assert_eq!(
        jobs_in(&s.db).await.len(),
        1,
        "still only the customer's DM"
    );
    fake.push_update(message(CUSTOMER, 81, "/status"));
    reply_to(fake, CUSTOMER, "Order #1 (basic): rejected", &bot).await;

    let audit =
        s.db.queue()
            .await
            .driver()
            .audit_log(10)
            .await
            .expect("audit");
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.surface == "telegram" && a.action == "reject_order")
            .count(),
        1,
        "{audit:#?}"
    );
    assert!(!audit.iter().any(|a| a.action == "approve_order"));
}

async fn admins_remove_takes_the_rights_away(backend: Backend) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let bot = start_bot(&s).await;
    fake.push_update(message(ADMIN, 90, &format!("/admins add {OTHER_ADMIN}")));
    reply_to(fake, ADMIN, "4242 is now an admin", &bot).await;
    fake.push_update(message(OTHER_ADMIN, 1, "/failed"));
    reply_to(fake, OTHER_ADMIN, "No failed jobs", &bot).await;
    // Only an owner may remove.
    fake.push_update(message(
        OTHER_ADMIN,
        2,
        &format!("/admins remove {OTHER_ADMIN}"),
    ));
    reply_to(fake, OTHER_ADMIN, "Only the owners", &bot).await;

    fake.push_update(message(ADMIN, 91, &format!("/admins remove {OTHER_ADMIN}")));
    reply_to(fake, ADMIN, "4242 is no longer an admin.", &bot).await;
    fake.push_update(message(OTHER_ADMIN, 3, "/failed"));
    reply_to(fake, OTHER_ADMIN, "That command is for admins only.", &bot).await;
    fake.push_update(message(ADMIN, 92, &format!("/admins remove {OTHER_ADMIN}")));
    reply_to(fake, ADMIN, "4242 was not an admin.", &bot).await;
    fake.push_update(message(ADMIN, 93, "/admins list"));
    let (_, list) = reply_to(fake, ADMIN, "Owners", &bot).await;
    assert!(!list.contains("4242"), "{list}");

    let audit =
        s.db.queue()
            .await
            .driver()
            .audit_log(20)
            .await
            .expect("audit");
    let removals: Vec<_> = audit
        .iter()
        .filter(|a| a.surface == "telegram" && a.action == "remove_admin")
        .collect();
    assert_eq!(removals.len(), 2, "{audit:#?}");
    assert!(removals.iter().all(|a| a.actor.contains("telegram 9001")));
    assert_eq!(
        removals.iter().map(|a| a.count).sum::<i64>(),
        1,
        "one removed"
    );
}

async fn a_flood_of_commands_is_slowed_and_enqueues_nothing_extra(backend: Backend) {
    let s = setup_with(backend, 1, 3).await;
    let fake = &s.telegram;
    let queue = s.db.queue().await;
    // The customer has an active subscription, so each allowed /link enqueues a DM.
    let new = panel::new_subscription(CUSTOMER, 0, None);
    let expiry = chrono::Utc::now() + chrono::Duration::days(30);
    let link = "https://sub.example.com/sub/jqflood";
    panel::active_subscription(&queue, &new, link, expiry).await;
    let bot = start_bot(&s).await;

    for id in 100..108 {
        fake.push_update(message(CUSTOMER, id, "/link"));
    }
    until(Duration::from_secs(20), "eight answers", &bot, || {
        fake.sent_to(CUSTOMER).len() == 8
    })
    .await;
    assert_eq!(
        count_to(fake, CUSTOMER, "sending your link"),
        3,
        "the burst"
    );
    assert_eq!(count_to(fake, CUSTOMER, "too fast. Try again in"), 5);
    let mut keys: Vec<String> = jobs_in(&s.db)
        .await
        .into_iter()
        .filter(|j| j.kind == "send_dm")
        .filter_map(|j| j.key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        (100..103)
            .map(|id| format!("telegram:link:{CUSTOMER}:{id}"))
            .collect::<Vec<_>>(),
        "only the allowed commands enqueued"
    );

    // Admins go past the limit, logged at INFO.
    for id in 110..116 {
        fake.push_update(message(ADMIN, id, "/stats"));
    }
    until(Duration::from_secs(20), "six admin answers", &bot, || {
        count_to(fake, ADMIN, "Queues") == 6
    })
    .await;
    assert_eq!(count_to(fake, ADMIN, "too fast"), 0);
    let log = bot.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("INFO") && l.contains("bypassed the command rate limit")),
        "{log}"
    );
}

async fn webhook_updates_are_handled_before_they_are_answered(backend: Backend) {
    let s = setup(backend).await;
    let fake = &s.telegram;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/telegram/webhook");
    let bind = format!("127.0.0.1:{port}");
    let bot = jobq_telegram(&s.db)
        .args(&["--webhook", &url, "--webhook-bind", &bind])
        .start();
    // The bot listens before it registers the webhook, with the secret Telegram will echo.
    until(Duration::from_secs(30), "setWebhook", &bot, || {
        !fake.calls_of("setWebhook").is_empty()
    })
    .await;
    let registered = fake.calls_of("setWebhook").remove(0);
    assert_eq!(
        registered.params["url"],
        format!("http://127.0.0.1:{port}/telegram/webhook")
    );
    let secret = registered.params["secret_token"]
        .as_str()
        .expect("a secret token")
        .to_string();
    assert!(
        !bot.log_text().contains(&secret),
        "the secret is not logged"
    );
    let endpoint = format!("http://127.0.0.1:{port}/telegram/webhook");
    let client = reqwest::Client::new();
    let post = |update: Value, secret: &str| {
        client
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("x-telegram-bot-api-secret-token", secret)
            .body(update.to_string())
            .send()
    };

    // Without the secret: refused, nothing handled.
    let refused = post(
        numbered(message(ADMIN, 1, "/provision 777 basic"), 1),
        "wrong",
    )
    .await
    .expect("post");
    assert_eq!(refused.status(), 401);

    // Answered 200 only once handled: the reply was sent and the job enqueued by then.
    let update = numbered(message(ADMIN, 2, "/provision 777 basic"), 2);
    let answer = post(update.clone(), &secret).await.expect("post");
    assert_eq!(answer.status(), 200);
    assert_eq!(count_to(fake, ADMIN, "Provisioning basic for user 777"), 1);
    let jobs = jobs_in(&s.db).await;
    assert_eq!(jobs.len(), 1, "{jobs:#?}");
    assert_eq!(jobs[0].kind, "provision_client");
    assert_eq!(
        jobs[0].key.as_deref(),
        Some(format!("telegram:provision:{ADMIN}:2").as_str())
    );

    // Telegram delivering it again (say the 200 was lost): nothing new.
    let again = post(update, &secret).await.expect("post");
    assert_eq!(again.status(), 200);
    assert_eq!(count_to(fake, ADMIN, "Already done: job #"), 1);
    assert_eq!(jobs_in(&s.db).await.len(), 1);

    // Two updates of one chat posted at once (two connections): each is answered once
    // handled, in the chat's turn (the order between them is the order they arrive).
    let buy = numbered(message(CUSTOMER, 3, "/buy"), 3);
    let status = numbered(message(CUSTOMER, 4, "/status"), 4);
    let (first, second) = tokio::join!(post(buy, &secret), post(status, &secret));
    assert_eq!(first.expect("post").status(), 200);
    assert_eq!(second.expect("post").status(), 200);
    assert_eq!(
        fake.sent_to(CUSTOMER).len(),
        2,
        "both replies sent before the answers"
    );
    reply_to(fake, CUSTOMER, "Choose a plan", &bot).await;
    reply_to(fake, CUSTOMER, "You have no subscriptions yet", &bot).await;
    assert!(
        fake.calls_of("getUpdates").is_empty(),
        "webhook mode never polls"
    );
    assert_no_token(&bot);
}

/// A faulty API's update id, beyond the 32 bits teloxide types hold: one such id used to fail
/// every `getUpdates` answer. It is said once (without the token), its update read and
/// confirmed, and the updates after it (numbered on from it) are answered.
async fn an_update_id_beyond_32_bits_is_said_once_and_the_bot_goes_on(backend: Backend) {
    let s = setup(backend).await;
    let bot = start_bot(&s).await;
    let fake = &s.telegram;
    let mut hostile = message(CUSTOMER, 1, "/start");
    hostile["update_id"] = json!((1_i64 << 32) + 5);
    fake.push_update(hostile);
    reply_to(fake, CUSTOMER, "Welcome", &bot).await;
    let next = fake.push_update(message(CUSTOMER, 2, "/plans"));
    assert_eq!(next, (1_i64 << 32) + 6);
    reply_to(fake, CUSTOMER, "Plans:", &bot).await;
    until(secs(20), "both updates confirmed", &bot, || {
        fake.pending_updates() == 0
    })
    .await;
    let offsets: Vec<Value> = fake
        .calls_of("getUpdates")
        .iter()
        .map(|call| call.params["offset"].clone())
        .collect();
    assert!(
        offsets.contains(&json!(next + 1)),
        "confirmed by offset: {offsets:?}"
    );
    let log = bot.log_text();
    for id in [next - 1, next] {
        let said = log
            .lines()
            .filter(|l| {
                l.contains("outside the range Telegram uses") && l.contains(&id.to_string())
            })
            .count();
        assert_eq!(said, 1, "update {id} said once:\n{log}");
    }
    assert_no_token(&bot);
}
