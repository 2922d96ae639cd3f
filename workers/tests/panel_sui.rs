//! The S-UI client against the fake S-UI panel over real HTTP, and the fake's own faithfulness
//! to `docs/panel-api.md`.

use std::time::Duration;

use fakes::sui::{ClientRow, FakeSui, Fault, SuiOptions as FakeOptions};
use serde_json::{Value, json};
use workers::panel::{ClientChange, NewClient, Panel, PanelError, SuiAuth, SuiOptions, SuiPanel};

const TOKEN: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
const NAME: &str = "k7Q2mZpR8vXw3tYb";

async fn fake(version: &str) -> FakeSui {
    FakeSui::start(FakeOptions {
        version: version.into(),
        token: Some(TOKEN.into()),
        ..FakeOptions::default()
    })
    .await
    .expect("fake panel starts")
}

fn token_client(fake: &FakeSui) -> SuiPanel {
    client_with(fake, SuiAuth::Token(TOKEN.into()), Duration::from_secs(5))
}

fn client_with(fake: &FakeSui, auth: SuiAuth, timeout: Duration) -> SuiPanel {
    let mut options = SuiOptions::new(fake.url(), auth);
    options.timeout = timeout;
    SuiPanel::new(options).expect("client builds")
}

fn new_client(name: &str) -> NewClient {
    NewClient {
        name: name.into(),
        enable: true,
        volume: 10 * 1024 * 1024 * 1024,
        expiry: 1_900_000_000,
        inbounds: vec![1],
    }
}

