//! The Discord bot without a gateway: the command layer (`producer::discord::commands`) on both
//! backends (replies, jobs enqueued with kind, payload and key, redelivery, refusals, bad input,
//! the rate limit), and the serenity glue's REST calls against the fake Discord (command
//! registration, interaction responses, the channel topic read for `/ticket close`).

mod support;

use std::collections::HashSet;

use fakes::discord::FakeDiscord;
use jobs::Queue;
use jobs::configuration::BotSettings;
use jobs::kinds::{Platform, UserId};
use jobs::secret_key::SecretKey;
use jobs::subscriptions::{NewSubscription, Subscriptions};
use producer::command_limit::CommandLimit;
use producer::discord::commands::{Admins, Bot, Command, Invocation, Reply, interaction_key};
use producer::discord::gateway;
use producer::discord::serenity::all::{CommandInteraction, HttpBuilder};
use serde_json::json;
use support::{Backend, TestDb, all_jobs};

const GUILD: u64 = 1_100_000_000_000_000_001;
const CHANNEL: u64 = 1_300_000_000_000_000_042;
const OWNER: u64 = 1_200_000_000_000_000_007;
const STRANGER: u64 = 1_200_000_000_000_000_099;
const ADMIN: u64 = 1_200_000_000_000_000_500;
const ADMIN_ROLE: u64 = 1_100_000_000_000_000_077;
const APP: u64 = 1_000_000_000_000_000_001;
const TOKEN: &str = "MTA4.Gx1-ab.abcdefghijklmnopqrstuvwx";

fn generous() -> BotSettings {
    BotSettings {
        commands_per_minute: 1000,
        command_burst: 100,
    }
}

fn bot_with(queue: &Queue, limits: &BotSettings) -> Bot {
    let limit = CommandLimit::new(queue, limits, Platform::Discord).expect("limit");
    let admins = Admins {
        roles: HashSet::from([ADMIN_ROLE]),
        users: HashSet::new(),
    };
    Bot::new(queue.clone(), limit, admins).expect("bot")
}

/// The reply's text contains `needle`.
#[track_caller]
fn assert_says(reply: &Reply, needle: &str) {
    assert!(reply.content.contains(needle), "{}", reply.content);
}

fn invocation(id: u64, user: u64, command: Command) -> Invocation {
    Invocation {
        interaction_id: id,
        guild_id: Some(GUILD),
        channel_id: CHANNEL,
        channel_topic: Some(format!("Support ticket owner:{OWNER}")),
        user_id: user,
        user_name: format!("user{user}"),
        roles: if user == ADMIN {
            vec![42, ADMIN_ROLE]
        } else {
            vec![42]
        },
        command,
    }
}

async fn ticket_close_enqueues_the_transcript_once_for_the_topic_owner(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let bot = bot_with(&queue, &generous());
    let close = invocation(501, OWNER, Command::TicketClose { owner: None });

    let reply = bot.handle(&close).await;
    assert!(!reply.ephemeral, "the channel sees that it is closing");
    assert_says(&reply, &format!("sent to <@{OWNER}> by direct message"));
    let jobs = all_jobs(&queue).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, "upload_transcript");
    assert_eq!(
        jobs[0].payload,
        json!({"guild": GUILD, "channel": CHANNEL, "owner": {"platform": "discord", "id": OWNER}})
    );
    // The kind's own key (the ticket's channel), not the interaction's.
    let ticket_key = format!("upload_transcript:{GUILD}:{CHANNEL}");
    assert_eq!(jobs[0].key.as_deref(), Some(ticket_key.as_str()));

    // The same interaction delivered again enqueues nothing new.
    let again = bot.handle(&close).await;
    assert!(
        again.content.starts_with("Already closing"),
        "{}",
        again.content
    );
    assert!(again.content.contains(&format!("job #{}", jobs[0].id)));
    assert_eq!(all_jobs(&queue).await.len(), 1);

    // Someone else closing the same ticket (another interaction): already closing, one job.
    let other = bot
        .handle(&invocation(
            502,
            ADMIN,
            Command::TicketClose { owner: None },
        ))
        .await;
    assert!(
        other.content.starts_with("Already closing"),
        "{}",
        other.content
    );
    assert!(other.content.contains(&format!("job #{}", jobs[0].id)));
    let after = all_jobs(&queue).await;
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0].key.as_deref(), Some(ticket_key.as_str()));
}

