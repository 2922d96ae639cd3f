//! `upload_transcript` end to end: a real `jobq worker` reads a ticket channel from the fake
//! Discord over HTTP, stores the transcript on the local store or on moto's S3 server (a real
//! S3 implementation we did not write; scripts/test installs it), and enqueues one keyed DM
//! with a link that works: fetched from moto (presigned) or from a real `jobq web` (signed,
//! expiring; tampered and expired links refused). A second run changes nothing. Also: HTML
//! injection escaped, Discord errors classified, incomplete S3 settings stopping the worker,
//! the worker's peak memory while uploading a 100 MiB transcript, and no secret in any log.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use fakes::discord::{FakeDiscord, Fault, FaultRule, Route, SeedAuthor, SeedMessage};
use jobs::secret_key::SecretKey;
use jobs::{JobState, Queue};
use support::*;

on_both_backends!(
    a_transcript_lands_once_on_the_local_store_and_jobq_web_serves_its_link,
    a_transcript_lands_once_on_s3_and_its_presigned_link_works,
);

const DISCORD_TOKEN: &str = "discordBotToken.ForTranscriptTests.7fK2pQ";
const S3_ACCESS: &str = "AKIATRANSCRIPTTEST01";
const S3_SECRET: &str = "s3SecretThatMustNeverBeLogged/0123456789abcd";
const SECRET_KEY: &str = "8b80c83618b2e287707c6d8789cc006804f0e9e6cf14a0eb0ee49eded38cf073";
const ADMIN_TOKEN: &str = "adminTokenForTranscriptTests0001";
const SECRETS: [&str; 4] = [DISCORD_TOKEN, S3_SECRET, SECRET_KEY, ADMIN_TOKEN];
const GUILD: u64 = 1_100_000_000_000_000_001;
const CHANNEL: u64 = 1_300_000_000_000_000_042;
const OWNER: u64 = 1_200_000_000_000_000_007;
const BUCKET: &str = "transcripts-test";
const S3_ENV: [(&str, &str); 2] = [
    ("JOBQ_TEST_S3_ACCESS", S3_ACCESS),
    ("JOBQ_TEST_S3_SECRET", S3_SECRET),
];

async fn fake_discord() -> FakeDiscord {
    FakeDiscord::start(DISCORD_TOKEN)
        .await
        .expect("fake discord")
}

fn payload(channel: u64) -> String {
    format!(
        r#"{{"guild":{GUILD},"channel":{channel},"owner":{{"platform":"discord","id":{OWNER}}}}}"#
    )
}

/// A ticket with a multi-line message, HTML injection in a display name, in content and in an
/// attachment (with a `javascript:` URL), a real attachment link, and 250 more messages so the
/// history takes three pages.
fn seed(fake: &FakeDiscord) {
    fake.set_channel(CHANNEL, "ticket-42", Some(GUILD));
    let alice = SeedAuthor::new(11, "alice");
    let mut eve = SeedAuthor::new(12, "eve");
    eve.global_name = Some("<script>alert('name')</script>".into());
    let t0 = Utc
        .with_ymd_and_hms(2026, 11, 20, 9, 0, 0)
        .single()
        .expect("time");
    fake.seed_history(
        CHANNEL,
        [
            SeedMessage::new(
                alice.clone(),
                "Hello, my order #17 did not arrive.\nCan you check?",
                t0,
            ),
            SeedMessage::new(
                eve,
                "<script>alert('content')</script> <img src=x onerror=alert(1)>",
                t0 + chrono::Duration::minutes(1),
            )
            .attachment(1, "<script>x</script>.png", "javascript:alert('file')", 10)
            .attachment(2, "log.txt", "https://cdn.example.com/log.txt", 2048),
        ],
    );
    fake.seed_many(CHANNEL, 250, &[alice]);
}

/// The transcript of [`seed`]: everything there, oldest first, nothing executable.
fn assert_transcript(html: &str) {
    assert!(
        html.starts_with("<!DOCTYPE html>"),
        "{}",
        &html[..200.min(html.len())]
    );
    assert!(html.contains("#ticket-42"), "channel name in the header");
    assert!(html.contains(&GUILD.to_string()) && html.contains(&CHANNEL.to_string()));
    assert!(html.contains("Hello, my order #17 did not arrive.\nCan you check?"));
    assert!(html.contains("2026-11-20 09:00:00 UTC"), "UTC times");
    let first = html.find("Hello, my order").expect("first message");
    let m1 = html.find(">message 1<").expect("message 1");
    let m250 = html.find(">message 250<").expect("message 250");
    assert!(first < m1 && m1 < m250, "oldest first");
    assert!(html.contains("252 messages"), "every page read");
    assert!(!html.contains("<script"), "no script tag survives");
    assert!(!html.contains("<img"), "no img tag survives");
    assert!(!html.contains("javascript:"), "no javascript: URL");
    assert!(html.contains("&lt;script&gt;alert(&#39;content&#39;)&lt;/script&gt;"));
    assert!(html.contains("&lt;script&gt;alert(&#39;name&#39;)&lt;/script&gt;"));
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;.png (10 B)"));
    assert!(html.contains(
        "<a href=\"https://cdn.example.com/log.txt\" rel=\"noopener noreferrer nofollow\">log.txt</a> (2.0 KiB)"
    ));
}

