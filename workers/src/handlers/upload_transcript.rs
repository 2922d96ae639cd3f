//! `upload_transcript`: a closed ticket channel's history → one HTML transcript in the object
//! store under a key derived from the ticket (`<guild>/<channel>.html`) → a DM to the owner
//! with a link (presigned on S3, signed by us on the local store), keyed
//! `transcript_dm:<guild>:<channel>` so it is sent once.
//!
//! Idempotent: an object already at the key means an earlier attempt stored it; the history is
//! not read again and nothing is written. Transcripts that fit one part are written with a
//! create-if-absent put. The remaining race: two attempts of the same job running at once
//! (a lease rescued while the first is still uploading a transcript longer than one part) can
//! both find the key free and both complete a multipart upload; the later one replaces the
//! earlier with a transcript of the same channel. Neither is ever seen half-written, and the
//! keyed DM goes out once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use jobs::EnqueueOptions;
use jobs::kinds::{SendDm, UploadTranscript};
use object_store::path::Path;

use crate::handler::{Handler, JobContext, JobError};
use crate::transcripts::Transcripts;
use crate::transcripts::discord::DiscordError;
use crate::transcripts::render::{self, Header};
use crate::transcripts::store::{Link, StoreError, Stored, Upload};

pub struct UploadTranscriptHandler {
    transcripts: Option<Arc<Transcripts>>,
}

impl UploadTranscriptHandler {
    pub fn new(transcripts: Option<Arc<Transcripts>>) -> Self {
        UploadTranscriptHandler { transcripts }
    }
}

/// The key of the DM that hands out a ticket's transcript.
pub fn dm_key(job: &UploadTranscript) -> String {
    format!("transcript_dm:{}:{}", job.guild, job.channel)
}

#[async_trait]
impl Handler<UploadTranscript> for UploadTranscriptHandler {
    async fn handle(&self, job: UploadTranscript, ctx: &JobContext) -> Result<(), JobError> {
        let Some(t) = &self.transcripts else {
            return Err(JobError::permanent(
                "this worker has no transcript store ([transcripts] was not set up at start)",
            ));
        };
        let path = t.store.path_for(job.guild.get(), job.channel.get());
        if t.store.exists(&path).await.map_err(store_error)? {
            tracing::info!(key = %path, "transcript already stored: not written again");
        } else {
            match write(t, &job, &path).await? {
                Stored::Created => tracing::info!(key = %path, "transcript stored"),
                Stored::AlreadyThere => {
                    tracing::info!(key = %path, "transcript stored meanwhile by another attempt")
                }
            }
        }
        let link = t.store.link(&path, t.link_ttl).await.map_err(store_error)?;
        send_link(&job, ctx, &link).await
    }
}

/// Reads the channel page by page, rendering and uploading as it goes.
async fn write(t: &Transcripts, job: &UploadTranscript, path: &Path) -> Result<Stored, JobError> {
    let channel = job.channel.get();
    let info = t.discord.channel(channel).await.map_err(discord_error)?;
    if info.guild_id.is_some_and(|g| g != job.guild.get() as u64) {
        return Err(JobError::permanent(format!(
            "discord: channel {channel} is not in guild {}",
            job.guild
        )));
    }
    let mut upload = t.store.begin(path.clone()).await.map_err(store_error)?;
    let mut html = String::new();
    render::header(
        &mut html,
        &Header {
            guild: job.guild.get(),
            channel: &info,
            generated_at: Utc::now(),
        },
    );
    match stream_messages(t, channel, &mut upload, html).await {
        Ok(()) => upload.finish().await.map_err(store_error),
        Err(error) => {
            upload.abort().await;
            Err(error)
        }
    }
}

/// Every page after the header (already in `html`), then the footer.
async fn stream_messages(
    t: &Transcripts,
    channel: i64,
    upload: &mut Upload,
    mut html: String,
) -> Result<(), JobError> {
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let page = t
            .discord
            .page_after(channel, after)
            .await
            .map_err(discord_error)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        count += page.len() as u64;
        for message in &page {
            render::message(&mut html, message);
        }
        upload.write(html.as_bytes()).await.map_err(store_error)?;
        html.clear();
    }
    render::footer(&mut html, count);
    upload.write(html.as_bytes()).await.map_err(store_error)
}

/// The DM with the link, keyed: a second run finds the first DM's key and adds nothing.
async fn send_link(job: &UploadTranscript, ctx: &JobContext, link: &Link) -> Result<(), JobError> {
    let text = format!(
        "The transcript of your ticket is ready: {}\nThe link works until {} UTC.",
        link.url,
        link.expires.format("%Y-%m-%d %H:%M")
    );
    let dm = SendDm::new(job.owner, text).map_err(JobError::permanent)?;
    let options = EnqueueOptions {
        key: Some(dm_key(job)),
        ..EnqueueOptions::default()
    };
    let enqueued = ctx.queue.enqueue(&dm, options).await.map_err(|e| {
        if e.is_bad_data() {
            JobError::permanent(e)
        } else {
            JobError::retry(e)
        }
    })?;
    tracing::info!(
        dm_job = enqueued.id,
        created = enqueued.created,
        "transcript link DM"
    );
    Ok(())
}

fn discord_error(error: DiscordError) -> JobError {
    match error {
        // A 429 is "not now": snoozed, no attempt spent.
        DiscordError::RateLimited { after, reason } => JobError::Snooze { after, reason },
        DiscordError::Retryable(reason) => JobError::Retry(reason),
        DiscordError::Permanent(reason) => JobError::Permanent(reason),
    }
}

fn store_error(error: StoreError) -> JobError {
    match error {
        StoreError::Permanent(reason) => JobError::Permanent(reason),
        StoreError::Retryable(reason) => JobError::Retry(reason),
    }
}
