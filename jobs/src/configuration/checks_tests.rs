//! Tests of the checks: each problem names the setting, the value and what is allowed.

use std::path::PathBuf;

use super::*;
use crate::configuration::test_support::*;

#[test]
fn bad_panels_are_refused_naming_the_setting() {
    let case = |body: &str| load_err(Some(&config_file(body)), &[], &[]);
    let panel = |extra: &str| {
        format!(
            "[[panels]]\nname = \"main\"\nkind = \"s-ui\"\nurl = \"http://p.example/app/\"\n{extra}\n"
        )
    };

    let err = case(&panel("token_env = \"T\"").replace("s-ui", "x-ui"));
    assert!(err.contains("panels[0].kind"), "{err}");
    assert!(err.contains("x-ui"), "{err}");
    assert!(err.contains("s-ui"), "{err}");

    for bad in [
        "127.0.0.1:2095/app/",
        "ftp://p.example/",
        "not a url",
        "http://p.example/?a=1",
    ] {
        let err = case(&panel("token_env = \"T\"").replace("http://p.example/app/", bad));
        assert!(err.contains("panels[0].url"), "{bad}: {err}");
    }
    let err = case(&panel("token_env = \"T\"").replace(
        "http://p.example/app/",
        "http://admin:hunter2@p.example/app/",
    ));
    assert!(err.contains("panels[0].url"), "{err}");
    assert!(!err.contains("hunter2"), "the password leaked: {err}");

    let err = case(&panel(""));
    assert!(err.contains("panels[0]"), "{err}");
    assert!(err.contains("no credentials"), "{err}");
    let err = case(&panel(
        "token_env = \"T\"\nlogin_user_env = \"U\"\nlogin_password_env = \"P\"",
    ));
    assert!(err.contains("panels[0].token_env"), "{err}");
    assert!(err.contains("not both"), "{err}");
    let err = case(&panel("login_user_env = \"U\""));
    assert!(err.contains("panels[0].login_password_env"), "{err}");
    let err = case(&panel("token_env = \"my-token\""));
    assert!(err.contains("panels[0].token_env"), "{err}");
    let err = case(&panel("token_env = \"T\"\nconcurrency = 65"));
    assert!(
        err.contains("panels[0].concurrency = 65 is out of range: allowed 1 to 64"),
        "{err}"
    );
    let err = case(&panel("token_env = \"T\"\nconcurrency = 0"));
    assert!(err.contains("panels[0].concurrency"), "{err}");
    for rps in ["0", "-1", "0.0"] {
        let err = case(&panel(&format!(
            "token_env = \"T\"\nrequests_per_second = {rps}"
        )));
        assert!(
            err.contains("panels[0].requests_per_second"),
            "{rps}: {err}"
        );
    }
    let err = case(&panel("token_env = \"T\"\ntimeout = \"100ms\""));
    assert!(err.contains("panels[0].timeout"), "{err}");
    assert!(err.contains("allowed 1s to 10m"), "{err}");
    // A token written into the file by mistake is refused without being echoed.
    let err = case(&panel("token = \"s3cr3t-token-value\""));
    assert!(err.contains("token"), "{err}");
    assert!(!err.contains("s3cr3t"), "the token leaked: {err}");

    let twice = format!(
        "{}{}",
        panel("token_env = \"T\""),
        panel("token_env = \"T\"")
    );
    let err = case(&twice);
    assert!(err.contains("panels[1].name"), "{err}");
    assert!(err.contains("unique"), "{err}");
    let err = case(&panel("token_env = \"T\"").replace("\"main\"", "\"Main Panel\""));
    assert!(err.contains("panels[0].name"), "{err}");
}

