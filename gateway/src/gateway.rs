//! The running gateway: two listeners, the request pipeline, the reload and checkpoint tasks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use crate::audit::{AuditLog, AuditSettings, Entry};
use crate::body::{BodyBudget, RequestBody};
use crate::config::{ConfigPaths, LiveConfig, Reloader, RoutesSource};
use crate::connections::{
    Activity, Admitted, ConnectionGate, ConnectionLimits, OverCap, RefusalCounters, fit_to_fd_limit, raise_fd_limit,
};
use crate::context::Connection;
use crate::layers::audit::AuditLayer;
use crate::layers::forward::{Forward, ForwardSettings, ResponsePermit};
use crate::layers::grant::GrantCheck;
use crate::layers::identity::IdentityCheck;
use crate::layers::rate_limit::{RateLimitCheck, RateLimiters};
use crate::layers::read_body::ReadBodyLayer;
use crate::layers::routing::RoutingCheck;
use crate::layers::{CheckLayer, GatewayRequest, GatewayResponse};
use crate::metrics::{Metrics, RefusalReason};

/// How the gateway runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: ConfigPaths,
    /// The mutual-TLS listener.
    pub listen: SocketAddr,
    /// The open-data listener (TLS without client certificates); none when `None`.
    pub open_data_listen: Option<SocketAddr>,
    /// The kubelet's probes (`/livez`, `/readyz`, plain HTTP); none when `None`.
    pub health_listen: Option<SocketAddr>,
    pub audit_log: PathBuf,
    /// Durability and rotation of the audit log.
    pub audit: AuditSettings,
    pub checkpoint_interval: Duration,
    pub reload_interval: Duration,
    pub forward: ForwardSettings,
    /// Largest request body accepted (413 above).
    pub max_request_bytes: usize,
    /// Bytes of request bodies held in memory at once, gateway-wide; as many again for response
    /// bodies (two budgets: a request holding its body never waits for its answer's bytes behind
    /// other requests).
    pub body_budget_bytes: usize,
    /// How long a request body may take to arrive (408 after).
    pub body_timeout: Duration,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
    /// How long an HTTP/1.1 request head may take to arrive.
    pub header_timeout: Duration,
    /// A connection with no request in flight for this long is closed (both HTTP versions).
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive: a ping after this long without frames; no answer within as long closes.
    pub http2_keep_alive: Duration,
    /// The mutual-TLS listener's connection caps.
    pub mutual_limits: ConnectionLimits,
    /// The open-data listener's connection caps.
    pub open_data_limits: ConnectionLimits,
    /// How long requests in flight have to finish at shutdown.
    pub drain_timeout: Duration,
    /// Gateway replicas serving the same routes: each applies 1/replicas of every rate limit.
    pub replicas: std::num::NonZeroU32,
    /// Exchanges in flight at once (503 above).
    pub max_exchanges: usize,
}

