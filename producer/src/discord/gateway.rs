//! serenity's side of the bot: the slash commands registered per guild, interactions turned
//! into [`Invocation`]s, replies sent back as interaction responses, and the gateway client.
//! Everything here is a thin translation; the decisions are in [`super::commands`].

use std::future::Future;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serenity::all::{
    Channel, ChannelId, CommandDataOption, CommandDataOptionValue, CommandInteraction,
    CommandOptionType, CreateCommand, CreateCommandOption, CreateInteractionResponse,
    CreateInteractionResponseMessage, GatewayIntents, GuildId, Http, HttpBuilder, Interaction,
    InteractionId, Ready,
};
use serenity::async_trait;
use serenity::client::{Context, EventHandler};

use super::commands::{Bot, Command, Invocation, Reply};

/// The bot's slash commands, as registered in each guild.
pub fn command_definitions() -> Vec<CreateCommand> {
    let id = |name: &'static str, what: &'static str| {
        CreateCommandOption::new(CommandOptionType::String, name, what).required(true)
    };
    let subcommand = |name: &'static str, what: &'static str| {
        CreateCommandOption::new(CommandOptionType::SubCommand, name, what)
    };
    vec![
        CreateCommand::new("ticket")
            .description("Ticket channels")
            .add_option(
                subcommand(
                    "close",
                    "Close this ticket; its transcript goes to the owner",
                )
                .add_sub_option(CreateCommandOption::new(
                    CommandOptionType::User,
                    "owner",
                    "Who gets the transcript (default: the owner in the channel topic)",
                )),
            ),
        CreateCommand::new("notify")
            .description("Send a user a direct message from the bot (admins)")
            .add_option(
                CreateCommandOption::new(CommandOptionType::User, "user", "Who to message")
                    .required(true),
            )
            .add_option(id("message", "The message").max_length(2000)),
        CreateCommand::new("jobs")
            .description("Failed jobs and queue figures (admins)")
            .add_option(
                subcommand("failed", "The newest failed jobs with their last error")
                    .add_sub_option(CreateCommandOption::new(
                        CommandOptionType::String,
                        "kind",
                        "Only this kind (e.g. send_dm)",
                    ))
                    .add_sub_option(CreateCommandOption::new(
                        CommandOptionType::String,
                        "page",
                        "The page marker the previous page gave",
                    )),
            )
            .add_option(subcommand("retry", "Run a job again").add_sub_option(id("id", "Job id")))
            .add_option(
                subcommand("discard", "Discard a job for good").add_sub_option(id("id", "Job id")),
            )
            .add_option(subcommand(
                "stats",
                "Jobs per queue and state, last hour's outcomes",
            )),
        CreateCommand::new("subscription").description("Your subscriptions"),
    ]
}

/// Replaces the bot's commands in each guild (`PUT .../guilds/{guild}/commands`).
pub async fn register_commands(http: &Http, guilds: &[u64]) -> serenity::Result<()> {
    for guild in guilds {
        let registered = GuildId::new(*guild)
            .set_commands(http, command_definitions())
            .await?;
        tracing::info!(
            guild,
            commands = registered.len(),
            "registered Discord slash commands"
        );
    }
    Ok(())
}

/// The command and its arguments from an interaction's options.
pub fn parse_command(name: &str, options: &[CommandDataOption]) -> Command {
    let (sub, args) = match options.first().map(|o| (&o.name, &o.value)) {
        Some((sub, CommandDataOptionValue::SubCommand(args))) => (sub.as_str(), args.as_slice()),
        _ => ("", options),
    };
    let user = |key: &str| {
        args.iter()
            .find(|o| o.name == key)
            .and_then(|o| match o.value {
                CommandDataOptionValue::User(id) => Some(id.get()),
                _ => None,
            })
    };
    let text = |key: &str| {
        args.iter()
            .find(|o| o.name == key)
            .and_then(|o| match &o.value {
                CommandDataOptionValue::String(s) => Some(s.clone()),
                _ => None,
            })
    };
    match (name, sub) {
        ("ticket", "close") => Command::TicketClose {
            owner: user("owner"),
        },
        ("notify", _) => match (user("user"), text("message")) {
            (Some(user), Some(message)) => Command::Notify { user, message },
            _ => Command::Unknown("notify (user and message are required)".into()),
        },
        ("jobs", "failed") => Command::JobsFailed {
            kind: text("kind"),
            page: text("page"),
        },
        ("jobs", "retry") => Command::JobsRetry {
            id: text("id").unwrap_or_default(),
        },
        ("jobs", "discard") => Command::JobsDiscard {
            id: text("id").unwrap_or_default(),
        },
        ("jobs", "stats") => Command::JobsStats,
        ("subscription", _) => Command::Subscription,
        (name, "") => Command::Unknown(name.to_string()),
        (name, sub) => Command::Unknown(format!("{name} {sub}")),
    }
}