async fn ticket_close_refusals_and_bad_input(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let bot = bot_with(&queue, &generous());

    // Someone else may neither close the ticket nor have it sent to themselves.
    let reply = bot
        .handle(&invocation(
            601,
            STRANGER,
            Command::TicketClose { owner: None },
        ))
        .await;
    assert!(reply.ephemeral && reply.content.contains("Only the ticket's owner"));
    let reply = bot
        .handle(&invocation(
            602,
            STRANGER,
            Command::TicketClose {
                owner: Some(STRANGER),
            },
        ))
        .await;
    assert_says(&reply, "Only the ticket's owner");

    // No owner in the topic and none given: say how to write it.
    let mut no_topic = invocation(603, ADMIN, Command::TicketClose { owner: None });
    no_topic.channel_topic = Some("general chat".into());
    let reply = bot.handle(&no_topic).await;
    assert_says(&reply, "`owner:<user id>`");
    assert!(reply.content.contains("/ticket close owner:@user"));

    // Outside a server.
    let mut in_dm = invocation(604, OWNER, Command::TicketClose { owner: None });
    in_dm.guild_id = None;
    assert!(bot.handle(&in_dm).await.content.contains("on the server"));
    assert!(all_jobs(&queue).await.is_empty(), "nothing enqueued");

    // An admin may name the owner.
    let reply = bot
        .handle(&invocation(
            605,
            ADMIN,
            Command::TicketClose {
                owner: Some(STRANGER),
            },
        ))
        .await;
    assert_says(&reply, &format!("<@{STRANGER}>"));
    let jobs = all_jobs(&queue).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].payload["owner"]["id"], json!(STRANGER));
}

async fn notify_enqueues_a_dm_for_admins_only(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let bot = bot_with(&queue, &generous());
    let notify = |id, user| {
        invocation(
            id,
            user,
            Command::Notify {
                user: OWNER,
                message: "Your ticket is answered".into(),
            },
        )
    };

    let refused = bot.handle(&notify(701, STRANGER)).await;
    assert!(refused.ephemeral);
    assert_says(&refused, "/notify is for admins only");
    assert!(
        all_jobs(&queue).await.is_empty(),
        "a refusal enqueues nothing"
    );

    let reply = bot.handle(&notify(702, ADMIN)).await;
    assert!(
        reply.content.starts_with("Queued a direct message"),
        "{}",
        reply.content
    );
    let jobs = all_jobs(&queue).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, "send_dm");
    assert_eq!(
        jobs[0].payload,
        json!({"user": {"platform": "discord", "id": OWNER}, "text": "Your ticket is answered"})
    );
    assert_eq!(jobs[0].key.as_deref(), Some(interaction_key(702).as_str()));

    let again = bot.handle(&notify(702, ADMIN)).await;
    assert!(
        again.content.starts_with("Already queued"),
        "{}",
        again.content
    );
    assert_eq!(all_jobs(&queue).await.len(), 1);

    let too_long = invocation(
        703,
        ADMIN,
        Command::Notify {
            user: OWNER,
            message: "x".repeat(2001),
        },
    );
    let reply = bot.handle(&too_long).await;
    assert_says(
        &reply,
        "text is 2001 characters long, over the Discord limit of 2000",
    );
    assert_eq!(all_jobs(&queue).await.len(), 1);
}

async fn jobs_commands_list_repair_and_refuse_bad_ids(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let bot = bot_with(&queue, &generous());
    let job = db.enqueue(
        "send_dm",
        r#"{"user":{"platform":"discord","id":5},"text":"hi"}"#,
        &[],
    );
    // Fail it for good, as a worker would.
    let fetched = queue
        .driver()
        .fetch(
            "messages",
            10,
            "w",
            std::time::Duration::from_secs(60),
            &Default::default(),
        )
        .await
        .expect("fetch");
    let finished: Vec<_> = fetched
        .iter()
        .map(|j| jobs::driver::Finished {
            id: j.id,
            attempt: j.attempt,
            finish: jobs::driver::Finish::Failed {
                error: jobs::driver::AttemptError {
                    attempt: j.attempt,
                    at: chrono::Utc::now(),
                    worker: "w".into(),
                    duration_ms: 1,
                    error: "403 Cannot send messages to this user".into(),
                },
            },
        })
        .collect();
    queue.driver().finish(&finished).await.expect("finish");

    let failed = Command::JobsFailed {
        kind: None,
        page: None,
    };
    let reply = bot.handle(&invocation(801, ADMIN, failed.clone())).await;
    assert!(reply.ephemeral);
    assert!(
        reply
            .content
            .contains(&format!("#{job} send_dm (messages)")),
        "{}",
        reply.content
    );
    assert!(
        reply
            .content
            .contains("403 Cannot send messages to this user")
    );

    let refused = bot.handle(&invocation(802, STRANGER, failed)).await;
    assert_says(&refused, "/jobs failed is for admins only");

    let bad = bot
        .handle(&invocation(
            803,
            ADMIN,
            Command::JobsRetry { id: "abc".into() },
        ))
        .await;
    assert_says(&bad, "“abc” is not a job id");

    let retried = bot
        .handle(&invocation(
            804,
            ADMIN,
            Command::JobsRetry {
                id: job.to_string(),
            },
        ))
        .await;
    assert_says(&retried, "will run again");
    let audit = queue.driver().audit_log(5).await.expect("audit");
    assert_eq!(audit[0].surface, "discord");
    assert_eq!(audit[0].actor, format!("user{ADMIN} (discord {ADMIN})"));

    let discarded = bot
        .handle(&invocation(
            805,
            ADMIN,
            Command::JobsDiscard {
                id: "999999".into(),
            },
        ))
        .await;
    assert_says(&discarded, "There is no job #999999");

    let stats = bot
        .handle(&invocation(806, ADMIN, Command::JobsStats))
        .await;
    assert_says(&stats, "• messages: available 1");
}