#[test]
fn bad_plans_are_refused_naming_the_setting() {
    let case = |body: &str| load_err(Some(&config_file(body)), &[], &[]);
    let plan = |volume: &str, days: &str, inbounds: &str| {
        format!(
            "[[plans]]\nname = \"basic\"\nvolume_gb = {volume}\ndays = {days}\ninbounds = {inbounds}\n"
        )
    };
    let err = case(&plan("-1", "30", "[1]"));
    assert!(
        err.contains("plans[0].volume_gb = -1 is out of range"),
        "{err}"
    );
    let err = case(&plan("10", "0", "[1]"));
    assert!(
        err.contains("plans[0].days = 0 is out of range: allowed 1 to 3650"),
        "{err}"
    );
    let err = case(&plan("10", "3651", "[1]"));
    assert!(err.contains("plans[0].days"), "{err}");
    let err = case(&plan("10", "30", "[]"));
    assert!(err.contains("plans[0].inbounds"), "{err}");
    assert!(err.contains("empty"), "{err}");
    let err = case(&plan("10", "30", "[1, 0, -2, 1]"));
    assert!(err.contains("plans[0].inbounds[1] = 0"), "{err}");
    assert!(err.contains("plans[0].inbounds[2] = -2"), "{err}");
    assert!(
        err.contains("plans[0].inbounds[3] = 1 is listed twice"),
        "{err}"
    );
    let err = case(&format!(
        "{}{}",
        plan("1", "1", "[1]"),
        plan("2", "2", "[2]")
    ));
    assert!(err.contains("plans[1].name"), "{err}");
    let err = case("[[plans]]\nname = \"basic\"\ndays = 30\ninbounds = [1]\n");
    assert!(err.contains("plans[0].volume_gb"), "{err}");
    assert!(err.contains("missing"), "{err}");
    // Zero volume is unlimited, not an error.
    let s = load(Some(&config_file(&plan("0", "30", "[7]"))), &[], &[]).expect("unlimited");
    assert_eq!(s.plans[0].volume_bytes(), 0);
}

#[test]
fn out_of_range_names_setting_value_origin_and_range() {
    let file = config_file("[worker]\nconcurrency = 0\n");
    let err = load_err(Some(&file), &[], &[]);
    assert!(
        err.contains("worker.concurrency = 0 is out of range: allowed 1 to 10000"),
        "{err}"
    );
    assert!(err.contains(&file.path().display().to_string()), "{err}");

    let err = load_err(None, &[("JOBQ_WORKER_LEASE", "2h")], &[]);
    assert!(
        err.contains("worker.lease = \"2h\" is out of range: allowed 1s to 1h"),
        "{err}"
    );
    assert!(err.contains("JOBQ_WORKER_LEASE"), "{err}");

    let err = load_err(None, &[], &[("database.max_connections", "5000")]);
    assert!(
        err.contains("database.max_connections = 5000 is out of range: allowed 1 to 1000"),
        "{err}"
    );
    assert!(err.contains("command-line override"), "{err}");

    let err = load_err(None, &[], &[("worker.concurrency", "-1")]);
    assert!(err.contains("worker.concurrency = -1"), "{err}");
    assert!(err.contains("allowed 1 to 10000"), "{err}");
}

#[test]
fn several_problems_are_all_reported() {
    let file = config_file("[worker]\nconcurrency = 0\npoll_interval = \"1ms\"\n");
    let err = load(Some(&file), &[], &[]).expect_err("invalid");
    assert_eq!(err.problems().len(), 2, "{err}");
    let text = err.to_string();
    assert!(text.contains("worker.concurrency"), "{text}");
    assert!(text.contains("worker.poll_interval"), "{text}");
}

#[test]
fn duplicate_periodic_names_rejected() {
    let file = config_file(
        r#"
        [[periodic]]
        name = "sync-main"
        kind = "sync_usage"
        every = "10m"

        [[periodic]]
        name = "sync-main"
        kind = "sync_usage"
        every = "1h"
        "#,
    );
    let err = load_err(Some(&file), &[], &[]);
    assert!(err.contains("periodic[1].name = \"sync-main\""), "{err}");
    assert!(err.contains("unique"), "{err}");
}

