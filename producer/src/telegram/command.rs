//! Commands as customers and admins type them, parsed before anything is decided: a bad
//! argument becomes a reply saying what is wrong and how to write it.

use jobs::kinds::UserId;

/// A parsed command. Arguments are checked for shape here; against the database and config
/// (does the plan exist, has the user a subscription) in [`super::logic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Plans,
    Status,
    Link,
    Buy,
    Cancel,
    Provision {
        user: UserId,
        plan: String,
    },
    Renew {
        user: UserId,
        term: Term,
    },
    Expire {
        user: UserId,
    },
    Failed {
        kind: Option<String>,
        page: Option<String>,
    },
    Retry {
        job: String,
    },
    Discard {
        job: String,
    },
    Stats,
    AdminsList,
    AdminsAdd {
        user: UserId,
    },
    AdminsRemove {
        user: UserId,
    },
}

/// `/renew`'s second argument: a plan by name, or a number of days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Plan(String),
    Days(i64),
}

impl Command {
    /// Whether only admins may run it.
    pub fn is_admin_only(&self) -> bool {
        !matches!(
            self,
            Command::Start
                | Command::Plans
                | Command::Status
                | Command::Link
                | Command::Buy
                | Command::Cancel
        )
    }
}

/// What went wrong, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a command at all (plain text).
    NotACommand,
    Unknown(String),
    /// A command for admins with wrong arguments: the reply, with its usage. Checked only
    /// after the sender is known to be an admin, so non-admins learn nothing of the syntax.
    AdminUsage(String),
    Usage(String),
}

impl ParseError {
    pub fn reply(&self) -> String {
        match self {
            ParseError::NotACommand => "Send /start to see what I can do.".into(),
            ParseError::Unknown(name) => {
                format!("I don't know /{name}. Send /start to see the commands.")
            }
            ParseError::AdminUsage(text) | ParseError::Usage(text) => text.clone(),
        }
    }
}

const PROVISION_USAGE: &str = "Usage: /provision USER_ID PLAN, e.g. /provision 123456789 basic";
const RENEW_USAGE: &str =
    "Usage: /renew USER_ID PLAN or /renew USER_ID DAYS, e.g. /renew 123456789 basic";
const EXPIRE_USAGE: &str = "Usage: /expire USER_ID, e.g. /expire 123456789";
const ADMINS_USAGE: &str = "Usage: /admins list, /admins add USER_ID or /admins remove USER_ID";

/// Parses a message's text: `/name[@bot] args...`.
pub fn parse(text: &str) -> Result<Command, ParseError> {
    let text = text.trim();
    let Some(rest) = text.strip_prefix('/') else {
        return Err(ParseError::NotACommand);
    };
    let mut words = rest.split_whitespace();
    let head = words.next().unwrap_or("");
    // `/buy@shop_bot` in groups names the bot.
    let name = head.split('@').next().unwrap_or("").to_ascii_lowercase();
    let args: Vec<&str> = words.collect();
    match name.as_str() {
        "start" | "help" => Ok(Command::Start),
        "plans" => Ok(Command::Plans),
        "status" => Ok(Command::Status),
        "link" => Ok(Command::Link),
        "buy" => Ok(Command::Buy),
        "cancel" => Ok(Command::Cancel),
        "provision" => provision(&args),
        "renew" => renew(&args),
        "expire" => expire(&args),
        "failed" => Ok(Command::Failed {
            kind: args.first().map(|s| s.to_string()),
            page: args.get(1).map(|s| s.to_string()),
        }),
        "retry" => job_arg(&args, "retry").map(|job| Command::Retry { job }),
        "discard" => job_arg(&args, "discard").map(|job| Command::Discard { job }),
        "stats" => Ok(Command::Stats),
        "admins" => admins(&args),
        _ => Err(ParseError::Unknown(name)),
    }
}

/// The admin commands' names, to refuse a non-admin before their arguments are looked at.
pub fn is_admin_command(text: &str) -> bool {
    let name = text
        .trim()
        .strip_prefix('/')
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|head| head.split('@').next())
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        name.as_str(),
        "provision" | "renew" | "expire" | "failed" | "retry" | "discard" | "stats" | "admins"
    )
}

fn admin_usage(problem: &str, usage: &str) -> ParseError {
    ParseError::AdminUsage(format!("{problem}\n{usage}"))
}

/// A user id as typed: a positive number.
pub fn user_id(text: &str) -> Result<UserId, String> {
    text.parse::<i64>()
        .ok()
        .and_then(|id| UserId::parse(id).ok())
        .ok_or_else(|| format!("“{text}” is not a user id: write the number, like 123456789."))
}