async fn subscription_shows_only_the_callers_own(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let bot = bot_with(&queue, &generous());
    let key = SecretKey::parse("8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073")
        .expect("key");
    let owner = i64::try_from(OWNER).expect("fits");
    Subscriptions::new(&queue)
        .expect("subscriptions")
        .create(
            &key,
            &NewSubscription {
                platform: Platform::Discord,
                user_id: UserId::parse(owner).expect("id"),
                panel: "main".into(),
                plan: "basic".into(),
                volume_bytes: 50_000_000_000,
                origin_key: None,
            },
        )
        .await
        .expect("create");

    let mine = bot
        .handle(&invocation(901, OWNER, Command::Subscription))
        .await;
    assert!(mine.ephemeral);
    assert_says(&mine, "• basic (provisioning): used 0.00 GB of 50.00 GB");
    let theirs = bot
        .handle(&invocation(902, STRANGER, Command::Subscription))
        .await;
    assert_eq!(theirs.content, "You have no subscriptions.");
}

async fn rate_limit_refuses_a_flood_and_admins_bypass_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let queue = db.queue().await;
    let tight = BotSettings {
        commands_per_minute: 1,
        command_burst: 2,
    };
    let bot = bot_with(&queue, &tight);
    // Three tickets (channels) closed in a row.
    let close = |id: u64| {
        let mut close = invocation(id, OWNER, Command::TicketClose { owner: None });
        close.channel_id = CHANNEL + id;
        close
    };
    bot.handle(&close(1001)).await;
    bot.handle(&close(1002)).await;
    let limited = bot.handle(&close(1003)).await;
    assert!(limited.ephemeral);
    assert!(
        limited
            .content
            .starts_with("You are sending commands too fast. Try again in"),
        "{}",
        limited.content
    );
    let keys: Vec<Option<String>> = all_jobs(&queue).await.into_iter().map(|j| j.key).collect();
    assert_eq!(
        keys.len(),
        2,
        "the limited close enqueued nothing: {keys:?}"
    );
    let third = format!("upload_transcript:{GUILD}:{}", CHANNEL + 1003);
    assert!(!keys.contains(&Some(third)), "{keys:?}");

    for id in [1101, 1102, 1103] {
        let reply = bot.handle(&invocation(id, ADMIN, Command::JobsStats)).await;
        assert!(!reply.content.contains("too fast"), "{}", reply.content);
    }
}

on_both_backends!(
    ticket_close_enqueues_the_transcript_once_for_the_topic_owner,
    ticket_close_refusals_and_bad_input,
    notify_enqueues_a_dm_for_admins_only,
    jobs_commands_list_repair_and_refuse_bad_ids,
    subscription_shows_only_the_callers_own,
    rate_limit_refuses_a_flood_and_admins_bypass_it,
);

// ---------------------------------------------------------------------------------------------
// The glue's REST calls against the fake Discord (SQLite: the database is not what is tested).

fn fake_http(fake: &FakeDiscord) -> producer::discord::serenity::all::Http {
    HttpBuilder::new(TOKEN)
        .proxy(fake.url())
        .ratelimiter_disabled(true)
        .application_id(APP.into())
        .build()
}

#[tokio::test]
async fn commands_are_registered_per_guild() {
    let fake = FakeDiscord::start(TOKEN).await.expect("fake discord");
    let http = fake_http(&fake);
    gateway::register_commands(&http, &[GUILD, GUILD + 1])
        .await
        .expect("register");
    let registrations = fake.command_registrations();
    assert_eq!(registrations.len(), 2);
    assert_eq!(registrations[0].application_id, APP);
    assert_eq!(registrations[1].guild_id, GUILD + 1);
    let names: Vec<&str> = registrations[0]
        .body
        .as_array()
        .expect("an array of commands")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["ticket", "notify", "jobs", "subscription"]);
    let jobs = &registrations[0].body[2];
    let subcommands: Vec<&str> = jobs["options"]
        .as_array()
        .expect("subcommands")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(subcommands, ["failed", "retry", "discard", "stats"]);
}