#[test]
fn periodic_entries_checked() {
    let file = config_file(
        r#"
        [[periodic]]
        name = "Bad Name"
        kind = ""
        every = "500ms"
        queue = "UPPER"
        priority = 500

        [[periodic]]
        name = "no-kind"
        every = "1m"
        "#,
    );
    let err = load_err(Some(&file), &[], &[]);
    assert!(err.contains("periodic[1].kind is missing"), "{err}");

    let file = config_file(
        r#"
        [[periodic]]
        name = "Bad Name"
        kind = ""
        every = "500ms"
        queue = "UPPER"
        priority = 500
        "#,
    );
    let err = load(Some(&file), &[], &[]).expect_err("invalid");
    assert_eq!(err.problems().len(), 5, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("periodic[0].every = \"500ms\" is out of range"),
        "{text}"
    );
    assert!(
        text.contains("periodic[0].priority = 500 is out of range: allowed -100 to 100"),
        "{text}"
    );
}

#[test]
fn stats_retention_at_least_a_day() {
    let err = load_err(None, &[], &[("maintenance.stats_retention", "12h")]);
    assert!(
        err.contains("maintenance.stats_retention = \"12h\" is out of range: allowed 24h"),
        "{err}"
    );
    let s = load(None, &[], &[("maintenance.stats_retention", "24h")]).expect("24h is fine");
    assert_eq!(s.maintenance.stats_retention, Duration::from_secs(86_400));
}

#[test]
fn heartbeat_shorter_than_lease() {
    let err = load_err(None, &[], &[("worker.heartbeat_interval", "30s")]);
    assert!(err.contains("worker.heartbeat_interval"), "{err}");
    assert!(err.contains("worker.lease"), "{err}");
}

#[test]
fn bad_queue_names_rejected() {
    let err = load_err(None, &[("JOBQ_WORKER_QUEUES", "default,Panel")], &[]);
    assert!(err.contains("worker.queues[1] = \"Panel\""), "{err}");
    let file = config_file("[queues.\"pa nel\"]\nconcurrency = 2\n");
    let err = load_err(Some(&file), &[], &[]);
    assert!(
        err.contains("queues.pa nel is not a valid queue name"),
        "{err}"
    );
}