fn provision(args: &[&str]) -> Result<Command, ParseError> {
    let [user, plan] = args else {
        return Err(admin_usage(
            "/provision needs a user id and a plan.",
            PROVISION_USAGE,
        ));
    };
    let user = user_id(user).map_err(|e| admin_usage(&e, PROVISION_USAGE))?;
    Ok(Command::Provision {
        user,
        plan: plan.to_string(),
    })
}

fn renew(args: &[&str]) -> Result<Command, ParseError> {
    let [user, term] = args else {
        return Err(admin_usage(
            "/renew needs a user id and a plan or a number of days.",
            RENEW_USAGE,
        ));
    };
    let user = user_id(user).map_err(|e| admin_usage(&e, RENEW_USAGE))?;
    let term = if term.bytes().all(|b| b.is_ascii_digit()) {
        match term.parse::<i64>() {
            Ok(days) if (1..=3650).contains(&days) => Term::Days(days),
            _ => {
                return Err(admin_usage(
                    &format!("{term} days is not a term: give 1 to 3650 days."),
                    RENEW_USAGE,
                ));
            }
        }
    } else {
        Term::Plan(term.to_string())
    };
    Ok(Command::Renew { user, term })
}

fn expire(args: &[&str]) -> Result<Command, ParseError> {
    let [user] = args else {
        return Err(admin_usage("/expire needs one user id.", EXPIRE_USAGE));
    };
    let user = user_id(user).map_err(|e| admin_usage(&e, EXPIRE_USAGE))?;
    Ok(Command::Expire { user })
}

fn job_arg(args: &[&str], name: &str) -> Result<String, ParseError> {
    match args {
        [job] => Ok(job.to_string()),
        _ => Err(admin_usage(
            &format!("/{name} needs one job id."),
            &format!("Usage: /{name} JOB_ID, e.g. /{name} 42 (ids are in /failed)"),
        )),
    }
}

fn admins(args: &[&str]) -> Result<Command, ParseError> {
    match args {
        ["list"] | [] => Ok(Command::AdminsList),
        ["add", user] => user_id(user)
            .map(|user| Command::AdminsAdd { user })
            .map_err(|e| admin_usage(&e, ADMINS_USAGE)),
        ["remove", user] => user_id(user)
            .map(|user| Command::AdminsRemove { user })
            .map_err(|e| admin_usage(&e, ADMINS_USAGE)),
        _ => Err(admin_usage(
            "I don't understand that /admins command.",
            ADMINS_USAGE,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(parse("/start"), Ok(Command::Start));
        assert_eq!(parse("/BUY@shop_bot"), Ok(Command::Buy));
        assert_eq!(
            parse("/provision 42 basic"),
            Ok(Command::Provision {
                user: user(42),
                plan: "basic".into()
            })
        );
        assert_eq!(
            parse("/renew 42 30"),
            Ok(Command::Renew {
                user: user(42),
                term: Term::Days(30)
            })
        );
        assert_eq!(
            parse("/renew 42 pro"),
            Ok(Command::Renew {
                user: user(42),
                term: Term::Plan("pro".into())
            })
        );
        assert_eq!(parse("/expire 7"), Ok(Command::Expire { user: user(7) }));
        assert_eq!(
            parse("/failed send_dm"),
            Ok(Command::Failed {
                kind: Some("send_dm".into()),
                page: None
            })
        );
        assert_eq!(
            parse("/retry #12"),
            Ok(Command::Retry { job: "#12".into() })
        );
        assert_eq!(
            parse("/admins add 9"),
            Ok(Command::AdminsAdd { user: user(9) })
        );
        assert_eq!(parse("/admins"), Ok(Command::AdminsList));
    }

    #[test]
    fn bad_input_says_what_is_wrong_and_how_to_write_it() {
        let reply = |text: &str| parse(text).unwrap_err().reply();
        assert!(reply("/provision 42").contains("Usage: /provision USER_ID PLAN"));
        assert!(reply("/provision abc basic").contains("“abc” is not a user id"));
        assert!(reply("/provision -5 basic").contains("“-5” is not a user id"));
        assert!(reply("/renew 42 0").contains("0 days is not a term"));
        assert!(reply("/expire").contains("Usage: /expire USER_ID"));
        assert!(reply("/retry").contains("Usage: /retry JOB_ID"));
        assert!(reply("/admins promote 5").contains("Usage: /admins list"));
        assert!(reply("/frobnicate").contains("I don't know /frobnicate"));
        assert_eq!(parse("hello"), Err(ParseError::NotACommand));
    }

    #[test]
    fn admin_commands_are_recognised_before_their_arguments() {
        assert!(is_admin_command("/provision"));
        assert!(is_admin_command("/Stats@bot"));
        assert!(!is_admin_command("/buy"));
        assert!(parse("/stats").unwrap().is_admin_only());
        assert!(!parse("/status").unwrap().is_admin_only());
    }
}
