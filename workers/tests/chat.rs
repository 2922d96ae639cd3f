//! The chat clients against the fake Telegram and Discord servers over real HTTP, their error
//! classification, and the fakes' faithfulness where jobq relies on it.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use fakes::discord::{FakeDiscord, SeedAuthor, SeedMessage};
use fakes::discord::{Fault as DiscordFault, FaultRule as DiscordRule, Route};
use fakes::telegram::{ChatState, FakeTelegram, Fault as TelegramFault, FaultRule as TelegramRule};
use jobs::kinds::UserId;
use secrecy::SecretString;
use serenity::http::{Http, HttpBuilder, MessagePagination};
use serenity::model::id::ChannelId;
use workers::chat::{ChatErrorKind, DiscordClient, Messenger, TelegramClient};

const DISCORD_TOKEN: &str = "discord-test-token.XYZ";

fn serenity_http(fake: &FakeDiscord, token: &str) -> Http {
    HttpBuilder::new(token)
        .proxy(fake.url())
        .ratelimiter_disabled(true)
        .build()
}

#[tokio::test]
async fn discord_history_is_served_newest_first_in_pages_serenity_can_read() {
    let fake = FakeDiscord::start(DISCORD_TOKEN)
        .await
        .expect("fake starts");
    let alice = SeedAuthor::new(11, "alice");
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 1, 12, 0, 0)
        .single()
        .expect("time");
    let ids = fake.seed_history(
        7,
        (0..150).map(|i| {
            let m = SeedMessage::new(
                alice.clone(),
                &format!("m{i}"),
                t0 + chrono::Duration::seconds(i),
            );
            if i == 3 {
                m.attachment(99, "log.txt", "https://cdn.example/log.txt", 1234)
            } else {
                m
            }
        }),
    );
    let http = serenity_http(&fake, DISCORD_TOKEN);
    let channel = ChannelId::new(7);

    let newest = http
        .get_messages(channel, None, Some(100))
        .await
        .expect("page 1");
    assert_eq!(newest.len(), 100);
    assert_eq!(newest[0].content, "m149", "newest first");
    assert_eq!(newest[99].content, "m50");
    let oldest_seen = newest[99].id;
    let rest = http
        .get_messages(
            channel,
            Some(MessagePagination::Before(oldest_seen)),
            Some(100),
        )
        .await
        .expect("page 2");
    assert_eq!(rest.len(), 50);
    assert_eq!(rest[0].content, "m49");
    let with_file = rest.iter().find(|m| m.content == "m3").expect("m3");
    assert_eq!(with_file.attachments[0].filename, "log.txt");
    assert_eq!(with_file.attachments[0].size, 1234);
    assert_eq!(with_file.author.name, "alice");
    assert_eq!(
        with_file.timestamp.unix_timestamp(),
        (t0 + chrono::Duration::seconds(3)).timestamp()
    );

    let after = http
        .get_messages(
            channel,
            Some(MessagePagination::After(ids[9].into())),
            Some(5),
        )
        .await
        .expect("after");
    let contents: Vec<&str> = after.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["m14", "m13", "m12", "m11", "m10"]);
}

#[tokio::test]
async fn discord_fake_refuses_a_wrong_token_and_a_limit_over_100() {
    let fake = FakeDiscord::start(DISCORD_TOKEN)
        .await
        .expect("fake starts");
    fake.seed_many(7, 3, &[]);
    let wrong = serenity_http(&fake, "not-the-token");
    let err = wrong
        .get_messages(ChannelId::new(7), None, None)
        .await
        .expect_err("401");
    assert!(err.to_string().contains("401"), "{err}");

    let client = reqwest::Client::new();
    let status = client
        .get(format!(
            "{}/api/v10/channels/7/messages?limit=101",
            fake.url()
        ))
        .header("Authorization", format!("Bot {DISCORD_TOKEN}"))
        .send()
        .await
        .expect("answer")
        .status();
    assert_eq!(status.as_u16(), 400);
}

// ---------------------------------------------------------------------------------------------
// The clients and their error classification

