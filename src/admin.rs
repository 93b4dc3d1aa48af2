//! The admin HTTP server: `/ready`, `/live`, `/prestop`, `/status`, `/metrics`.
//!
//! Answers come from the lifecycle's published [`Status`], never from the
//! app, so a flood of probes costs the app nothing. The server is built
//! for abuse: a header read timeout (which also closes idle keep-alive
//! connections), a bounded read buffer, a cap on concurrent connections,
//! and no request body is ever read.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::cli::{canonical_ip, CidrList};
use crate::lifecycle::{Event, Phase, Status, Trigger};
use crate::metrics::Metrics;
use crate::status;

/// How long a client may take to send its request head (and how long a
/// keep-alive connection may sit idle).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a connection may buffer; larger request heads get 431.
const MAX_BUF_SIZE: usize = 16 * 1024;
/// How long in-flight answers (a `/prestop` waiting for the app) get to
/// finish when drainit exits.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// When `/prestop` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrestopReturns {
    /// Wrapper mode: once the app has exited, or at the drain deadline.
    AppExited,
    /// Sidecar mode: once the propagation delay is over (the kubelet stops
    /// the app when the hook returns).
    DelayOver,
}

/// Everything a request handler needs.
pub struct Context {
    /// The lifecycle's published state.
    pub status: watch::Receiver<Status>,
    /// Where `/prestop` sends its drain trigger.
    pub events: mpsc::Sender<Event>,
    /// The registry behind `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The settings in force, rendered once for `/status`.
    pub settings: serde_json::Value,
    /// `--prestop-allow-from`.
    pub prestop_allow_from: Option<CidrList>,
    /// `--prestop-token`.
    pub prestop_token: Option<String>,
    /// When `/prestop` answers.
    pub prestop_returns: PrestopReturns,
}

/// What every connection shares: the handlers' context and the server's
/// own bookkeeping.
struct Shared {
    context: Context,
    refusal_warnings: RefusalWarnings,
}

/// A running admin server.
pub struct AdminServer {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Stops accepting, lets in-flight answers finish (bounded by
    /// [`SHUTDOWN_GRACE`]) and closes idle connections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_millis(500), self.task)
            .await
            .is_err()
        {
            warn!("admin server did not shut down in time");
        }
    }
}