#[tokio::test]
async fn create_find_edit_delete_round_trip() {
    let fake = fake("1.5.1").await;
    let panel = token_client(&fake);
    assert!(panel.find_by_name(NAME).await.expect("list").is_empty());

    let created = panel
        .create_client(&new_client(NAME))
        .await
        .expect("create");
    assert_eq!(created.len(), 1);
    let id = created[0].id;
    let read = panel.get_client(id).await.expect("read").expect("exists");
    assert_eq!(read.name, NAME);
    assert!(read.enable);
    assert_eq!(read.volume, 10 * 1024 * 1024 * 1024);
    assert_eq!(read.expiry, 1_900_000_000);
    assert_eq!(read.inbounds, vec![1]);
    // The credentials the panel needs for the inbound's protocol were sent, named after the client.
    let row = &fake.clients_named(NAME)[0];
    assert_eq!(row.config["vless"]["name"], json!(NAME));
    assert!(
        row.config["vless"]["uuid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );

    let found = panel.find_by_name(NAME).await.expect("find");
    assert_eq!(found.iter().map(|c| c.id).collect::<Vec<_>>(), vec![id]);

    let edited = panel
        .edit_client(
            id,
            &ClientChange {
                expiry: Some(2_000_000_000),
                volume: Some(20),
                ..ClientChange::default()
            },
        )
        .await
        .expect("edit");
    assert_eq!(edited.expiry, 2_000_000_000);
    let row = &fake.clients()[0];
    assert_eq!(
        (row.expiry, row.volume, row.enable),
        (2_000_000_000, 20, true)
    );
    assert_eq!(row.inbounds, json!([1]));
    assert_eq!(
        row.config["vless"]["name"],
        json!(NAME),
        "config kept by the edit"
    );

    let inbounds = panel.inbounds().await.expect("inbounds");
    assert_eq!(
        inbounds.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(inbounds[0].kind, "vless");

    let link = panel.subscription_link(NAME).await.expect("link");
    let sub = fake.sub_addr().expect("sub listener");
    assert_eq!(
        link.expose(),
        format!("http://127.0.0.1:{}/sub/{NAME}", sub.port())
    );
    assert!(!format!("{link:?}").contains(NAME));

    panel.delete_client(id).await.expect("delete");
    assert!(panel.find_by_name(NAME).await.expect("list").is_empty());
    match panel.delete_client(id).await {
        Err(PanelError::Rejected(msg)) => assert_eq!(msg, "save: record not found"),
        other => panic!("deleting twice: {other:?}"),
    }
    // Form bodies on the token API only.
    assert!(fake.requests().iter().all(|r| r.contains("apiv2/")));
}

#[tokio::test]
async fn duplicates_are_visible() {
    let fake = fake("1.5.1").await;
    let panel = token_client(&fake);
    let first = panel
        .create_client(&new_client(NAME))
        .await
        .expect("create");
    assert_eq!(first.len(), 1);
    let second = panel
        .create_client(&new_client(NAME))
        .await
        .expect("create again");
    assert_eq!(
        second.len(),
        2,
        "the panel accepts the duplicate name; both rows are seen"
    );
    let found = panel.find_by_name(NAME).await.expect("find");
    assert_eq!(found.len(), 2);
    assert_ne!(found[0].id, found[1].id);
}

#[tokio::test]
async fn edit_keeps_usage_counters_and_resets_them_on_request() {
    for version in ["1.4.2", "1.5.1"] {
        let fake = fake(version).await;
        let panel = token_client(&fake);
        let id = panel
            .create_client(&new_client(NAME))
            .await
            .expect("create")[0]
            .id;
        assert!(fake.set_usage(id, 1234, 5678));
        let edited = panel
            .edit_client(
                id,
                &ClientChange {
                    enable: Some(false),
                    ..ClientChange::default()
                },
            )
            .await
            .expect("disable");
        assert!(!edited.enable);
        let row = &fake.clients()[0];
        assert_eq!(
            (row.up, row.down, row.enable),
            (1234, 5678, false),
            "{version}"
        );
        assert_eq!(row.expiry, 1_900_000_000, "{version}: expiry kept");
        assert_eq!(
            row.volume,
            10 * 1024 * 1024 * 1024,
            "{version}: volume kept"
        );

        panel
            .edit_client(
                id,
                &ClientChange {
                    enable: Some(true),
                    reset_usage: true,
                    ..ClientChange::default()
                },
            )
            .await
            .expect("renew");
        let row = &fake.clients()[0];
        assert_eq!((row.up, row.down, row.enable), (0, 0, true), "{version}");
    }
}

#[tokio::test]
async fn edit_keeps_fields_the_v1_5_summary_reads_as_zero() {
    let fake = fake("1.5.1").await;
    let id = fake.insert(ClientRow {
        name: NAME.into(),
        enable: true,
        inbounds: json!([1]),
        links: json!([]),
        config: json!({"vless": {"name": NAME, "uuid": "u"}}),
        auto_reset: true,
        reset_days: 30,
        total_up: 99,
        total_down: 77,
        ..ClientRow::default()
    });
    let panel = token_client(&fake);
    panel
        .edit_client(
            id,
            &ClientChange {
                expiry: Some(5),
                ..ClientChange::default()
            },
        )
        .await
        .expect("edit");
    let row = &fake.clients()[0];
    assert!(row.auto_reset);
    assert_eq!((row.reset_days, row.total_up, row.total_down), (30, 99, 77));
    // The edit read the full row (`clients?id=`), never the summary listing.
    let requests = fake.requests();
    assert!(requests.iter().any(|r| r == "GET apiv2/clients"));
    assert_eq!(
        requests.iter().filter(|r| *r == "POST apiv2/save").count(),
        1
    );
}

#[tokio::test]
async fn an_expired_token_is_a_permanent_auth_error() {
    let fake = fake("1.5.1").await;
    let panel = token_client(&fake);
    panel.list_clients().await.expect("list");
    fake.expire_token();
    let error = panel.list_clients().await.expect_err("expired token");
    assert!(matches!(error, PanelError::Auth(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("invalid token"), "{error}");
    assert!(!error.to_string().contains(TOKEN));

    let wrong = client_with(
        &fake,
        SuiAuth::Token("wrongwrongwrong".into()),
        Duration::from_secs(5),
    );
    let error = wrong.list_clients().await.expect_err("wrong token");
    assert!(matches!(error, PanelError::Auth(_)), "{error:?}");
}

#[tokio::test]
async fn cookie_session_logs_in_again_when_it_lapses() {
    let fake = fake("1.5.1").await;
    let auth = SuiAuth::Login {
        user: "admin".into(),
        pass: "admin".into(),
    };
    let panel = client_with(&fake, auth, Duration::from_secs(5));
    panel
        .create_client(&new_client(NAME))
        .await
        .expect("create");
    assert_eq!(fake.login_count(), 1);
    fake.drop_sessions();
    let found = panel
        .find_by_name(NAME)
        .await
        .expect("list after the session lapsed");
    assert_eq!(found.len(), 1);
    assert_eq!(fake.login_count(), 2, "one re-login");
    assert!(fake.requests().iter().all(|r| !r.contains("apiv2/")));

    let bad = client_with(
        &fake,
        SuiAuth::Login {
            user: "admin".into(),
            pass: "nope".into(),
        },
        Duration::from_secs(5),
    );
    let error = bad.list_clients().await.expect_err("wrong password");
    assert!(
        matches!(error, PanelError::Auth(ref m) if m.contains("wrong user or password")),
        "{error:?}"
    );
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn bad_gateway_and_stalls_are_retryable() {
    let fake = fake("1.5.1").await;
    let panel = client_with(
        &fake,
        SuiAuth::Token(TOKEN.into()),
        Duration::from_millis(300),
    );
    panel.version().await.expect("version");

    fake.inject(Fault::BadGateway);
    let error = panel.list_clients().await.expect_err("502");
    assert_eq!(error, PanelError::Server(502));
    assert!(error.is_retryable());

    fake.inject(Fault::Stall(Duration::from_secs(30)));
    let error = panel.list_clients().await.expect_err("stall");
    assert!(matches!(error, PanelError::Timeout(_)), "{error:?}");
    assert!(error.is_retryable());

    // Nothing left injected: the next call works.
    panel.list_clients().await.expect("list");
}

#[tokio::test]
async fn too_many_requests_carries_retry_after() {
    let fake = fake("1.5.1").await;
    let panel = token_client(&fake);
    fake.inject(Fault::TooManyRequests {
        retry_after: "17".into(),
    });
    let error = panel.version().await.expect_err("429");
    assert_eq!(
        error,
        PanelError::RateLimited {
            retry_after: Some(Duration::from_secs(17))
        }
    );
    assert!(error.is_retryable());
    assert!(error.is_wait(), "a 429 is waited out, not a failure");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(17)));
}

#[tokio::test]
async fn a_dropped_answer_after_the_change_is_retryable_and_the_row_is_listed() {
    let fake = fake("1.5.1").await;
    let panel = token_client(&fake);
    fake.inject_on(Some("save"), Fault::DropAfterApply, 1);
    let error = panel
        .create_client(&new_client(NAME))
        .await
        .expect_err("dropped");
    assert!(matches!(error, PanelError::Transport(_)), "{error:?}");
    assert!(error.is_retryable());
    // The creation happened: a handler that lists first finds it and does not create again.
    assert_eq!(panel.find_by_name(NAME).await.expect("list").len(), 1);
    assert!(!error.to_string().contains(NAME));
}

#[tokio::test]
async fn versions_are_detected_and_unsupported_ones_refused() {
    for (version, minor) in [("1.2.0", 2), ("1.4.1", 4), ("1.5.1", 5)] {
        let fake = fake(version).await;
        let detected = token_client(&fake).version().await.expect("supported");
        assert_eq!((detected.major, detected.minor), (1, minor));
    }
    // Before 1.2 there is no /apiv2.
    let old = fake("1.1.3").await;
    let error = token_client(&old).list_clients().await.expect_err("1.1");
    assert!(
        matches!(error, PanelError::UnsupportedVersion(_)),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    // Through the cookie session the version is read, and refused.
    let auth = SuiAuth::Login {
        user: "admin".into(),
        pass: "admin".into(),
    };
    let error = client_with(&old, auth, Duration::from_secs(5))
        .version()
        .await
        .expect_err("1.1 by login");
    assert!(
        matches!(error, PanelError::UnsupportedVersion(ref m) if m.contains("1.1.3")),
        "{error:?}"
    );
    let beta = fake("1.2.0-beta.3").await;
    assert!(matches!(
        token_client(&beta).version().await,
        Err(PanelError::UnsupportedVersion(_))
    ));
    let newer = fake("1.6.0").await;
    let error = token_client(&newer).version().await.expect_err("1.6");
    assert!(error.to_string().contains("1.6.0"), "{error}");
}

// ---- The fake itself, raw, against the reference ----

async fn raw_post(fake: &FakeSui, path: &str, form: &[(&str, &str)]) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", fake.url()))
        .header("Token", TOKEN)
        .form(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "always HTTP 200");
    response.json().await.expect("envelope")
}

async fn raw_get(fake: &FakeSui, path: &str) -> Value {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", fake.url()))
        .header("Token", TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200, "always HTTP 200");
    response.json().await.expect("envelope")
}

#[tokio::test]
async fn fake_accepts_duplicates_and_replaces_rows_on_edit() {
    let fake = fake("1.5.1").await;
    let data =
        json!({"enable": true, "name": "u1", "config": {"vless": {"name": "x", "uuid": "U"}},
        "inbounds": [1], "links": [], "volume": 100, "expiry": 200, "up": 0, "down": 0,
        "desc": "", "group": ""})
        .to_string();
    let first = raw_post(
        &fake,
        "apiv2/save",
        &[("object", "clients"), ("action", "new"), ("data", &data)],
    )
    .await;
    assert_eq!(first["success"], json!(true));
    assert_eq!(first["msg"], json!(""));
    assert!(
        first["obj"]["inbounds"].is_array(),
        "an inbound was touched"
    );
    let second = raw_post(
        &fake,
        "apiv2/save",
        &[("object", "clients"), ("action", "new"), ("data", &data)],
    )
    .await;
    assert_eq!(second["success"], json!(true), "duplicate name accepted");
    let clients = second["obj"]["clients"].as_array().expect("summary of all");
    assert_eq!(clients.len(), 2);
    assert!(
        clients
            .iter()
            .all(|c| c["name"] == json!("u1") && c.get("config").is_none())
    );
    // v1.5 sets each config entry's name to the client name.
    assert_eq!(fake.clients()[0].config["vless"]["name"], json!("u1"));

    let id = clients[0]["id"].as_u64().expect("id");
    assert!(fake.set_usage(id, 10, 20));
    // Edit with only some fields: the row is replaced, the rest become zero.
    let partial =
        json!({"id": id, "name": "u1", "enable": true, "inbounds": [1], "links": []}).to_string();
    let edited = raw_post(
        &fake,
        "apiv2/save",
        &[
            ("object", "clients"),
            ("action", "edit"),
            ("data", &partial),
        ],
    )
    .await;
    assert_eq!(edited["success"], json!(true));
    let row = &fake.clients()[0];
    assert_eq!((row.volume, row.expiry, row.up, row.down), (0, 0, 0, 0));
    assert_eq!(row.config, Value::Null);

    // The reference's messages.
    let missing = json!({"id": 999, "name": "u1"}).to_string();
    let answer = raw_post(
        &fake,
        "apiv2/save",
        &[
            ("object", "clients"),
            ("action", "edit"),
            ("data", &missing),
        ],
    )
    .await;
    assert_eq!(
        answer,
        json!({"success": false, "msg": "save: record not found", "obj": null})
    );
    let answer = raw_post(
        &fake,
        "apiv2/save",
        &[("object", "clients"), ("action", "del"), ("data", "999")],
    )
    .await;
    assert_eq!(answer["msg"], json!("save: record not found"));
    let no_links = json!({"name": "u2", "inbounds": []}).to_string();
    let answer = raw_post(
        &fake,
        "apiv2/save",
        &[
            ("object", "clients"),
            ("action", "new"),
            ("data", &no_links),
        ],
    )
    .await;
    assert_eq!(answer["msg"], json!("save: unexpected end of JSON input"));
    let answer = raw_get(&fake, "apiv2/nope").await;
    assert_eq!(answer["msg"], json!("failed: unknown action:  nope\n"));
    let answer = raw_get(&fake, "apiv2/clients?id=12345").await;
    assert_eq!(answer["obj"], json!({"clients": []}));
    let answer = raw_get(&fake, "apiv2/inbounds?id=12345").await;
    assert_eq!(answer["obj"], json!({"inbounds": null}));

    // A JSON body is not parsed: its fields are missing.
    let response = reqwest::Client::new()
        .post(format!("{}apiv2/save", fake.url()))
        .header("Token", TOKEN)
        .header("Content-Type", "application/json")
        .body(json!({"object": "clients", "action": "del", "data": "1"}).to_string())
        .send()
        .await
        .expect("sent");
    let answer: Value = response.json().await.expect("envelope");
    assert_eq!(answer["success"], json!(false));
    assert_eq!(fake.clients().len(), 2, "nothing deleted");

    // Wrong token; cookie API without a session (XHR); outside the web path.
    let response = reqwest::Client::new()
        .get(format!("{}apiv2/clients", fake.url()))
        .header("Token", "wrong")
        .send()
        .await
        .expect("sent");
    let answer: Value = response.json().await.expect("envelope");
    assert_eq!(
        answer,
        json!({"success": false, "msg": ": invalid token\n", "obj": null})
    );
    let response = reqwest::Client::new()
        .get(format!("{}api/clients", fake.url()))
        .header("X-Requested-With", "XMLHttpRequest")
        .send()
        .await
        .expect("sent");
    let answer: Value = response.json().await.expect("envelope");
    assert_eq!(answer["msg"], json!("Invalid login"));
    let response = reqwest::Client::new()
        .get(format!("http://{}/other/apiv2/clients", fake.addr()))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn fake_summary_in_1_5_reads_reset_fields_as_zero_and_serves_subscriptions() {
    let fake = fake("1.5.1").await;
    let id = fake.insert(ClientRow {
        name: "u1".into(),
        enable: true,
        inbounds: json!([1]),
        links: json!([{"type": "local", "remark": "r", "uri": "vless://x@h:443#u1"}]),
        total_up: 5,
        up: 3,
        ..ClientRow::default()
    });
    let list = raw_get(&fake, "apiv2/clients").await;
    assert_eq!(list["obj"]["clients"][0]["totalUp"], json!(0));
    assert_eq!(list["obj"]["clients"][0]["up"], json!(3));
    let full = raw_get(&fake, &format!("apiv2/clients?id={id}")).await;
    assert_eq!(full["obj"]["clients"][0]["totalUp"], json!(5));

    let sub = fake.sub_addr().expect("sub listener");
    let response = reqwest::get(format!("http://{sub}/sub/u1"))
        .await
        .expect("sub");
    assert_eq!(response.status(), 200);
    let userinfo = response.headers()["Subscription-Userinfo"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert_eq!(userinfo, "upload=3; download=0; total=0; expire=0");
    let response = reqwest::get(format!("http://{sub}/sub/unknown"))
        .await
        .expect("sub");
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.expect("body"), "Error!");
}

#[tokio::test]
async fn fake_admin_endpoint_injects_faults_for_other_processes() {
    let fake = fake("1.5.1").await;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}fault", fake.admin_url()))
        .header("Content-Type", "application/json")
        .body(json!({"fault": "429", "retry_after": "3", "action": "clients"}).to_string())
        .send()
        .await
        .expect("admin");
    assert_eq!(response.status(), 204);
    let response = http
        .get(format!("{}apiv2/clients", fake.url()))
        .header("Token", TOKEN)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["Retry-After"], "3");
    let response = http
        .post(format!("{}expire-token", fake.admin_url()))
        .send()
        .await
        .expect("admin");
    assert_eq!(response.status(), 204);
    let answer = raw_get(&fake, "apiv2/clients").await;
    assert_eq!(answer["msg"], json!(": invalid token\n"));
}
