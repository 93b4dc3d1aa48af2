//! The admin HTTP server: `/ready`, `/live`, `/prestop`, `/status`, `/metrics`.
//!
//! Answers come from the lifecycle's published [`Status`], never from the
//! app, so a flood of probes costs the app nothing. The server is built
//! for abuse: a header read timeout, a bounded read buffer, a cap on
//! concurrent connections that makes room by closing the oldest idle one
//! ([`connections`]), and no request body is ever read.

mod connections;
mod guard;
mod routes;

pub use self::routes::admit_node;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use self::connections::{AcceptBackoff, Connections, InFlight, Slot};
use self::guard::{refusal, Refusal, RefusalWarnings};
use crate::lifecycle::{Event, Phase, Status, Trigger};
use crate::metrics::Metrics;
use crate::settings::CidrList;
use crate::status;
use crate::status::Snapshot;

/// How long a client may take to send its request head (and how long a
/// keep-alive connection may sit idle).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The most a connection may buffer; larger request heads get 431.
const MAX_BUF_SIZE: usize = 16 * 1024;
/// How long answers in progress when drainit exits (a `/prestop` the
/// app's exit just answered) get to be written. Idle, slow and unread
/// connections are closed at once: no client can hold up the exit.
pub const EXIT_GRACE: Duration = Duration::from_millis(500);

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
    pub status: watch::Receiver<Snapshot>,
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
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Stops accepting, closes idle connections and lets answers in
    /// progress finish (bounded by [`EXIT_GRACE`]).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(EXIT_GRACE + Duration::from_millis(200), self.task)
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
    Ok(AdminServer { stop, task })
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    max_connections: usize,
    mut stopped: watch::Receiver<bool>,
) {
    let connections = Connections::new(connections::fit_to_file_limit(max_connections));
    let mut backoff = AcceptBackoff::default();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        .keep_alive(true);
    loop {
        // The slot is found before accepting: backpressure, not accept-then-close.
        tokio::select! {
            _ = stopped.changed() => break,
            () = connections.make_room() => {}
        }
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                if connections::out_of_files(&error) {
                    // A descriptor for the connection waiting in the backlog.
                    connections.close_oldest_idle();
                }
                let pause = backoff.failed(&error);
                tokio::select! {
                    _ = stopped.changed() => break,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        backoff.succeeded();
        let _ = stream.set_nodelay(true);
        let slot = connections.register();
        let in_flight = slot.in_flight.clone();
        let shared = shared.clone();
        let service = service_fn(move |request| {
            let request_in_flight = InFlight::start(&in_flight);
            let shared = shared.clone();
            async move {
                let answer = route(&shared, peer.ip(), request).await;
                drop(request_in_flight);
                Ok::<_, Infallible>(answer)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(serve_connection(connection, slot, peer, stopped.clone()));
    }
    drop(listener);
    // Idle connections close at once; answers in progress (a /prestop that
    // the app's exit just answered) get EXIT_GRACE to be written.
    if tokio::time::timeout(EXIT_GRACE, connections.all_closed())
        .await
        .is_err()
    {
        debug!("closing admin connections that did not finish in time");
        connections.close_all();
    }
}

/// Runs one connection until it ends, is closed to make room, or drainit
/// exits: then at once if no request is in progress, else after its answer.
async fn serve_connection<C>(
    connection: C,
    slot: Slot,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) where
    C: GracefulConnection<Error = hyper::Error>,
{
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%peer, %error, "admin connection ended with an error");
                }
                return;
            }
            () = slot.close.notified() => return,
            _ = stopped.changed(), if !closing => {
                if slot.in_flight.load(Ordering::Relaxed) == 0 {
                    return;
                }
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
        }
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
    if guard::cross_site(&request) {
        shared.refusal_warnings.refused(Refusal::CrossSite, peer);
        return text(StatusCode::FORBIDDEN, Refusal::CrossSite.answer().into());
    }
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
    let snapshot = context.status.borrow();
    let status = &snapshot.machine;
    let code = if status.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(code, format!("{}\n", status.phase()))
}

fn live(context: &Context) -> Answer {
    let phase = context.status.borrow().machine.phase();
    text(StatusCode::OK, format!("alive ({phase})\n"))
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
    let done = |s: &Snapshot| prestop_outcome(&s.machine, returns).is_some();
    let _ = status.wait_for(done).await;
    let answer = prestop_outcome(&status.borrow().machine, returns).unwrap_or("drainit is exiting");
    text(StatusCode::OK, format!("{answer}\n"))
}

/// What `/prestop` answers once it may return, `None` while it must wait.
fn prestop_outcome(status: &Status, returns: PrestopReturns) -> Option<&'static str> {
    if status.phase() == Phase::Exited {
        return Some("app exited");
    }
    if status.state.deadline_hit() {
        return Some("drain deadline reached, app killed");
    }
    (returns == PrestopReturns::DelayOver && status.phase() >= Phase::Stopping)
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
    let body = context.metrics.render(&context.status.borrow().machine);
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