fn config(fake: &FakeDiscord, transcripts: &str) -> String {
    format!(
        "[discord]\napi_url = \"{}\"\n\n[transcripts]\nlink_ttl = \"1h\"\n{transcripts}\n",
        fake.url()
    )
}

fn local_settings(dir: &Path, web_port: u16) -> String {
    format!(
        "store = \"local\"\nlocal_dir = \"{}\"\npublic_base_url = \"http://127.0.0.1:{web_port}\"\n",
        path_str(dir)
    )
}

fn s3_settings(moto: &Moto) -> String {
    format!(
        "store = \"s3\"\ns3_endpoint = \"{}\"\ns3_bucket = \"{BUCKET}\"\ns3_region = \"us-east-1\"\n\
         s3_access_key_env = \"JOBQ_TEST_S3_ACCESS\"\ns3_secret_key_env = \"JOBQ_TEST_S3_SECRET\"\n",
        moto.url
    )
}

/// `jobq ARGS` with every secret in its environment, to start.
fn with_secrets(db: &TestDb, args: &[&str]) -> Spawn {
    db.spawn(args)
        .env("JOBQ_DISCORD_TOKEN", DISCORD_TOKEN)
        .env("JOBQ_SECRET_KEY", SECRET_KEY)
        .env("JOBQ_ADMIN_TOKEN", ADMIN_TOKEN)
        .envs(S3_ENV)
}

/// A worker of the transcripts queue, logging at debug.
fn spawn_worker(db: &TestDb) -> Process {
    with_secrets(db, &["worker", "--queues", "transcripts"])
        .log_filter("debug")
        .start()
}

/// The one DM: keyed by the ticket, to the owner, with a link. Returns the link.
async fn the_dm_link(queue: &Queue) -> String {
    let dms = jobs_of(queue, "send_dm").await;
    assert_eq!(dms.len(), 1, "{dms:#?}");
    let dm = &dms[0];
    assert_eq!(
        dm.key.as_deref(),
        Some(format!("transcript_dm:{GUILD}:{CHANNEL}").as_str())
    );
    assert_eq!(dm.payload["user"]["id"], OWNER);
    assert_eq!(dm.payload["user"]["platform"], "discord");
    let text = dm.payload["text"].as_str().expect("text");
    let start = text.find("http").expect("a link in the DM");
    text[start..]
        .split_whitespace()
        .next()
        .expect("link")
        .to_string()
}

fn history_reads(fake: &FakeDiscord) -> usize {
    let path = format!("GET /api/v10/channels/{CHANNEL}/messages");
    fake.requests()
        .iter()
        .filter(|r| r.starts_with(&path))
        .count()
}

fn assert_no_secrets(logs: &[(&str, String)]) {
    for (name, text) in logs {
        assert!(
            !text.is_empty(),
            "{name} logged nothing: the check would be empty"
        );
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{name} log contains a secret:\n{text}"
            );
        }
    }
}

