//! The Discord bot's command logic, apart from serenity: an [`Invocation`] (what the glue read
//! from the interaction) goes in, jobs are enqueued, a [`Reply`] comes out. Tested without a
//! gateway in `tests/discord_bot.rs`.
//!
//! `/notify` is keyed `discord:interaction:<interaction id>`, so an interaction delivered twice
//! finds its job and enqueues nothing new. `/ticket close` keeps `upload_transcript`'s own key,
//! `upload_transcript:<guild>:<channel>`: the ticket is closed once, however many people (or
//! redeliveries) ask, and a second close is told it is already closing.

use std::collections::HashSet;
use std::fmt::Write as _;

use jobs::kinds::{ChannelId, GuildId, Platform, Recipient, SendDm, UploadTranscript, UserId};
use jobs::subscriptions::{Subscription, Subscriptions};
use jobs::{EnqueueOptions, Enqueued, Job, Queue};

use crate::admin_jobs::{self, Actor, AdminError, FailedQuery, MAX_REPLY_CHARS, clip};
use crate::command_limit::{CommandLimit, Verdict, limited_reply};

/// A slash command with its arguments, as typed (ids already resolved by Discord).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/ticket close [owner]`.
    TicketClose { owner: Option<u64> },
    /// `/notify user message` (admins).
    Notify { user: u64, message: String },
    /// `/jobs failed [kind] [page]` (admins).
    JobsFailed {
        kind: Option<String>,
        page: Option<String>,
    },
    /// `/jobs retry id` (admins).
    JobsRetry { id: String },
    /// `/jobs discard id` (admins).
    JobsDiscard { id: String },
    /// `/jobs stats` (admins).
    JobsStats,
    /// `/subscription`.
    Subscription,
    /// A command or subcommand this bot does not know (an old registration, say).
    Unknown(String),
}

impl Command {
    /// The name logged for the command (no arguments: they may be private).
    pub fn name(&self) -> &str {
        match self {
            Command::TicketClose { .. } => "ticket close",
            Command::Notify { .. } => "notify",
            Command::JobsFailed { .. } => "jobs failed",
            Command::JobsRetry { .. } => "jobs retry",
            Command::JobsDiscard { .. } => "jobs discard",
            Command::JobsStats => "jobs stats",
            Command::Subscription => "subscription",
            Command::Unknown(name) => name,
        }
    }

    fn admin_only(&self) -> bool {
        matches!(
            self,
            Command::Notify { .. }
                | Command::JobsFailed { .. }
                | Command::JobsRetry { .. }
                | Command::JobsDiscard { .. }
                | Command::JobsStats
        )
    }
}

/// One slash-command interaction, as the glue read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub interaction_id: u64,
    /// `None` in a DM with the bot.
    pub guild_id: Option<u64>,
    pub channel_id: u64,
    /// The channel's topic, read by the glue for `/ticket close` without an owner.
    pub channel_topic: Option<String>,
    pub user_id: u64,
    pub user_name: String,
    /// The member's roles in the guild (none in a DM).
    pub roles: Vec<u64>,
    pub command: Command,
}

/// The answer to an interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub content: String,
    /// Shown only to the user who asked (admin output, errors, their own subscriptions).
    pub ephemeral: bool,
}

impl Reply {
    fn private(content: impl Into<String>) -> Reply {
        Reply {
            content: clip(&content.into(), MAX_REPLY_CHARS),
            ephemeral: true,
        }
    }

    fn public(content: impl Into<String>) -> Reply {
        Reply {
            content: clip(&content.into(), MAX_REPLY_CHARS),
            ephemeral: false,
        }
    }
}

/// Who counts as an admin: a member with one of these roles, or one of these users.
#[derive(Debug, Clone, Default)]
pub struct Admins {
    pub roles: HashSet<u64>,
    pub users: HashSet<u64>,
}

impl Admins {
    pub fn from_settings(discord: &jobs::configuration::DiscordSettings) -> Admins {
        let ids = |ids: &[i64]| {
            ids.iter()
                .filter_map(|id| u64::try_from(*id).ok())
                .collect()
        };
        Admins {
            roles: ids(&discord.admin_roles),
            users: ids(&discord.admins),
        }
    }

    pub fn includes(&self, invocation: &Invocation) -> bool {
        self.users.contains(&invocation.user_id)
            || invocation.roles.iter().any(|r| self.roles.contains(r))
    }
}

/// The command layer: the queue, the per-user limit, who the admins are.
#[derive(Clone)]
pub struct Bot {
    queue: Queue,
    subscriptions: Subscriptions,
    limit: CommandLimit,
    admins: Admins,
}

impl Bot {
    pub fn new(
        queue: Queue,
        limit: CommandLimit,
        admins: Admins,
    ) -> Result<Bot, jobs::subscriptions::SubscriptionError> {
        Ok(Bot {
            subscriptions: Subscriptions::new(&queue)?,
            queue,
            limit,
            admins,
        })
    }