#[tokio::test]
async fn replies_are_posted_as_interaction_responses() {
    let fake = FakeDiscord::start(TOKEN).await.expect("fake discord");
    let http = fake_http(&fake);
    let reply = Reply {
        content: "only you see this".into(),
        ephemeral: true,
    };
    gateway::respond(&http, 77, "tok-en", &reply)
        .await
        .expect("respond");
    let responses = fake.interaction_responses();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].interaction_id, 77);
    assert_eq!(responses[0].token, "tok-en");
    assert_eq!(responses[0].body["type"], 4, "CHANNEL_MESSAGE_WITH_SOURCE");
    assert_eq!(responses[0].body["data"]["content"], "only you see this");
    assert_eq!(responses[0].body["data"]["flags"], 64, "EPHEMERAL");
}

/// A `/ticket close` interaction as the gateway delivers it, read by the glue: the owner comes
/// from the channel topic fetched over REST, the job is enqueued, the answer is posted.
#[tokio::test]
async fn an_interaction_is_read_answered_and_enqueued() {
    let db = TestDb::new(Backend::Sqlite).await;
    let queue = db.queue().await;
    let bot = bot_with(&queue, &generous());
    let fake = FakeDiscord::start(TOKEN).await.expect("fake discord");
    fake.set_channel(CHANNEL, "ticket-0042", Some(GUILD));
    fake.set_channel_topic(CHANNEL, &format!("Support ticket owner:{OWNER}"));
    let http = fake_http(&fake);

    let interaction: CommandInteraction = serde_json::from_value(json!({
        "id": "1400000000000000001",
        "application_id": APP.to_string(),
        "type": 2,
        "token": "interaction-token",
        "version": 1,
        "locale": "en-US",
        "guild_id": GUILD.to_string(),
        "channel_id": CHANNEL.to_string(),
        "entitlements": [],
        "attachment_size_limit": 8388608,
        "member": {
            "user": {"id": OWNER.to_string(), "username": "owner", "discriminator": "0",
                     "global_name": "Ticket Owner", "avatar": null},
            "roles": [], "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false,
            "flags": 0,
        },
        "data": {
            "id": "1500000000000000001", "name": "ticket", "type": 1,
            "options": [{"name": "close", "type": 1, "options": []}],
        },
    }))
    .expect("a gateway interaction parses");

    let read = gateway::invocation_from(&interaction);
    assert_eq!(read.command, Command::TicketClose { owner: None });
    assert_eq!(read.user_id, OWNER);
    assert_eq!(read.user_name, "Ticket Owner");

    gateway::handle_interaction(&http, &bot, &interaction).await;
    assert!(
        fake.requests()
            .contains(&format!("GET /api/v10/channels/{CHANNEL}"))
    );
    let responses = fake.interaction_responses();
    assert_eq!(responses.len(), 1);
    let content = responses[0].body["data"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(content.contains(&format!("<@{OWNER}>")), "{content}");
    let jobs = all_jobs(&queue).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        jobs[0].key.as_deref(),
        Some(format!("upload_transcript:{GUILD}:{CHANNEL}").as_str())
    );
    assert_eq!(jobs[0].payload["owner"]["id"], json!(OWNER));
}

#[test]
fn options_parse_into_commands() {
    use producer::discord::serenity::all::CommandDataOption;
    let options: Vec<CommandDataOption> = serde_json::from_value(json!([
        {"name": "retry", "type": 1, "options": [{"name": "id", "type": 3, "value": "#42"}]}
    ]))
    .expect("options parse");
    assert_eq!(
        gateway::parse_command("jobs", &options),
        Command::JobsRetry { id: "#42".into() }
    );
    assert_eq!(
        gateway::parse_command("dance", &[]),
        Command::Unknown("dance".into())
    );
}

// ---------------------------------------------------------------------------------------------
// `jobq discord`: the token is checked before anything connects, and never shown.

#[tokio::test]
async fn jobq_discord_stops_on_a_missing_or_malformed_token_naming_the_variable() {
    let db = TestDb::new(Backend::Sqlite).await;
    let missing = db.jobq(&["discord"]);
    assert!(!missing.status.success());
    let text = support::stderr(&missing);
    assert!(text.contains("JOBQ_DISCORD_TOKEN is not set"), "{text}");

    let malformed = db
        .command(&["discord"])
        .env("JOBQ_DISCORD_TOKEN", "not-a-token-hunter2secret")
        .output()
        .expect("run jobq");
    assert!(!malformed.status.success());
    let text = support::stderr(&malformed);
    assert!(text.contains("JOBQ_DISCORD_TOKEN is malformed"), "{text}");
    assert!(
        !text.contains("hunter2secret"),
        "the value is never shown: {text}"
    );
}