async fn get(url: &str) -> reqwest::Response {
    reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

// ---------------------------------------------------------------------------------------------

async fn a_transcript_lands_once_on_the_local_store_and_jobq_web_serves_its_link(backend: Backend) {
    let fake = fake_discord().await;
    seed(&fake);
    let store = tempfile::tempdir().expect("store dir");
    let web_port = free_port();
    let extra = config(&fake, &local_settings(store.path(), web_port));
    let db = TestDb::with_config(backend, &extra).await;
    let queue = db.queue().await;
    let worker = spawn_worker(&db);

    let id = db.enqueue("upload_transcript", &payload(CHANNEL), &[]);
    db.wait_job(&queue, id, secs(60), &[&worker], is(JobState::Completed))
        .await;
    let file = store.path().join(format!("{GUILD}/{CHANNEL}.html"));
    let html = std::fs::read_to_string(&file).expect("the transcript file");
    assert_transcript(&html);
    let link = the_dm_link(&queue).await;
    let prefix = format!("http://127.0.0.1:{web_port}/transcripts/{GUILD}/{CHANNEL}.html?expires=");
    assert!(link.starts_with(&prefix), "{link}");

    // A second run reads nothing, writes nothing and sends no second DM.
    let modified = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let reads = history_reads(&fake);
    let again = db.enqueue("upload_transcript", &payload(CHANNEL), &["--key", "rerun"]);
    db.wait_job(&queue, again, secs(60), &[&worker], is(JobState::Completed))
        .await;
    assert_eq!(std::fs::read_to_string(&file).expect("file"), html);
    assert_eq!(
        std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .expect("mtime"),
        modified
    );
    assert_eq!(history_reads(&fake), reads, "the history is not read again");
    assert_eq!(the_dm_link(&queue).await, link, "still the one DM");

    // The link works on a real `jobq web`; tampered, re-dated, expired and traversing ones don't.
    let bind = format!("127.0.0.1:{web_port}");
    let web = with_secrets(&db, &["web", "--bind", &bind]).start();
    let health = format!("http://127.0.0.1:{web_port}/healthz");
    eventually(Duration::from_secs(20), "jobq web to answer", || async {
        reqwest::get(&health).await.ok().map(|_| ())
    })
    .await;
    let response = get(&link).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().expect("csp");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("sandbox"),
        "{csp}"
    );
    assert_eq!(response.text().await.expect("body"), html);

    let expires: i64 = link[prefix.len()..]
        .split('&')
        .next()
        .and_then(|e| e.parse().ok())
        .expect("expires");
    let sig = link.rsplit("sig=").next().expect("sig").to_string();
    let flipped = format!(
        "{}{}",
        &sig[..63],
        if sig.ends_with('0') { '1' } else { '0' }
    );
    let base = format!("http://127.0.0.1:{web_port}/transcripts/{GUILD}/{CHANNEL}.html");
    let key = SecretKey::parse(SECRET_KEY).expect("key");
    let past = Utc::now().timestamp() - 10;
    let expired_sig = hex(&key.transcript_link_mac(&format!("{GUILD}/{CHANNEL}.html"), past));
    let refused = [
        format!("{base}?expires={expires}&sig={flipped}"),
        format!("{base}?expires={}&sig={sig}", expires + 3600),
        format!("{base}?expires={past}&sig={expired_sig}"),
        base.clone(),
    ];
    for url in &refused {
        let response = get(url).await;
        assert_eq!(response.status(), 403, "{url}");
        assert!(!response.text().await.expect("body").contains("ticket-42"));
    }
    for path in [
        format!("/transcripts/..%2F..%2Fjobq.toml?expires={expires}&sig={sig}"),
        format!("/transcripts/{GUILD}/..%2F{CHANNEL}.html?expires={expires}&sig={sig}"),
    ] {
        let response = get(&format!("http://127.0.0.1:{web_port}{path}")).await;
        assert_eq!(response.status(), 404, "{path}");
    }

    assert_no_secrets(&[("worker", worker.log_text()), ("web", web.log_text())]);
}

async fn a_transcript_lands_once_on_s3_and_its_presigned_link_works(backend: Backend) {
    let fake = fake_discord().await;
    seed(&fake);
    let moto = Moto::start().await;
    let db = TestDb::with_config(backend, &config(&fake, &s3_settings(&moto))).await;
    let queue = db.queue().await;
    let worker = spawn_worker(&db);

    let id = db.enqueue("upload_transcript", &payload(CHANNEL), &[]);
    db.wait_job(&queue, id, secs(60), &[&worker], is(JobState::Completed))
        .await;
    let key = format!("transcripts/{GUILD}/{CHANNEL}.html");
    let link = the_dm_link(&queue).await;
    assert!(
        link.starts_with(&format!("{}/{BUCKET}/{key}?", moto.url)),
        "{link}"
    );
    assert!(link.contains("X-Amz-Expires=3600"), "{link}");
    assert!(link.contains("X-Amz-Signature="), "{link}");
    assert!(!link.contains(S3_SECRET));
    // The presigned link opens the transcript; unsigned, moto refuses the read.
    let object = fetch(&link).await;
    let html = String::from_utf8(object.body.clone()).expect("utf-8");
    assert_transcript(&html);
    assert_eq!(object.content_type, "text/html; charset=utf-8");
    let unsigned = get(&format!("{}/{BUCKET}/{key}", moto.url)).await;
    assert_eq!(unsigned.status(), 403);
    // (moto checks that a request is signed, not the signature itself: a tampered presigned
    // URL still reads there, so its refusal is only tested on our own local links.)

    // A second run: the object is untouched (same ETag and time), no second DM.
    let reads = history_reads(&fake);
    let again = db.enqueue("upload_transcript", &payload(CHANNEL), &["--key", "rerun"]);
    db.wait_job(&queue, again, secs(60), &[&worker], is(JobState::Completed))
        .await;
    let after = fetch(&link).await;
    assert_eq!(after.etag, object.etag);
    assert_eq!(after.last_modified, object.last_modified);
    assert_eq!(after.body, object.body);
    assert_eq!(history_reads(&fake), reads, "the history is not read again");
    assert_eq!(the_dm_link(&queue).await, link, "still the one DM");

    assert_no_secrets(&[("worker", worker.log_text())]);
}