    /// Decides and acts on one invocation. Never fails: a problem becomes the reply.
    pub async fn handle(&self, invocation: &Invocation) -> Reply {
        let is_admin = self.admins.includes(invocation);
        let command = invocation.command.name();
        let user = i64::try_from(invocation.user_id).unwrap_or(i64::MAX);
        if let Verdict::Limited { retry_after } = self.limit.check(user, is_admin).await {
            return Reply::private(limited_reply(retry_after));
        }
        if invocation.command.admin_only() && !is_admin {
            tracing::info!(user = invocation.user_id, name = %invocation.user_name, command,
                guild = ?invocation.guild_id, "refused: admin command from a non-admin");
            return Reply::private(format!(
                "/{command} is for admins only: you need one of the bot's admin roles."
            ));
        }
        match &invocation.command {
            Command::TicketClose { owner } => self.ticket_close(invocation, *owner, is_admin).await,
            Command::Notify { user, message } => self.notify(invocation, *user, message).await,
            Command::JobsFailed { kind, page } => {
                self.failed(kind.as_deref(), page.as_deref()).await
            }
            Command::JobsRetry { id } => {
                let done = admin_jobs::retry(&self.queue, &actor(invocation), id).await;
                repaired(done)
            }
            Command::JobsDiscard { id } => {
                let done = admin_jobs::discard(&self.queue, &actor(invocation), id).await;
                repaired(done)
            }
            Command::JobsStats => match admin_jobs::stats(&self.queue).await {
                Ok(stats) => Reply::private(admin_jobs::render_stats(&stats)),
                Err(error) => admin_error(error),
            },
            Command::Subscription => self.subscription(invocation).await,
            Command::Unknown(name) => Reply::private(format!(
                "I do not know /{name}. My commands: /ticket close, /subscription, and for \
                 admins /notify and /jobs."
            )),
        }
    }

    async fn ticket_close(
        &self,
        invocation: &Invocation,
        owner: Option<u64>,
        is_admin: bool,
    ) -> Reply {
        let Some(guild) = invocation.guild_id else {
            return Reply::private("Use /ticket close in the ticket's channel on the server.");
        };
        let topic_owner = invocation
            .channel_topic
            .as_deref()
            .and_then(owner_from_topic);
        let owner = match (owner, topic_owner) {
            (Some(given), _) => given,
            (None, Some(found)) => found,
            (None, None) => {
                return Reply::private(format!(
                    "This channel's topic does not name the ticket's owner (`{TOPIC_OWNER_PREFIX}<user id>`). \
                     Give the owner: /ticket close owner:@user"
                ));
            }
        };
        // Only admins may send a transcript to someone else than the ticket's own owner:
        // otherwise anyone could have a private ticket sent to themselves.
        let own_ticket = topic_owner == Some(invocation.user_id) && owner == invocation.user_id;
        if !is_admin && !own_ticket {
            tracing::info!(user = invocation.user_id, name = %invocation.user_name,
                channel = invocation.channel_id, "refused: ticket close by someone not its owner");
            return Reply::private(
                "Only the ticket's owner (named in the channel topic) or an admin may close it.",
            );
        }
        let job = match transcript_job(guild, invocation.channel_id, owner) {
            Ok(job) => job,
            Err(problem) => return Reply::private(problem),
        };
        // The kind's default key (guild and channel), not the interaction's: two people closing
        // the same ticket must not start two uploads of one channel.
        match self.enqueue(&job, None).await {
            Ok(done) if done.created => Reply::public(format!(
                "Closing the ticket: the transcript of this channel will be sent to <@{owner}> \
                 by direct message as a link, in a minute or so (job #{}).",
                done.id
            )),
            Ok(done) => Reply::public(format!(
                "Already closing: the transcript is on its way to <@{owner}> (job #{}).",
                done.id
            )),
            Err(reply) => reply,
        }
    }

    async fn notify(&self, invocation: &Invocation, user: u64, message: &str) -> Reply {
        let job = match discord_user(user)
            .and_then(|id| SendDm::new(Recipient::new(Platform::Discord, id), message))
        {
            Ok(job) => job,
            Err(problem) => return Reply::private(format!("Cannot send that: {problem}.")),
        };
        let key = interaction_key(invocation.interaction_id);
        match self.enqueue(&job, Some(key)).await {
            Ok(done) if done.created => {
                tracing::info!(
                    admin = invocation.user_id,
                    to = user,
                    job = done.id,
                    "admin queued a DM from Discord"
                );
                Reply::private(format!(
                    "Queued a direct message to <@{user}> (job #{}).",
                    done.id
                ))
            }
            Ok(done) => Reply::private(format!(
                "Already queued: this message to <@{user}> is job #{}.",
                done.id
            )),
            Err(reply) => reply,
        }
    }