/// Serves `context` on `listener` with at most `max_connections` at once.
pub fn serve(
    listener: TcpListener,
    context: Context,
    max_connections: usize,
) -> std::io::Result<AdminServer> {
    let local_addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    if context.prestop_allow_from.is_none() && context.prestop_token.is_none() {
        debug!("/prestop: only loopback callers may drain (no --prestop-allow-from, no --prestop-token)");
    }
    let shared = Arc::new(Shared {
        context,
        refusal_warnings: RefusalWarnings::default(),
    });
    let task = tokio::spawn(accept_loop(listener, shared, max_connections, stopped));
    debug!(address = %local_addr, "admin server listening");
    Ok(AdminServer {
        local_addr,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors or similar: back off instead of spinning.
                warn!(%error, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            debug!(%peer, "admin connection refused: too many connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let service = service_fn(move |request| {
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(route(&shared, peer.ip(), request).await) }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%peer, %error, "admin connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("admin connections still open at shutdown");
    }
}

type Answer = Response<Full<Bytes>>;

/// One `match` on the path; one function per answer.
async fn route(shared: &Shared, peer: IpAddr, request: Request<Incoming>) -> Answer {
    let context = &shared.context;
    let method = request.method();
    let get = method == Method::GET || method == Method::HEAD;
    // HEAD is a read (clients and scanners send it freely): it must never
    // start a drain, so /prestop takes only GET and POST.
    let drain = method == Method::GET || method == Method::POST;
    match request.uri().path() {
        "/ready" if get => ready(context),
        "/live" if get => live(context),
        "/prestop" if drain => prestop(shared, peer, &request).await,
        "/status" if get => status_json(context),
        "/metrics" if get => metrics(context),
        "/ready" | "/live" | "/status" | "/metrics" => method_not_allowed("GET, HEAD"),
        "/prestop" => method_not_allowed("GET, POST"),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn ready(context: &Context) -> Answer {
    let status = context.status.borrow();
    let code = if status.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(code, format!("{}\n", status.phase))
}

fn live(context: &Context) -> Answer {
    let phase = context.status.borrow().phase;
    text(StatusCode::OK, format!("alive ({phase})\n"))
}

/// Why a `/prestop` caller was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Neither `--prestop-allow-from` nor `--prestop-token`: only loopback may drain.
    NotLoopback,
    /// Not in `--prestop-allow-from`.
    NotAllowed,
    /// Missing or wrong `X-Drainit-Token`.
    BadToken,
}

impl Refusal {
    fn answer(self) -> &'static str {
        match self {
            Refusal::NotLoopback => "forbidden: only loopback callers may drain unless --prestop-allow-from or --prestop-token is set\n",
            Refusal::NotAllowed => "forbidden: caller not allowed\n",
            Refusal::BadToken => "forbidden: missing or wrong X-Drainit-Token\n",
        }
    }

    fn log_message(self) -> &'static str {
        match self {
            Refusal::NotLoopback => "refused /prestop: only loopback callers may drain by default; to let the kubelet's preStop hook drain, set --prestop-allow-from $(NODE_IP)/32 with NODE_IP from the downward API (status.hostIP), or --prestop-token",
            Refusal::NotAllowed => "refused /prestop: caller not in --prestop-allow-from",
            Refusal::BadToken => "refused /prestop: missing or wrong X-Drainit-Token",
        }
    }
}

/// The rules `/prestop` callers must pass, from the settings.
fn refusal(context: &Context, peer: IpAddr, request: &Request<Incoming>) -> Option<Refusal> {
    if context.prestop_allow_from.is_none() && context.prestop_token.is_none() {
        return (!canonical_ip(peer).is_loopback()).then_some(Refusal::NotLoopback);
    }
    if let Some(allowed) = &context.prestop_allow_from {
        if !allowed.contains(peer) {
            return Some(Refusal::NotAllowed);
        }
    }
    if let Some(expected) = &context.prestop_token {
        let given = request
            .headers()
            .get("x-drainit-token")
            .map(HeaderValue::as_bytes);
        if !given.is_some_and(|given| constant_time_eq(given, expected.as_bytes())) {
            return Some(Refusal::BadToken);
        }
    }
    None
}

/// At most one warning per [`REFUSAL_WARN_EVERY`] about refused `/prestop`
/// calls, so a caller cannot flood drainit's stderr; the next warning
/// counts the ones left out.
#[derive(Debug, Default)]
struct RefusalWarnings {
    state: Mutex<RefusalWarningState>,
}

#[derive(Debug, Default)]
struct RefusalWarningState {
    last: Option<Instant>,
    suppressed: u64,
}

/// How often a refused `/prestop` may be logged.
const REFUSAL_WARN_EVERY: Duration = Duration::from_secs(10);

impl RefusalWarnings {
    fn refused(&self, refusal: Refusal, peer: IpAddr) {
        let now = Instant::now();
        let suppressed = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let due = state
                .last
                .is_none_or(|last| now.saturating_duration_since(last) >= REFUSAL_WARN_EVERY);
            if !due {
                state.suppressed = state.suppressed.saturating_add(1);
                return;
            }
            state.last = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        let peer = canonical_ip(peer);
        if suppressed == 0 {
            warn!(%peer, "{}", refusal.log_message());
        } else {
            warn!(%peer, suppressed, "{}", refusal.log_message());
        }
    }
}

async fn prestop(shared: &Shared, peer: IpAddr, request: &Request<Incoming>) -> Answer {
    let context = &shared.context;
    if let Some(refusal) = refusal(context, peer, request) {
        shared.refusal_warnings.refused(refusal, peer);
        return text(StatusCode::FORBIDDEN, refusal.answer().into());
    }
    let returns = context.prestop_returns;
    let mut status = context.status.clone();
    // Always sent: the lifecycle starts a drain or joins the one under way.
    // A send error means the lifecycle ended: the answer below says how.
    let _ = context.events.send(Event::Drain(Trigger::Prestop)).await;
    let done = |s: &Status| prestop_outcome(s, returns).is_some();
    let _ = status.wait_for(done).await;
    let answer = prestop_outcome(&status.borrow(), returns).unwrap_or("drainit is exiting");
    text(StatusCode::OK, format!("{answer}\n"))
}

/// What `/prestop` answers once it may return, `None` while it must wait.
fn prestop_outcome(status: &Status, returns: PrestopReturns) -> Option<&'static str> {
    if status.phase == Phase::Exited {
        return Some("app exited");
    }
    if status.deadline_hit {
        return Some("drain deadline reached, app killed");
    }
    (returns == PrestopReturns::DelayOver && status.phase >= Phase::Stopping)
        .then_some("propagation delay over")
}

fn status_json(context: &Context) -> Answer {
    let body = status::render(&context.status.borrow(), &context.settings);
    let mut response = text(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn metrics(context: &Context) -> Answer {
    let body = context.metrics.render(&context.status.borrow());
    let mut response = text(StatusCode::OK, body);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

fn method_not_allowed(allow: &'static str) -> Answer {
    let mut response = text(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed\n".into(),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn text(code: StatusCode, body: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Compares without an early exit, so the token cannot be guessed byte by
/// byte from answer times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
