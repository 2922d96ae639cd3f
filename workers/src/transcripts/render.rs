//! The HTML of a transcript, rendered piece by piece (header, one page of messages at a time,
//! footer) so a long ticket never sits in memory whole.
//!
//! Everything that came from Discord (names, content, filenames, URLs) goes through
//! [`escape`]; attachment URLs become links only when they are `http(s)://`. The document also
//! carries its own Content-Security-Policy (no scripts, no outside loads), because an S3 server
//! serves it without ours.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::discord::{Attachment, ChannelInfo, Message};

/// What the header says about the ticket.
pub struct Header<'a> {
    pub guild: i64,
    pub channel: &'a ChannelInfo,
    pub generated_at: DateTime<Utc>,
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d1f23}\
header,footer{padding:16px 24px;background:#2b2d31;color:#f2f3f5}\
header h1{margin:0 0 4px;font-size:20px}header p,footer p{margin:0;color:#b5bac1}\
ol{list-style:none;margin:0;padding:8px 24px}\
li.msg{padding:8px 0;border-bottom:1px solid #e3e5e8}\
.who{font-weight:600}.handle,.when{color:#5c5e66;font-size:13px;margin-left:6px}\
.content{white-space:pre-wrap;overflow-wrap:anywhere;margin-top:2px}\
ul.files{margin:4px 0 0;padding-left:18px;font-size:14px}";

/// The document up to the first message.
pub fn header(out: &mut String, header: &Header<'_>) {
    let name = header.channel.name.as_deref().unwrap_or("ticket");
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">",
    );
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    out.push_str("<meta name=\"referrer\" content=\"no-referrer\"><title>Transcript of #");
    escape(out, name);
    let _ = write!(
        out,
        "</title><style>{STYLE}</style></head><body><header><h1>#"
    );
    escape(out, name);
    let _ = writeln!(
        out,
        "</h1><p>Ticket transcript · guild {} · channel {} · generated {}</p></header>\
         <main><ol>",
        header.guild,
        header.channel.id,
        utc(header.generated_at)
    );
}

/// One message: author, time, content (line breaks kept), attachments.
pub fn message(out: &mut String, message: &Message) {
    out.push_str("<li class=\"msg\"><span class=\"who\">");
    escape(out, message.author.display_name());
    out.push_str("</span><span class=\"handle\">@");
    escape(out, &message.author.username);
    out.push_str("</span><time class=\"when\"");
    match DateTime::parse_from_rfc3339(&message.timestamp) {
        Ok(at) => {
            let at = at.with_timezone(&Utc);
            let _ = write!(
                out,
                " datetime=\"{}\">{}",
                at.format("%Y-%m-%dT%H:%M:%SZ"),
                utc(at)
            );
        }
        Err(_) => {
            out.push('>');
            escape(out, &message.timestamp);
        }
    }
    out.push_str("</time>");
    if !message.content.is_empty() {
        out.push_str("<div class=\"content\">");
        escape(out, &message.content);
        out.push_str("</div>");
    }
    if !message.attachments.is_empty() {
        out.push_str("<ul class=\"files\">");
        for attachment in &message.attachments {
            self::attachment(out, attachment);
        }
        out.push_str("</ul>");
    }
    out.push_str("</li>\n");
}

/// A link only to an `http(s)://` URL (never `javascript:` or `data:`); the name always shown.
fn attachment(out: &mut String, attachment: &Attachment) {
    out.push_str("<li>");
    match safe_link(&attachment.url) {
        Some(url) => {
            out.push_str("<a href=\"");
            escape(out, &url);
            out.push_str("\" rel=\"noopener noreferrer nofollow\">");
            escape(out, &attachment.filename);
            out.push_str("</a>");
        }
        None => escape(out, &attachment.filename),
    }
    let _ = write!(out, " ({})</li>", size(attachment.size));
}

/// The end of the document.
pub fn footer(out: &mut String, messages: u64) {
    let _ = writeln!(
        out,
        "</ol></main><footer><p>{messages} message{}</p></footer></body></html>",
        if messages == 1 { "" } else { "s" }
    );
}

/// The URL, normalised, if it is an absolute `http://` or `https://` one.
pub fn safe_link(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url.trim()).ok()?;
    matches!(parsed.scheme(), "http" | "https")
        .then(|| parsed.has_host())
        .filter(|has| *has)
        .map(|_| parsed.to_string())
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
        out.push_str(&rest[..i]);
        out.push_str(match rest.as_bytes()[i] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        });
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
}

fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcripts::discord::Author;

    fn author(name: &str) -> Author {
        Author {
            id: 7,
            username: name.to_string(),
            global_name: None,
        }
    }

    fn msg(author_name: &str, content: &str, attachments: Vec<Attachment>) -> Message {
        Message {
            id: 1,
            author: author(author_name),
            content: content.to_string(),
            timestamp: "2026-11-22T10:03:04.123000+00:00".to_string(),
            attachments,
        }
    }

    fn file(filename: &str, url: &str, size: u64) -> Attachment {
        Attachment {
            filename: filename.to_string(),
            url: url.to_string(),
            size,
        }
    }

    fn document(messages: &[Message]) -> String {
        let channel = ChannelInfo {
            id: 42,
            name: Some("ticket-<b>7</b>".to_string()),
            guild_id: Some(1),
        };
        let mut out = String::new();
        header(
            &mut out,
            &Header {
                guild: 1,
                channel: &channel,
                generated_at: DateTime::from_timestamp(1_795_000_000, 0).expect("time"),
            },
        );
        for m in messages {
            message(&mut out, m);
        }
        footer(&mut out, messages.len() as u64);
        out
    }

    #[test]
    fn escape_covers_the_five_characters() {
        let mut out = String::new();
        escape(&mut out, r#"a<b>&"c"'d'é"#);
        assert_eq!(out, "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;é");
    }

    #[test]
    fn messages_show_author_utc_time_content_with_line_breaks_and_attachments() {
        let html = document(&[msg(
            "alice",
            "first line\nsecond line",
            vec![file("log.txt", "https://cdn.example.com/a/log.txt", 1536)],
        )]);
        assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
        assert!(html.contains("<span class=\"who\">alice</span>"), "{html}");
        assert!(html.contains("2026-11-22 10:03:04 UTC"), "{html}");
        assert!(html.contains("first line\nsecond line"), "{html}");
        assert!(html.contains("white-space:pre-wrap"), "line breaks kept");
        assert!(
            html.contains("<a href=\"https://cdn.example.com/a/log.txt\" rel=\"noopener noreferrer nofollow\">log.txt</a> (1.5 KiB)"),
            "{html}"
        );
        assert!(html.contains("1 message</p>"), "{html}");
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn injection_is_escaped_everywhere_and_only_http_links_are_made() {
        let attack = "<script>alert(1)</script>";
        let mut m = msg(
            attack,
            &format!("hi {attack} <img src=x onerror=alert(2)>"),
            vec![
                file(attack, "javascript:alert(3)", 10),
                file(
                    "\"><script>x</script>.png",
                    "https://cdn.example.com/\"onmouseover=\"alert(4)",
                    10,
                ),
                file("data.html", "data:text/html,<script>alert(5)</script>", 10),
            ],
        );
        m.author.global_name = Some(format!("Eve {attack}"));
        let html = document(&[m]);
        // Our only <script>-free document: no tag from the input survives.
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("href=\"data:"), "{html}");
        assert!(!html.contains("\"onmouseover"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("Eve &lt;script&gt;"), "{html}");
        assert!(html.contains("#ticket-&lt;b&gt;7&lt;/b&gt;"), "{html}");
        // Exactly one link: the https attachment, its quote percent-encoded.
        assert_eq!(html.matches("<a href=").count(), 1, "{html}");
        assert!(
            html.contains("href=\"https://cdn.example.com/%22onmouseover=%22alert(4)\""),
            "{html}"
        );
        assert!(html.contains("Content-Security-Policy"), "{html}");
    }

    #[test]
    fn safe_links_are_http_and_https_only() {
        assert_eq!(
            safe_link("https://a.example/x").as_deref(),
            Some("https://a.example/x")
        );
        assert_eq!(
            safe_link("http://a.example/").as_deref(),
            Some("http://a.example/")
        );
        for bad in [
            "javascript:alert(1)",
            " JavaScript:alert(1)",
            "data:x",
            "//a.example",
            "ftp://a",
            "file:///etc/passwd",
            "",
        ] {
            assert_eq!(safe_link(bad), None, "{bad}");
        }
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(5 * 1024 * 1024 + 300_000), "5.3 MiB");
    }

    #[test]
    fn an_unparsable_timestamp_is_shown_escaped() {
        let mut m = msg("bob", "x", Vec::new());
        m.timestamp = "<yesterday>".to_string();
        let html = document(&[m]);
        assert!(
            html.contains("<time class=\"when\">&lt;yesterday&gt;</time>"),
            "{html}"
        );
    }
}