impl Settings {
    pub fn new(config: ConfigPaths, listen: SocketAddr, audit_log: PathBuf) -> Self {
        Settings {
            config,
            listen,
            open_data_listen: None,
            health_listen: None,
            audit_log,
            audit: AuditSettings::default(),
            checkpoint_interval: Duration::from_secs(60),
            reload_interval: Duration::from_secs(2),
            forward: ForwardSettings::default(),
            max_request_bytes: 16 * 1024 * 1024,
            body_budget_bytes: 48 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive: Duration::from_secs(20),
            mutual_limits: ConnectionLimits { max_connections: 1024, max_per_address: 128 },
            open_data_limits: ConnectionLimits { max_connections: 256, max_per_address: 32 },
            drain_timeout: Duration::from_secs(30),
            replicas: std::num::NonZeroU32::MIN,
            max_exchanges: 4096,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenerKind {
    Mutual,
    OpenData,
}

/// A started gateway.
pub struct RunningGateway {
    pub listen: SocketAddr,
    pub open_data_listen: Option<SocketAddr>,
    pub health_listen: Option<SocketAddr>,
    live: Arc<LiveConfig>,
    audit: Arc<AuditLog>,
    shutdown: watch::Sender<bool>,
    /// Sent once shutdown is complete.
    stopped: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    connections: TaskTracker,
    /// Exchanges in flight (they outlive a client that went away).
    exchanges: TaskTracker,
    drain_timeout: Duration,
    pub counters: Arc<RefusalCounters>,
}

type Pipeline = BoxCloneSyncService<GatewayRequest, GatewayResponse, Infallible>;

/// The request pipeline (see [`crate::layers`]).
pub fn pipeline(
    live: &LiveConfig,
    audit: AuditLayer,
    limiters: RateLimiters,
    read_body: ReadBodyLayer,
    forward: Forward,
) -> Pipeline {
    let service = ServiceBuilder::new()
        .layer(audit)
        .layer(CheckLayer(IdentityCheck))
        .layer(CheckLayer(RoutingCheck { routes: live.routes.clone() }))
        .layer(CheckLayer(GrantCheck))
        .layer(CheckLayer(RateLimitCheck { limiters }))
        .layer(read_body)
        .service(forward);
    BoxCloneSyncService::new(service)
}

/// Loads the configuration, opens the audit log, binds the listeners and starts serving.
pub async fn start(mut settings: Settings) -> anyhow::Result<RunningGateway> {
    let fd_limit = raise_fd_limit();
    fit_to_fd_limit(fd_limit, &mut settings.mutual_limits, &mut settings.open_data_limits);
    tracing::info!(
        fd_limit,
        mutual = ?settings.mutual_limits,
        open_data = ?settings.open_data_limits,
        "connection caps"
    );
    let metrics = Metrics::default();
    let (mut reloader, live) = Reloader::start(settings.config.clone()).map_err(anyhow::Error::msg)?;
    if let RoutesSource::Files(_) = &settings.config.routes {
        reloader.report_refusals_to(metrics.route_tables_refused.clone());
    }
    let live = Arc::new(live);
    let (shutdown, _) = watch::channel(false);
    let mut tasks = Vec::new();
    if let RoutesSource::Cluster { namespace, kubeconfig } = &settings.config.routes {
        let client = crate::cluster::client(kubeconfig.as_deref()).await?;
        let (synced, mut listed) = watch::channel(false);
        tasks.push(tokio::spawn(crate::cluster::watch_routes(
            client,
            namespace.clone(),
            settings.config.resolve.clone(),
            live.routes.clone(),
            metrics.route_tables_refused.clone(),
            synced,
            shutdown.subscribe(),
        )));
        let first = tokio::time::timeout(crate::cluster::FIRST_SYNC, listed.wait_for(|done| *done)).await;
        if !matches!(first, Ok(Ok(_))) {
            let _ = shutdown.send(true);
            anyhow::bail!(
                "the route tables in namespace {namespace} could not be listed within {:?} (see the warnings above)",
                crate::cluster::FIRST_SYNC
            );
        }
        tracing::info!(apis = live.routes.load().len(), %namespace, "route tables listed from the cluster");
    }
    let audit = Arc::new(AuditLog::open_with(&settings.audit_log, settings.audit.clone())?);
    audit.set_signer(live.tls.load().signer.clone());
    let limiters = RateLimiters::new(settings.replicas);
    let (request_budget, response_budget) =
        (BodyBudget::new(settings.body_budget_bytes), BodyBudget::new(settings.body_budget_bytes));
    metrics.watch_budget("request", request_budget.clone());
    metrics.watch_budget("response", response_budget.clone());
    metrics.watch_live(live.clone());
    metrics.watch_audit(audit.clone());
    let read_body =
        ReadBodyLayer { budget: request_budget, max_bytes: settings.max_request_bytes, timeout: settings.body_timeout };
    let forward = Forward::new(settings.forward.clone(), response_budget, &live);
    let exchanges = TaskTracker::new();
    let pipeline = pipeline(
        &live,
        AuditLayer {
            log: audit.clone(),
            exchanges: exchanges.clone(),
            metrics: metrics.clone(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_exchanges.max(1))),
        },
        limiters.clone(),
        read_body,
        forward,
    );

    let mutual = TcpListener::bind(settings.listen).await?;
    let listen = mutual.local_addr()?;
    tracing::info!(%listen, "mutual-TLS listener");
    let counters = Arc::new(RefusalCounters::default());
    let connections = TaskTracker::new();
    let server = Arc::new(Server {
        live: live.clone(),
        pipeline,
        settings: settings.clone(),
        counters: counters.clone(),
        metrics: metrics.clone(),
        connections: connections.clone(),
    });
    let gate = ConnectionGate::new(settings.mutual_limits);
    metrics.watch_gate("mutual", gate.clone());
    tasks.push(tokio::spawn(server.clone().accept_loop(mutual, ListenerKind::Mutual, gate, shutdown.subscribe())));
    let open_data_listen = match settings.open_data_listen {
        Some(addr) => {
            let open = TcpListener::bind(addr).await?;
            let addr = open.local_addr()?;
            tracing::info!(listen = %addr, "open-data listener");
            let gate = ConnectionGate::new(settings.open_data_limits);
            metrics.watch_gate("open_data", gate.clone());
            tasks.push(tokio::spawn(server.accept_loop(open, ListenerKind::OpenData, gate, shutdown.subscribe())));
            Some(addr)
        }
        None => None,
    };

    let (stopped, _) = watch::channel(false);
    let health_listen = match settings.health_listen {
        Some(addr) => {
            let listener = crate::health::bind(addr).await?;
            let addr = listener.local_addr()?;
            tracing::info!(listen = %addr, "health probes (/livez, /readyz)");
            let readiness = crate::health::Readiness {
                audit: audit.clone(),
                stopping: shutdown.subscribe(),
                metrics: metrics.clone(),
            };
            // The probes outlive the drain (unready meanwhile): they stop when the gateway has.
            tokio::spawn(crate::health::serve(listener, readiness, stopped.subscribe()));
            Some(addr)
        }
        None => None,
    };

    let reload_live = live.clone();
    let reload_audit = audit.clone();
    let mut stop = shutdown.subscribe();
    let reload_interval = settings.reload_interval;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(reload_interval) => {}
                _ = stop.changed() => return,
            }
            if reloader.poll(&reload_live).tls {
                reload_audit.set_signer(reload_live.tls.load().signer.clone());
            }
            limiters.prune(&reload_live.routes.load());
        }
    }));

    let checkpoint_live = live.clone();
    let checkpoint_audit = audit.clone();
    let checkpoint_counters = counters.clone();
    let mut stop = shutdown.subscribe();
    let interval = settings.checkpoint_interval;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            checkpoint(&checkpoint_live, &checkpoint_audit, &checkpoint_counters);
        }
    }));

    Ok(RunningGateway {
        listen,
        open_data_listen,
        health_listen,
        live,
        audit,
        shutdown,
        stopped,
        tasks,
        connections,
        exchanges,
        drain_timeout: settings.drain_timeout,
        counters,
    })
}