/// What the command layer needs from an interaction (the topic is read separately).
pub fn invocation_from(interaction: &CommandInteraction) -> Invocation {
    let member = interaction.member.as_deref();
    let user = &interaction.user;
    let name = member
        .and_then(|m| m.nick.clone())
        .or_else(|| user.global_name.clone())
        .unwrap_or_else(|| user.name.clone());
    Invocation {
        interaction_id: interaction.id.get(),
        guild_id: interaction.guild_id.map(GuildId::get),
        channel_id: interaction.channel_id.get(),
        channel_topic: None,
        user_id: user.id.get(),
        user_name: name,
        roles: member
            .map(|m| m.roles.iter().map(|r| r.get()).collect())
            .unwrap_or_default(),
        command: parse_command(&interaction.data.name, &interaction.data.options),
    }
}

/// The channel's topic (`GET /channels/{id}`), for `/ticket close` without an owner.
pub async fn channel_topic(http: &Http, channel: u64) -> serenity::Result<Option<String>> {
    match ChannelId::new(channel).to_channel(http).await? {
        Channel::Guild(channel) => Ok(channel.topic),
        _ => Ok(None),
    }
}

/// Answers the interaction (`POST /interactions/{id}/{token}/callback`).
pub async fn respond(
    http: &Http,
    interaction_id: u64,
    token: &str,
    reply: &Reply,
) -> serenity::Result<()> {
    let message = CreateInteractionResponseMessage::new()
        .content(reply.content.clone())
        .ephemeral(reply.ephemeral);
    http.create_interaction_response(
        InteractionId::new(interaction_id),
        token,
        &CreateInteractionResponse::Message(message),
        Vec::new(),
    )
    .await
}

/// One interaction end to end: read it, fetch the topic when needed, decide, answer.
pub async fn handle_interaction(http: &Http, bot: &Bot, interaction: &CommandInteraction) {
    let mut invocation = invocation_from(interaction);
    if matches!(invocation.command, Command::TicketClose { owner: None }) {
        match channel_topic(http, invocation.channel_id).await {
            Ok(topic) => invocation.channel_topic = topic,
            Err(error) => {
                tracing::warn!(%error, channel = invocation.channel_id, "cannot read the channel topic")
            }
        }
    }
    let reply = bot.handle(&invocation).await;
    if let Err(error) = respond(http, invocation.interaction_id, &interaction.token, &reply).await {
        tracing::warn!(%error, interaction = invocation.interaction_id,
            command = invocation.command.name(), "cannot answer the interaction");
    }
}

struct Handler {
    bot: Bot,
    guilds: Vec<u64>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, guilds = self.guilds.len(), "Discord bot connected");
        ctx.http.set_application_id(ready.application.id);
        if let Err(error) = register_commands(&ctx.http, &self.guilds).await {
            tracing::error!(%error, "cannot register the slash commands ([discord] guilds)");
        }
    }

    // serenity runs each event in its own task, so a slow database never stalls the gateway.
    async fn interaction_create(&self, ctx: Context, interaction: Interaction) {
        if let Interaction::Command(command) = interaction {
            handle_interaction(&ctx.http, &self.bot, &command).await;
        }
    }
}

/// serenity's REST client for `token` at `api_url` (Discord's, or a fake): proxied there, with
/// serenity's own ratelimiter off because it ignores the proxy (see docs/chat-apis.md); an
/// interaction must be answered within 3 s, so waiting out a 429 would not help anyway.
pub fn http_client(token: &SecretString, api_url: &url::Url) -> Http {
    HttpBuilder::new(token.expose_secret())
        .proxy(api_url.as_str().trim_end_matches('/'))
        .ratelimiter_disabled(true)
        .build()
}

/// Connects to the gateway and serves interactions until `shutdown` completes.
pub async fn run(
    http: Http,
    bot: Bot,
    guilds: Vec<u64>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> serenity::Result<()> {
    // Slash commands need only the unprivileged GUILDS intent.
    let mut client = serenity::client::ClientBuilder::new_with_http(http, GatewayIntents::GUILDS)
        .event_handler(Handler { bot, guilds })
        .await?;
    let shards = Arc::clone(&client.shard_manager);
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("stopping the Discord bot");
        shards.shutdown_all().await;
    });
    client.start().await
}