/// A channel Discord does not know fails at once, naming it; a 429 snoozes the job (no attempt
/// spent) no sooner than it says, then the job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_errors_are_classified() {
    let fake = fake_discord().await;
    seed(&fake);
    let store = tempfile::tempdir().expect("store dir");
    let extra = config(&fake, &local_settings(store.path(), free_port()));
    let db = TestDb::with_config(Backend::Sqlite, &extra).await;
    let queue = db.queue().await;
    let worker = spawn_worker(&db);

    let unknown = db.enqueue("upload_transcript", &payload(999), &[]);
    let job = db
        .wait_job(&queue, unknown, secs(30), &[&worker], is(JobState::Failed))
        .await;
    let error = job.last_error.unwrap_or_default();
    assert!(
        error.contains("channel 999") && error.contains("404"),
        "{error}"
    );
    assert_eq!(job.attempts, 1, "permanent: not retried");

    fake.inject(
        FaultRule::new(Fault::RateLimited {
            retry_after: 3.0,
            global: false,
        })
        .on(Route::History)
        .channel(CHANNEL),
    );
    let started = Instant::now();
    let id = db.enqueue("upload_transcript", &payload(CHANNEL), &[]);
    // Snoozed: the attempt given back, nothing recorded as a failure.
    let job = db
        .wait_job(
            &queue,
            id,
            secs(30),
            &[&worker],
            want("snoozed once", |job| {
                job.state == JobState::Scheduled && job.snoozes == 1
            }),
        )
        .await;
    assert_eq!(job.attempts, 0, "a 429 spends no attempt: {job:#?}");
    assert!(job.errors.is_empty(), "a 429 is no failure: {job:#?}");
    let wait = job.run_at - Utc::now();
    assert!(
        wait > chrono::Duration::milliseconds(2000),
        "retry at least ~3 s later: {wait}"
    );
    db.wait_job(&queue, id, secs(30), &[&worker], is(JobState::Completed))
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_no_secrets(&[("worker", worker.log_text())]);
}

/// `store = "s3"` without a bucket, or without the key variables, stops the worker with a
/// message naming what is missing: never a silent fallback to local files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incomplete_s3_settings_stop_the_worker_naming_what_is_missing() {
    let fake = fake_discord().await;
    let no_bucket = config(
        &fake,
        "store = \"s3\"\ns3_endpoint = \"http://127.0.0.1:9\"\n\
         s3_access_key_env = \"JOBQ_TEST_S3_ACCESS\"\ns3_secret_key_env = \"JOBQ_TEST_S3_SECRET\"\n",
    );
    let db = TestDb::unmigrated(Backend::Sqlite, &no_bucket).await;
    let out = db
        .command(&["worker"])
        .envs(S3_ENV)
        .output()
        .expect("run jobq");
    assert!(!out.status.success(), "started without a bucket");
    let err = stderr(&out);
    assert!(
        err.contains("transcripts.s3_bucket") && err.contains("missing"),
        "{err}"
    );

    let moto_less = "store = \"s3\"\ns3_endpoint = \"http://127.0.0.1:9\"\ns3_bucket = \"b\"\n\
                     s3_access_key_env = \"JOBQ_TEST_S3_ACCESS\"\ns3_secret_key_env = \"JOBQ_TEST_S3_SECRET\"\n";
    let db = TestDb::with_config(Backend::Sqlite, &config(&fake, moto_less)).await;
    let out = db
        .command(&["worker"])
        .env("JOBQ_TEST_S3_ACCESS", S3_ACCESS)
        .output()
        .expect("run jobq");
    assert!(
        !out.status.success(),
        "started without the secret key variable"
    );
    let err = stderr(&out);
    assert!(
        err.contains("transcripts.s3_secret_key_env") && err.contains("JOBQ_TEST_S3_SECRET"),
        "{err}"
    );
    assert!(
        !err.contains("transcripts.s3_access_key_env"),
        "that one is set: {err}"
    );
    assert!(!err.contains(S3_ACCESS), "{err}");
}