/// Records the refusals counted since the last time, then signs the chain head.
fn checkpoint(live: &LiveConfig, audit: &AuditLog, counters: &RefusalCounters) -> Option<u64> {
    let refusals = counters.take();
    if !refusals.is_empty()
        && let Err(error) = audit.append(Entry::Refusals(refusals.clone()))
    {
        tracing::error!(%error, "the refusals record could not be written; counted again next time");
        counters.restore(&refusals);
    }
    let Some(signer) = live.tls.load().signer.clone() else {
        tracing::error!("no ECDSA P-256 key to sign the audit checkpoint with; the chain stays unsigned");
        return None;
    };
    match audit.checkpoint(&signer) {
        Ok(seq) => seq,
        Err(error) => {
            tracing::error!(%error, "audit checkpoint failed");
            None
        }
    }
}

impl RunningGateway {
    /// Signs the audit chain head now (what the periodic task does).
    pub fn checkpoint_now(&self) -> Option<u64> {
        checkpoint(&self.live, &self.audit, &self.counters)
    }

    pub fn audit_log(&self) -> &str {
        self.audit.path()
    }

    /// Stops accepting, lets requests in flight finish (up to the drain timeout), and signs a
    /// last checkpoint.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.connections.close();
        // Connections finish their requests within the drain timeout, then are dropped.
        if tokio::time::timeout(self.drain_timeout + CLOSE_GRACE, self.connections.wait()).await.is_err() {
            tracing::warn!("connections still open at the end of the drain timeout were cut");
        }
        // Exchanges whose clients went away still finish and are recorded.
        self.exchanges.close();
        if tokio::time::timeout(self.drain_timeout, self.exchanges.wait()).await.is_err() {
            tracing::warn!("exchanges still in flight at the end of the drain timeout were cut");
        }
        checkpoint(&self.live, &self.audit, &self.counters);
        let _ = self.stopped.send(true);
    }
}

struct Server {
    live: Arc<LiveConfig>,
    pipeline: Pipeline,
    settings: Settings,
    counters: Arc<RefusalCounters>,
    metrics: Metrics,
    connections: TaskTracker,
}

/// How often a connection checks whether it has been idle too long.
const IDLE_CHECK: Duration = Duration::from_millis(250);
/// How long a connection closed for idleness has to finish what it was writing.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

impl Server {
    /// Counts a refusal for the audit's next `refusals` record and for the metrics.
    fn refused(&self, reason: RefusalReason) {
        self.counters.count(reason);
        self.metrics.refused(reason);
    }