    async fn failed(&self, kind: Option<&str>, page: Option<&str>) -> Reply {
        let query = match FailedQuery::parse(kind, page) {
            Ok(query) => query,
            Err(error) => return admin_error(error),
        };
        match admin_jobs::failed(&self.queue, &query).await {
            Ok(found) => {
                let kind = query.kind.clone();
                Reply::private(admin_jobs::render_failed(&found, |marker| match &kind {
                    Some(kind) => format!("/jobs failed kind:{kind} page:{marker}"),
                    None => format!("/jobs failed page:{marker}"),
                }))
            }
            Err(error) => admin_error(error),
        }
    }

    async fn subscription(&self, invocation: &Invocation) -> Reply {
        let Ok(user) = discord_user(invocation.user_id) else {
            return Reply::private("Your Discord id is not one I can look up.");
        };
        match self
            .subscriptions
            .list_by_user(Platform::Discord, user)
            .await
        {
            Ok(list) => Reply::private(render_subscriptions(&list)),
            Err(error) => {
                tracing::warn!(%error, "cannot read subscriptions for /subscription");
                Reply::private("I could not read your subscriptions just now; try again shortly.")
            }
        }
    }

    /// Enqueues under `key` (`None`: the kind's default key); a failure becomes the reply.
    async fn enqueue<J: Job>(&self, job: &J, key: Option<String>) -> Result<Enqueued, Reply> {
        let options = EnqueueOptions {
            key,
            ..EnqueueOptions::default()
        };
        self.queue.enqueue(job, options).await.map_err(|error| {
            tracing::warn!(%error, kind = J::KIND, "enqueue from a Discord command failed");
            Reply::private("I could not queue that just now; try again shortly.")
        })
    }
}

/// The idempotency key of what one interaction enqueues (`/notify`).
pub fn interaction_key(interaction_id: u64) -> String {
    format!("discord:interaction:{interaction_id}")
}

/// What the ticket tool writes in a ticket channel's topic to name its owner:
/// `owner:<user id>` (or `owner:<@user id>`), anywhere in the topic.
pub const TOPIC_OWNER_PREFIX: &str = "owner:";

/// The owner named in a channel topic, if any.
pub fn owner_from_topic(topic: &str) -> Option<u64> {
    topic.split_whitespace().find_map(|word| {
        let rest = word.strip_prefix(TOPIC_OWNER_PREFIX)?;
        let rest = rest.strip_prefix("<@").unwrap_or(rest);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok().filter(|id| *id > 0)
    })
}

fn actor(invocation: &Invocation) -> Actor {
    Actor::new(
        Platform::Discord,
        i64::try_from(invocation.user_id).unwrap_or(i64::MAX),
        invocation.user_name.clone(),
    )
}

fn discord_user(id: u64) -> Result<UserId, String> {
    i64::try_from(id)
        .map_err(|_| format!("user id {id} is out of range"))
        .and_then(UserId::parse)
}

fn transcript_job(guild: u64, channel: u64, owner: u64) -> Result<UploadTranscript, String> {
    let as_i64 = |id: u64| i64::try_from(id).map_err(|_| format!("id {id} is out of range"));
    Ok(UploadTranscript {
        guild: GuildId::parse(as_i64(guild)?)?,
        channel: ChannelId::parse(as_i64(channel)?)?,
        owner: Recipient::new(Platform::Discord, discord_user(owner)?),
    })
}

fn repaired(done: Result<admin_jobs::Repaired, AdminError>) -> Reply {
    match done {
        Ok(done) => Reply::private(admin_jobs::render_repaired(&done)),
        Err(error) => admin_error(error),
    }
}

fn admin_error(error: AdminError) -> Reply {
    if error.is_internal() {
        tracing::warn!(%error, "admin command failed");
    }
    Reply::private(error.to_string())
}

/// The caller's subscriptions: plan, state, expiry and usage (never the link: it is a secret
/// and `/subscription` may be used anywhere).
pub fn render_subscriptions(list: &[Subscription]) -> String {
    if list.is_empty() {
        return "You have no subscriptions.".to_string();
    }
    let mut out = String::from("Your subscriptions:\n");
    for s in list {
        let expiry = s
            .expiry
            .map(|t| format!(", until {}", t.format("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default();
        let volume = if s.volume_bytes > 0 {
            format!(" of {}", gigabytes(s.volume_bytes))
        } else {
            " (no limit)".to_string()
        };
        let _ = writeln!(
            out,
            "• {} ({}){expiry}: used {}{volume}",
            s.plan,
            s.status,
            gigabytes(s.usage_bytes())
        );
    }
    clip(out.trim_end(), MAX_REPLY_CHARS)
}

fn gigabytes(bytes: i64) -> String {
    format!("{:.2} GB", bytes as f64 / 1_000_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_read_from_the_topic_in_either_form() {
        assert_eq!(owner_from_topic("Ticket owner:123 (billing)"), Some(123));
        assert_eq!(owner_from_topic("owner:<@456>"), Some(456));
        assert_eq!(owner_from_topic("no owner here"), None);
        assert_eq!(owner_from_topic("owner:abc"), None);
        assert_eq!(owner_from_topic("owner:0"), None);
    }
}
