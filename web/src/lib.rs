//! The admin dashboard: queues, failed jobs and their repair in a browser.
//!
//! Server-rendered HTML (maud escapes every value), readable with JavaScript off; one small
//! script refreshes the overview's counts. Every page needs an admin: browsers log in with a
//! form that sets an HttpOnly, SameSite=Strict session cookie, scripts send
//! `Authorization: Bearer TOKEN`. Every change is a POST carrying the session's CSRF token
//! (Bearer requests need none) and is written to the audit log under the admin's name.
//!
//! - [`auth`]: admins, tokens compared in constant time, sessions, CSRF.
//! - [`metrics`]: queue-level figures from the database for `GET /metrics`.
//! - `handlers`: the routes.
//! - `views`: the HTML, `chart`: the inline SVG throughput chart.
//! - [`transcripts`]: the signed, expiring links to ticket transcripts on the local store.

pub mod auth;
mod chart;
mod handlers;
pub mod metrics;
pub mod transcripts;
mod views;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use jobs::Queue;
use jobs::configuration::{AdminToken, PeriodicSettings, Settings};

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct WebOptions {
    pub bind: SocketAddr,
    pub admins: Vec<AdminToken>,
    /// Mark the session cookie `Secure` (admins reach the dashboard over HTTPS).
    pub secure_cookie: bool,
    /// A worker whose last heartbeat is older than this is shown as not reporting.
    pub worker_stale_after: Duration,
    /// How long a browser session lasts after logging in.
    pub session_ttl: Duration,
    /// The periodic jobs the workers enqueue (`[[periodic]]` and each panel's usage sync), for
    /// the periodic page.
    pub periodic: Vec<PeriodicSettings>,
}

impl WebOptions {
    /// From the settings, the admins' tokens read from the environment.
    pub fn from_settings(settings: &Settings) -> Result<WebOptions, WebError> {
        Ok(WebOptions {
            bind: settings.web.bind,
            admins: settings.admin_tokens()?,
            secure_cookie: settings.web.https(),
            worker_stale_after: settings.worker.heartbeat_interval * 3,
            session_ttl: Duration::from_secs(12 * 3600),
            periodic: settings.periodic_jobs(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Config(#[from] jobs::configuration::ConfigError),
    #[error(
        "refusing to serve the dashboard on {0}, which is not a loopback address, without an \
         admin token: set JOBQ_ADMIN_TOKEN (or [[admins]] entries naming the variables that hold \
         each admin's token), or bind 127.0.0.1"
    )]
    PublicWithoutToken(SocketAddr),
    #[error(
        "no admin token, so no one could log in to the dashboard: set JOBQ_ADMIN_TOKEN (or \
         [[admins]] entries naming the variables that hold each admin's token)"
    )]
    NoToken,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the dashboard stopped: {0}")]
    Serve(std::io::Error),
}

/// Whether the dashboard may listen on `bind` with these admins: never without a token, and
/// the message says why when the address is reachable from other machines.
pub fn check_bind(bind: SocketAddr, admins: &[AdminToken]) -> Result<(), WebError> {
    match (admins.is_empty(), bind.ip().is_loopback()) {
        (false, _) => Ok(()),
        (true, false) => Err(WebError::PublicWithoutToken(bind)),
        (true, true) => Err(WebError::NoToken),
    }
}

/// Shared by every request.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) queue: Queue,
    pub(crate) auth: auth::Auth,
    pub(crate) secure_cookie: bool,
    pub(crate) worker_stale_after: Duration,
    pub(crate) periodic: Vec<PeriodicSettings>,
}

/// The dashboard's routes, for serving or for tests that bring their own listener.
pub fn router(queue: Queue, options: &WebOptions) -> Router {
    let state = AppState {
        inner: Arc::new(Inner {
            queue,
            auth: auth::Auth::new(&options.admins, options.session_ttl),
            secure_cookie: options.secure_cookie,
            worker_stale_after: options.worker_stale_after,
            periodic: options.periodic.clone(),
        }),
    };
    Router::new()
        .route("/", get(handlers::overview))
        .route("/api/overview", get(handlers::overview_json))
        .route("/jobs", get(handlers::jobs_list))
        .route(
            "/jobs/bulk",
            get(handlers::bulk_confirm).post(handlers::bulk_apply),
        )
        .route(
            "/jobs/selected",
            get(handlers::selection_confirm).post(handlers::selection_apply),
        )
        .route("/jobs/{id}", get(handlers::job_page))
        .route("/jobs/{id}/edit", post(handlers::job_edit))
        .route("/jobs/{id}/{action}", post(handlers::job_action))
        .route("/queues/{name}/{action}", post(handlers::queue_action))
        .route("/failures", get(handlers::failures_page))
        .route("/periodic", get(handlers::periodic_page))
        .route("/audit", get(handlers::audit_page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/style.css", get(handlers::style))
        .route("/static/live.js", get(handlers::live_js))
        .route("/static/favicon.svg", get(handlers::favicon))
        .route("/favicon.ico", get(handlers::favicon))
        .route("/healthz", get(|| async { "ok" }))
        // --- metrics: `/metrics` (Prometheus text format) is added here by web/src/metrics.rs ---
        .route("/metrics", get(metrics::handler))
        // --- end metrics ---
        .fallback(handlers::not_found)
        .with_state(state)
}

/// A bound dashboard, ready to serve.
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl Dashboard {
    /// Checks the address against the admins (see [`check_bind`]) and binds it.
    pub async fn bind(queue: Queue, options: &WebOptions) -> Result<Dashboard, WebError> {
        check_bind(options.bind, &options.admins)?;
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|source| WebError::Bind {
                addr: options.bind,
                source,
            })?;
        Ok(Dashboard {
            listener,
            router: router(queue, options),
        })
    }

    /// Also serves the local store's transcript links (`GET /transcripts/...`, no login: the
    /// signed link is the credential), when there are any.
    pub fn with_transcript_links(mut self, links: Option<transcripts::TranscriptLinks>) -> Self {
        if let Some(links) = links {
            self.router = self.router.merge(links.router());
        }
        self
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), WebError> {
        // The headers go on last, over every merged router, so no response goes without
        // them: errors included (405s, 400s from extractors), transcripts included.
        let router = self.router.layer(middleware::from_fn(security_headers));
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(WebError::Serve)
    }
}

/// The policy every response carries: no inline script or style, no framing, no referrer. A
/// route that sets a stricter policy of its own (a transcript's sandbox) keeps it.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        headers,
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}