    async fn accept_loop(
        self: Arc<Self>,
        listener: TcpListener,
        kind: ListenerKind,
        gate: Arc<ConnectionGate>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, remote)) => match gate.admit(remote.ip()) {
                        Ok(admitted) => {
                            let server = self.clone();
                            let stop = stop.clone();
                            self.connections.spawn(server.serve_connection(tcp, remote, kind, admitted, stop));
                        }
                        // Accepted and closed at once: the backlog never fills with them.
                        Err(over) => {
                            self.refused(match over {
                                OverCap::Listener => RefusalReason::OverListenerCap,
                                OverCap::Address => RefusalReason::OverAddressCap,
                            });
                            tracing::debug!(%remote, ?kind, ?over, "connection over the cap closed");
                            drop(tcp);
                        }
                    },
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = stop.changed() => break,
            }
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        tcp: TcpStream,
        remote: SocketAddr,
        kind: ListenerKind,
        admitted: Admitted,
        mut stop: watch::Receiver<bool>,
    ) {
        let _admitted = admitted;
        // The TLS state current at accept time serves the whole connection.
        let tls = self.live.tls.load_full();
        let config = match kind {
            ListenerKind::Mutual => tls.mutual.clone(),
            ListenerKind::OpenData => tls.open.clone(),
        };
        let stream =
            match tokio::time::timeout(self.settings.handshake_timeout, TlsAcceptor::from(config).accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    self.refused(RefusalReason::HandshakeRefused);
                    self.metrics.handshake_failed(&error);
                    tracing::info!(%remote, %error, ?kind, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    self.refused(RefusalReason::HandshakeTimedOut);
                    tracing::info!(%remote, ?kind, "TLS handshake timed out");
                    return;
                }
            };
        let connection = match kind {
            ListenerKind::Mutual => {
                let chain = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
                Connection::mutual(remote, chain, tls.anchors.clone())
            }
            ListenerKind::OpenData => Connection::open(remote),
        };
        drop(tls);
        let pipeline = self.pipeline.clone();
        let activity = Activity::new();
        let requests = activity.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let pipeline = pipeline.clone();
            let connection = connection.clone();
            let in_flight = requests.begin();
            async move {
                // The body stays unread until the pipeline has authorised the request.
                let mut request = request.map(RequestBody::unread);
                request.extensions_mut().insert(connection);
                let mut response = pipeline.oneshot(request).await.unwrap_or_else(|never| match never {});
                let permit = response.extensions_mut().remove::<ResponsePermit>();
                drop(in_flight);
                Ok::<_, Infallible>(response.map(|body| HeldBody { body: Full::new(body), _permit: permit }))
            }
        });
        let builder = http_builder(&self.settings);
        let served = builder.serve_connection(TokioIo::new(stream), service);
        let mut served = std::pin::pin!(served);
        let mut closing: Option<tokio::time::Instant> = None;
        let result = loop {
            tokio::select! {
                result = served.as_mut() => break result,
                _ = stop.changed(), if closing.is_none() => {
                    served.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + self.settings.drain_timeout);
                }
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    if closing.is_none() && activity.idle_for() >= self.settings.idle_timeout {
                        self.refused(RefusalReason::IdleClosed);
                        tracing::debug!(%remote, ?kind, "idle connection closed");
                        served.as_mut().graceful_shutdown();
                        closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                    if closing.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
                        // Dropping the connection closes it, whatever the client still holds.
                        return;
                    }
                }
            }
        };
        if let Err(error) = result {
            match error.downcast_ref::<hyper::Error>() {
                Some(e) if e.is_parse() || e.is_parse_too_large() || e.is_parse_status() => {
                    self.refused(RefusalReason::MalformedRequest)
                }
                Some(e) if e.is_timeout() => self.refused(RefusalReason::HeadersTimedOut),
                _ => {}
            }
            tracing::debug!(%remote, %error, "connection ended with an error");
        }
    }
}

/// HTTP/1.1 and HTTP/2 as the gateway serves them: small buffers and windows (what a client can
/// make the gateway hold before its request is authorised), bounded streams, timed headers,
/// keep-alive pings that find dead HTTP/2 peers.
fn http_builder(settings: &Settings) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(HTTP1_MAX_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .initial_stream_window_size(HTTP2_STREAM_WINDOW)
        .initial_connection_window_size(HTTP2_CONNECTION_WINDOW)
        .max_header_list_size(HTTP2_MAX_HEADER_LIST)
        .keep_alive_interval(Some(settings.http2_keep_alive))
        .keep_alive_timeout(settings.http2_keep_alive);
    builder
}

/// HTTP/1.1 read buffer: also the largest request head (431 above).
pub const HTTP1_MAX_BUFFER: usize = 64 * 1024;
pub const HTTP2_MAX_STREAMS: u32 = 100;
pub const HTTP2_STREAM_WINDOW: u32 = 64 * 1024;
pub const HTTP2_CONNECTION_WINDOW: u32 = 128 * 1024;
pub const HTTP2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// A response body that gives its bytes back to the body budget once hyper has written it.
struct HeldBody {
    body: Full<Bytes>,
    _permit: Option<ResponsePermit>,
}

impl http_body::Body for HeldBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