#[test]
fn transcripts_default_to_the_local_store_and_s3_must_be_complete() {
    let s = load(None, &[], &[]).expect("defaults");
    assert_eq!(s.transcripts.store, TranscriptStoreKind::Local);
    assert_eq!(s.transcripts.local_dir, PathBuf::from("data/transcripts"));
    assert_eq!(s.transcripts.link_ttl, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(s.transcript_base_url(), "http://127.0.0.1:8080");

    // Never a silent fallback to local files: each missing S3 setting is named.
    let err = load_err(None, &[("JOBQ_TRANSCRIPTS_STORE", "s3")], &[]);
    for missing in [
        "transcripts.s3_bucket",
        "transcripts.s3_access_key_env",
        "transcripts.s3_secret_key_env",
    ] {
        assert!(err.contains(missing), "{missing}: {err}");
    }
    let file = config_file(
        "[transcripts]\nstore = \"s3\"\ns3_bucket = \"b\"\ns3_endpoint = \"ftp://x\"\n\
         s3_access_key_env = \"lower\"\ns3_secret_key_env = \"S3_SECRET\"\nlink_ttl = \"8d\"\n",
    );
    let err = load_err(Some(&file), &[], &[]);
    assert!(err.contains("transcripts.s3_endpoint"), "{err}");
    assert!(err.contains("transcripts.s3_access_key_env"), "{err}");
    assert!(
        err.contains("transcripts.link_ttl") && err.contains("7d"),
        "{err}"
    );

    let file = config_file(
        "[transcripts]\nstore = \"s3\"\ns3_bucket = \"b\"\n\
         s3_access_key_env = \"S3_ACCESS\"\ns3_secret_key_env = \"S3_SECRET\"\n",
    );
    let s = load(Some(&file), &[], &[]).expect("complete S3 settings");
    let err = s
        .transcript_s3_credentials_from(|name| (name == "S3_ACCESS").then(|| "AK".into()))
        .expect_err("secret unset")
        .to_string();
    assert!(err.contains("transcripts.s3_secret_key_env") && err.contains("`S3_SECRET`"));
    assert!(!err.contains("s3_access_key_env"), "{err}");
    let credentials = s
        .transcript_s3_credentials_from(|_| Some("value".into()))
        .expect("both set");
    assert!(
        !format!("{credentials:?}").contains("value"),
        "secrets redacted"
    );
}

#[test]
fn panel_and_plan_names_follow_the_rule_of_the_jobs_naming_them() {
    let entries = |name: &str| {
        format!(
            "[[panels]]\nname = \"{name}\"\nkind = \"s-ui\"\nurl = \"http://p.example/\"\n\
             token_env = \"T\"\n\n[[plans]]\nname = \"{name}\"\nvolume_gb = 1\ndays = 1\n\
             inbounds = [1]\n"
        )
    };
    let long = "x".repeat(Name::MAX_LEN);
    let too_long = "x".repeat(Name::MAX_LEN + 1);
    for name in [
        "de-1",
        "DE.1",
        "monthly_50GB",
        &long,
        "",
        &too_long,
        "de 1",
        "de/1",
    ] {
        let loaded = load(Some(&config_file(&entries(name))), &[], &[]);
        assert_eq!(
            loaded.is_ok(),
            Name::parse(name).is_ok(),
            "{name:?}: {loaded:?}"
        );
        if let Err(e) = loaded {
            let e = e.to_string();
            assert!(
                e.contains("panels[0].name") && e.contains("plans[0].name"),
                "{e}"
            );
            assert!(e.contains(Name::RULE), "{e}");
        }
    }
    // Every configured panel can be named by the sync job added for it.
    let s = load(Some(&config_file(&entries("DE.1"))), &[], &[]).expect("loads");
    let sync = s.periodic_jobs().pop().expect("a sync job for the panel");
    let spec = crate::kinds::spec(&sync.kind).expect("sync_usage is a kind");
    crate::NewJob::from_json(&spec, &sync.payload, crate::EnqueueOptions::default())
        .expect("the payload names the panel");
}

#[test]
fn credentials_in_a_url_are_refused_and_never_shown() {
    let panel_token = "[[panels]]\nname = \"main\"\nkind = \"s-ui\"\n\
                       url = \"http://p.example/app/?token=PANELSECRET99\"\ntoken_env = \"T\"\n";
    let err = load_err(Some(&config_file(panel_token)), &[], &[]);
    assert!(err.contains("panels[0].url"), "{err}");
    assert!(!err.contains("PANELSECRET99"), "the token leaked: {err}");

    let cases = [
        (
            "[web]\npublic_base_url = \"https://u:WEBSECRET99@shop.example/\"\n",
            "web.public_base_url",
            "WEBSECRET99",
        ),
        (
            "[transcripts]\nstore = \"s3\"\ns3_bucket = \"b\"\ns3_region = \"r\"\n\
             s3_endpoint = \"http://AKIAKEYID99:S3SECRET99@s3.local:9000\"\n",
            "transcripts.s3_endpoint",
            "S3SECRET99",
        ),
        (
            "[transcripts]\npublic_base_url = \"https://t.example/?sig=LINKSECRET99\"\n",
            "transcripts.public_base_url",
            "LINKSECRET99",
        ),
    ];
    for (body, setting, secret) in cases {
        let err = load_err(Some(&config_file(body)), &[], &[]);
        assert!(err.contains(setting), "{setting}: {err}");
        assert!(!err.contains(secret), "{setting} leaked: {err}");
        assert!(!err.contains("AKIAKEYID99"), "the key id leaked: {err}");
    }
}
