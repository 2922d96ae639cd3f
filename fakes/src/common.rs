//! What the three fakes share: their listener, their lock and their fault rules' bookkeeping.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Locks `state`. A panic while holding the lock leaves the data as it was: keep serving it.
pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seconds since the Unix epoch, as the real APIs stamp their answers.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Takes one use of the first rule that has uses left and `matches`, and returns it; a
/// used-up rule goes. `uses` names the rule's count of uses left.
pub(crate) fn take_use<R: Clone>(
    rules: &mut Vec<R>,
    uses: impl Fn(&mut R) -> &mut u32,
    matches: impl Fn(&R) -> bool,
) -> Option<R> {
    let index = rules
        .iter_mut()
        .position(|rule| *uses(rule) > 0 && matches(rule))?;
    let rule = &mut rules[index];
    *uses(rule) -= 1;
    let taken = rule.clone();
    if *uses(rule) == 0 {
        rules.remove(index);
    }
    Some(taken)
}

/// A bound listener serving a router until this is dropped.
pub(crate) struct Listening {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Listening {
    pub(crate) async fn bind(bind: SocketAddr, app: axum::Router) -> std::io::Result<Listening> {
        let listener = TcpListener::bind(bind).await?;
        Listening::serve(listener, app)
    }

    /// Serves `app` on an already bound `listener`.
    pub(crate) fn serve(listener: TcpListener, app: axum::Router) -> std::io::Result<Listening> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            // The panel fake reads the caller's address; the others ignore it.
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, service)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Listening { addr, _stop: stop })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The first address a fake listens on when the caller does not choose one.
pub(crate) fn any_local_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
