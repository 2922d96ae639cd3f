//! The dashboard against hostile clients, over real HTTP to a `jobq web` process: token
//! guessing is limited per client address however the token is presented, and never locks out
//! another address; every response of every route carries the security headers, errors
//! included.

mod support;
mod web_support;

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;
use reqwest::header;
use support::*;
use web_support::*;

on_both_backends!(
    token_guessing_is_limited_per_address_and_never_locks_out_another,
    every_response_carries_the_security_headers,
);

/// A client whose connections come from `address` (any of 127.0.0.0/8 reaches the server).
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(IpAddr::V4(address))
        .build()
        .expect("http client")
}

async fn token_guessing_is_limited_per_address_and_never_locks_out_another(backend: Backend) {
    let db = TestDb::with_config(backend, ADMINS_CONFIG).await;
    let server = WebServer::start(&db).await;
    let stranger = client_from(Ipv4Addr::new(127, 0, 0, 1));
    let mut statuses = Vec::new();
    for guess in 0..30 {
        let response = server
            .get_bearer(
                &stranger,
                "/api/overview",
                format!("guess-{guess:04}-0123456789abcdef"),
            )
            .await;
        statuses.push(response.status());
    }
    assert!(
        statuses[..20]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[20..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // Locked out, the right token tells the stranger nothing: 429, by Bearer and by the form.
    let response = server
        .get_bearer(&stranger, "/api/overview", ADMIN_TOKEN)
        .await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    let response = server.post_login(&stranger, ADMIN_TOKEN).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // An admin elsewhere is not locked out by the stranger.
    let admin = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let response = server
        .get_bearer(&admin, "/api/overview", ALICE_TOKEN)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = server.post_login(&admin, ADMIN_TOKEN).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(response.headers().contains_key(header::SET_COOKIE));
    let log = server.log_text();
    assert!(
        !log.contains(ADMIN_TOKEN) && !log.contains(ALICE_TOKEN),
        "{log}"
    );
}

async fn every_response_carries_the_security_headers(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = WebServer::start(&db).await;
    let http = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let requests = [
        ("GET", "/", None),
        ("GET", "/healthz", None),
        ("GET", "/no/such/page", Some(ADMIN_TOKEN)),
        ("POST", "/healthz", None),
        ("GET", "/jobs/not-a-number", Some(ADMIN_TOKEN)),
        ("GET", "/transcripts/1/2.html", None),
        ("GET", "/transcripts/%FF%FE/2.html", None),
        ("POST", "/transcripts/1/2.html", None),
        ("GET", "/api/overview", Some("wrong-token-0123456789abcdef")),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for (method, path, token) in requests {
        let mut request = match method {
            "POST" => http.post(server.url(path)),
            _ => http.get(server.url(path)),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if path == "/" {
            // As a browser asks: answered with a redirect to the login form.
            request = request.header(header::ACCEPT, "text/html");
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        statuses.insert(status.as_u16());
        let h = response.headers();
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'"),
            "{method} {path} ({status}): CSP {csp:?}"
        );
        assert_eq!(
            h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"DENY"[..]),
            "{method} {path} ({status})"
        );
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{method} {path} ({status})"
        );
    }
    // The requests reached successes, redirects, refusals and errors alike.
    for status in [200, 303, 401, 404, 405] {
        assert!(
            statuses.contains(&status),
            "{status} not seen: {statuses:?}"
        );
    }
    assert!(
        statuses.iter().any(|s| *s == 400 || *s == 403),
        "{statuses:?}"
    );
}