const TELEGRAM_TOKEN: &str = "4242:TGchatTESTsecretNEVERshown_0123";
const TELEGRAM_SECRET: &str = "TGchatTESTsecretNEVERshown_0123";
const DISCORD_CLIENT_TOKEN: &str = "MTIz.DCchatTESTsecret.abc_0123";

fn user(id: i64) -> UserId {
    UserId::parse(id).expect("a user id")
}

fn telegram(fake: &FakeTelegram, token: &str) -> TelegramClient {
    let url = url::Url::parse(&fake.url()).expect("url");
    TelegramClient::new(SecretString::from(token.to_owned()), &url).expect("client")
}

async fn discord(token: &str) -> (FakeDiscord, DiscordClient) {
    let fake = FakeDiscord::start(DISCORD_CLIENT_TOKEN)
        .await
        .expect("fake");
    let url = url::Url::parse(&fake.url()).expect("url");
    let client = DiscordClient::new(SecretString::from(token.to_owned()), &url).expect("client");
    (fake, client)
}

#[tokio::test]
async fn telegram_sends_and_classifies_refusals_429s_and_broken_connections() {
    let fake = FakeTelegram::start(TELEGRAM_TOKEN).await.expect("fake");
    let client = telegram(&fake, TELEGRAM_TOKEN);
    let sent = client.send_dm(user(10), "hello").await.expect("sent");
    assert_eq!(sent.message_id, "1");
    assert_eq!(fake.sent_to(10)[0].text, "hello");
    assert_eq!(
        fake.calls()[0].method,
        "sendMessage",
        "teloxide's SendMessage matched"
    );

    for (chat, state, text) in [
        (11, ChatState::Blocked, "blocked by the user"),
        (12, ChatState::Deactivated, "user is deactivated"),
        (13, ChatState::NotFound, "chat not found"),
        (14, ChatState::CantInitiate, "can't initiate conversation"),
    ] {
        fake.set_chat(chat, state);
        let err = client.send_dm(user(chat), "hi").await.expect_err("refused");
        assert_eq!(err.kind, ChatErrorKind::Permanent, "{err}");
        assert!(err.to_string().contains(text), "{err}");
    }

    fake.inject(TelegramRule::new(TelegramFault::RetryAfter(9)).chat(15));
    let err = client.send_dm(user(15), "hi").await.expect_err("429");
    assert_eq!(err.kind, ChatErrorKind::RetryAfter(Duration::from_secs(9)));

    fake.inject(TelegramRule::new(TelegramFault::Drop));
    let err = client.send_dm(user(16), "hi").await.expect_err("dropped");
    assert_eq!(err.kind, ChatErrorKind::Retryable, "{err}");
    assert!(!err.to_string().contains(TELEGRAM_SECRET), "{err}");

    // Applied, then the answer lost: retryable (the ledger window), and the fake has it.
    fake.inject(TelegramRule::new(TelegramFault::DropAfterApply));
    let err = client.send_dm(user(17), "hi").await.expect_err("dropped");
    assert_eq!(err.kind, ChatErrorKind::Retryable, "{err}");
    assert_eq!(fake.sent_to(17).len(), 1);
}

#[tokio::test]
async fn telegram_wrong_token_is_permanent_and_never_shown() {
    let fake = FakeTelegram::start(TELEGRAM_TOKEN).await.expect("fake");
    let wrong = "4242:WRONGtokenWRONGtokenWRONG_99";
    let client = telegram(&fake, wrong);
    let err = client.send_dm(user(10), "hi").await.expect_err("401");
    assert_eq!(err.kind, ChatErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("JOBQ_TELEGRAM_TOKEN"), "{err}");
    assert!(!err.to_string().contains("WRONGtoken"), "{err}");
    assert!(!format!("{client:?}").contains("WRONGtoken"));

    // Nothing listening: a network error, retryable, without the token.
    let url = url::Url::parse("http://127.0.0.1:9").expect("url");
    let dead =
        TelegramClient::new(SecretString::from(TELEGRAM_TOKEN.to_owned()), &url).expect("client");
    let err = dead.send_dm(user(10), "hi").await.expect_err("refused");
    assert_eq!(err.kind, ChatErrorKind::Retryable, "{err}");
    assert!(!err.to_string().contains(TELEGRAM_SECRET), "{err}");
}