/// A transcript of about 100 MiB (52,000 messages of 2,000 characters) goes to S3 in parts
/// while the worker's peak resident memory (VmHWM of the real `jobq worker` process, read from
/// /proc after the upload) stays under 100 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_transcript_uploads_with_peak_memory_under_100_mib() {
    const MESSAGES: usize = 52_000;
    const MIB: u64 = 1024 * 1024;
    let fake = fake_discord().await;
    fake.set_channel(CHANNEL, "ticket-big", Some(GUILD));
    let line: String = ('a'..='z').cycle().take(99).collect::<String>() + "\n";
    let content = line.repeat(20);
    let author = SeedAuthor::new(11, "alice");
    let t0 = Utc::now() - chrono::Duration::days(1);
    fake.seed_history(
        CHANNEL,
        (0..MESSAGES).map(|i| {
            SeedMessage::new(
                author.clone(),
                &content,
                t0 + chrono::Duration::milliseconds(i as i64),
            )
        }),
    );
    let moto = Moto::start().await;
    let db = TestDb::with_config(Backend::Sqlite, &config(&fake, &s3_settings(&moto))).await;
    let queue = db.queue().await;
    let worker = with_secrets(&db, &["worker", "--queues", "transcripts"]).start();

    let id = db.enqueue("upload_transcript", &payload(CHANNEL), &[]);
    db.wait_job(&queue, id, secs(280), &[&worker], is(JobState::Completed))
        .await;
    let peak_kib = vm_hwm_kib(worker.pid());
    let size = size_of(&the_dm_link(&queue).await).await;
    eprintln!(
        "100 MiB test: object {:.1} MiB, worker peak RSS (VmHWM) {:.1} MiB",
        size as f64 / MIB as f64,
        peak_kib as f64 / 1024.0
    );
    assert!(size >= 100 * MIB, "the transcript is {size} bytes");
    assert!(peak_kib < 100 * 1024, "worker peak memory {peak_kib} KiB");
    assert_no_secrets(&[("worker", worker.log_text())]);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// moto

/// moto's S3 server on a free port, with [`BUCKET`]; killed when dropped.
struct Moto {
    child: Child,
    url: String,
}

struct S3Object {
    body: Vec<u8>,
    etag: String,
    last_modified: String,
    content_type: String,
}

/// Where moto_server is: `JOBQ_TEST_MOTO` (scripts/test sets it), `.venv-moto/`, or `PATH`.
/// Missing, the test fails saying how to install it: the S3 tests never skip.
fn moto_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("JOBQ_TEST_MOTO")
        .map(PathBuf::from)
        .into_iter()
        .chain([Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-moto/bin/moto_server")])
        .chain(std::env::split_paths(&path).map(|dir| dir.join("moto_server")));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the S3 tests need moto's S3 server and none was found: run scripts/test (it installs \
         moto into .venv-moto/), or `python3 -m venv .venv-moto && .venv-moto/bin/pip install \
         'moto[server]'`, or set JOBQ_TEST_MOTO=/path/to/moto_server"
    );
}

impl Moto {
    async fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let url = moto.url.clone();
        eventually(Duration::from_secs(30), "moto to answer", || {
            let url = url.clone();
            async move { reqwest::get(&url).await.ok().map(|_| ()) }
        })
        .await;
        let created = reqwest::Client::new()
            .put(format!("{}/{BUCKET}", moto.url))
            .send()
            .await
            .expect("create the bucket");
        assert!(created.status().is_success(), "{}", created.status());
        moto
    }
}

/// The object behind a presigned GET link.
async fn fetch(link: &str) -> S3Object {
    let response = get(link).await;
    assert_eq!(response.status(), 200, "{link}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (etag, last_modified, content_type) = (
        header("etag"),
        header("last-modified"),
        header("content-type"),
    );
    let body = response.bytes().await.expect("body").to_vec();
    S3Object {
        body,
        etag,
        last_modified,
        content_type,
    }
}

/// The object's size, from a one-byte ranged GET through its presigned link.
async fn size_of(link: &str) -> u64 {
    let response = reqwest::Client::new()
        .get(link)
        .header("range", "bytes=0-0")
        .send()
        .await
        .expect("ranged GET");
    assert_eq!(response.status(), 206, "{link}");
    response
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('/').next())
        .and_then(|v| v.parse().ok())
        .expect("content-range with the total size")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
