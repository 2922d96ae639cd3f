//! The chat clients against the fake Telegram and Discord servers over real HTTP, their error
//! classification, and the fakes' faithfulness where jobq relies on it.

use chrono::{TimeZone, Utc};
use fakes::discord::{FakeDiscord, SeedAuthor, SeedMessage};
use serenity::http::{Http, HttpBuilder, MessagePagination};
use serenity::model::id::ChannelId;

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