#[tokio::test]
async fn malformed_tokens_are_refused_naming_the_variable_only() {
    let url = url::Url::parse("http://127.0.0.1:9").expect("url");
    let err = TelegramClient::new(SecretString::from("not a token".to_owned()), &url)
        .expect_err("malformed");
    assert!(err.to_string().contains("JOBQ_TELEGRAM_TOKEN"), "{err}");
    assert!(!err.to_string().contains("not a token"), "{err}");
    let err = DiscordClient::new(SecretString::from("secretvalue".to_owned()), &url)
        .expect_err("malformed");
    assert!(err.to_string().contains("JOBQ_DISCORD_TOKEN"), "{err}");
    assert!(!err.to_string().contains("secretvalue"), "{err}");
}

#[tokio::test]
async fn discord_sends_through_a_dm_channel_and_classifies_errors() {
    let (fake, client) = discord(DISCORD_CLIENT_TOKEN).await;
    let sent = client.send_dm(user(20), "hello").await.expect("sent");
    let recorded = fake.sent_to_user(20);
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (
            recorded[0].content.as_str(),
            recorded[0].message_id.to_string()
        ),
        ("hello", sent.message_id)
    );

    fake.close_dms(21);
    let err = client.send_dm(user(21), "hi").await.expect_err("closed");
    assert_eq!(err.kind, ChatErrorKind::Permanent);
    assert!(err.to_string().contains("50007"), "{err}");

    fake.inject(
        DiscordRule::new(DiscordFault::RateLimited {
            retry_after: 2.25,
            global: false,
        })
        .on(Route::SendMessage),
    );
    let err = client.send_dm(user(22), "hi").await.expect_err("429");
    // Body 2.25 s, header 3 s: the longer.
    assert_eq!(
        err.kind,
        ChatErrorKind::RetryAfter(Duration::from_secs(3)),
        "{err}"
    );

    fake.inject(DiscordRule::new(DiscordFault::Status(502)));
    let err = client.send_dm(user(23), "hi").await.expect_err("502");
    assert_eq!(err.kind, ChatErrorKind::Retryable, "{err}");

    fake.inject(DiscordRule::new(DiscordFault::Drop).on(Route::CreateDm));
    let err = client.send_dm(user(24), "hi").await.expect_err("dropped");
    assert_eq!(err.kind, ChatErrorKind::Retryable, "{err}");
}

#[tokio::test]
async fn discord_wrong_token_is_permanent_and_never_shown() {
    let (_fake, client) = discord("MTIz.WRONGdiscordSECRET.abc_0123").await;
    let err = client.send_dm(user(20), "hi").await.expect_err("401");
    assert_eq!(err.kind, ChatErrorKind::Permanent, "{err}");
    assert!(err.to_string().contains("JOBQ_DISCORD_TOKEN"), "{err}");
    assert!(!err.to_string().contains("WRONGdiscordSECRET"), "{err}");
}

#[tokio::test]
async fn telegram_get_updates_long_polls_and_wakes_on_push() {
    let fake = FakeTelegram::start(TELEGRAM_TOKEN).await.expect("fake");
    let http = reqwest::Client::new();
    let url = format!("{}/bot{TELEGRAM_TOKEN}/getUpdates", fake.url());
    let poll = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let body = serde_json::json!({"offset": 0, "timeout": 20});
            http.post(&url)
                .json(&body)
                .send()
                .await
                .expect("poll")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        })
    };
    // Pushed while the poll waits (or before it arrives): either way it is answered with it.
    let id = fake.push_update(serde_json::json!({"message": {"message_id": 1, "date": 0,
        "chat": {"id": 5, "type": "private", "first_name": "a"}, "text": "/start"}}));
    let answer = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(answer["result"][0]["update_id"], id);
    // The next offset confirms it: the queue is empty, and a zero-timeout poll answers at once.
    let body = serde_json::json!({"offset": id + 1, "timeout": 0});
    let next: serde_json::Value = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("poll")
        .json()
        .await
        .expect("json");
    assert_eq!(next["result"], serde_json::json!([]));
    assert_eq!(fake.pending_updates(), 0);
}
