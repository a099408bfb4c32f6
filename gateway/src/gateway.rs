//! The running gateway: two listeners, the request pipeline, the reload and checkpoint tasks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use crate::audit::AuditLog;
use crate::config::{ConfigPaths, LiveConfig, Reloader, RoutesSource};
use crate::context::{BodyTooLarge, Connection};
use crate::layers::audit::AuditLayer;
use crate::layers::body_limit::BodyLimitCheck;
use crate::layers::forward::{Forward, ForwardSettings};
use crate::layers::grant::GrantCheck;
use crate::layers::identity::IdentityCheck;
use crate::layers::rate_limit::{RateLimitCheck, RateLimiters};
use crate::layers::routing::RoutingCheck;
use crate::layers::{CheckLayer, GatewayRequest, GatewayResponse};

/// How the gateway runs.
#[derive(Clone, Debug)]
pub struct Settings {
    pub config: ConfigPaths,
    /// The mutual-TLS listener.
    pub listen: SocketAddr,
    /// The open-data listener (TLS without client certificates); none when `None`.
    pub open_data_listen: Option<SocketAddr>,
    pub audit_log: PathBuf,
    pub checkpoint_interval: Duration,
    pub reload_interval: Duration,
    pub forward: ForwardSettings,
    /// Largest request body accepted (413 above).
    pub max_request_bytes: usize,
    /// How long a TLS handshake, and reading a request's headers, may take.
    pub handshake_timeout: Duration,
    /// How long requests in flight have to finish at shutdown.
    pub drain_timeout: Duration,
}

impl Settings {
    pub fn new(config: ConfigPaths, listen: SocketAddr, audit_log: PathBuf) -> Self {
        Settings {
            config,
            listen,
            open_data_listen: None,
            audit_log,
            checkpoint_interval: Duration::from_secs(60),
            reload_interval: Duration::from_secs(2),
            forward: ForwardSettings::default(),
            max_request_bytes: 16 * 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
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
    live: Arc<LiveConfig>,
    audit: Arc<AuditLog>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

type Pipeline = BoxCloneSyncService<GatewayRequest, GatewayResponse, Infallible>;

/// The request pipeline (see [`crate::layers`]).
pub fn pipeline(live: &LiveConfig, audit: Arc<AuditLog>, limiters: RateLimiters, forward: Forward) -> Pipeline {
    let service = ServiceBuilder::new()
        .layer(AuditLayer { log: audit })
        .layer(CheckLayer(BodyLimitCheck))
        .layer(CheckLayer(IdentityCheck))
        .layer(CheckLayer(RoutingCheck { routes: live.routes.clone() }))
        .layer(CheckLayer(GrantCheck))
        .layer(CheckLayer(RateLimitCheck { limiters }))
        .service(forward);
    BoxCloneSyncService::new(service)
}

/// Loads the configuration, opens the audit log, binds the listeners and starts serving.
pub async fn start(settings: Settings) -> anyhow::Result<RunningGateway> {
    let (mut reloader, live) = Reloader::start(settings.config.clone()).map_err(anyhow::Error::msg)?;
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
    let audit = Arc::new(AuditLog::open(&settings.audit_log)?);
    let limiters = RateLimiters::default();
    let pipeline = pipeline(&live, audit.clone(), limiters.clone(), Forward::new(settings.forward.clone()));

    let mutual = TcpListener::bind(settings.listen).await?;
    let listen = mutual.local_addr()?;
    tracing::info!(%listen, "mutual-TLS listener");
    let server = Arc::new(Server { live: live.clone(), pipeline, settings: settings.clone() });
    tasks.push(tokio::spawn(server.clone().accept_loop(mutual, ListenerKind::Mutual, shutdown.subscribe())));
    let open_data_listen = match settings.open_data_listen {
        Some(addr) => {
            let open = TcpListener::bind(addr).await?;
            let addr = open.local_addr()?;
            tracing::info!(listen = %addr, "open-data listener");
            tasks.push(tokio::spawn(server.accept_loop(open, ListenerKind::OpenData, shutdown.subscribe())));
            Some(addr)
        }
        None => None,
    };

    let reload_live = live.clone();
    let mut stop = shutdown.subscribe();
    let reload_interval = settings.reload_interval;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(reload_interval) => {}
                _ = stop.changed() => return,
            }
            reloader.poll(&reload_live);
            limiters.prune(&reload_live.routes.load());
        }
    }));

    let checkpoint_live = live.clone();
    let checkpoint_audit = audit.clone();
    let mut stop = shutdown.subscribe();
    let interval = settings.checkpoint_interval;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => return,
            }
            checkpoint(&checkpoint_live, &checkpoint_audit);
        }
    }));

    Ok(RunningGateway { listen, open_data_listen, live, audit, shutdown, tasks })
}

fn checkpoint(live: &LiveConfig, audit: &AuditLog) -> Option<u64> {
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
        checkpoint(&self.live, &self.audit)
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
        checkpoint(&self.live, &self.audit);
    }
}

struct Server {
    live: Arc<LiveConfig>,
    pipeline: Pipeline,
    settings: Settings,
}

impl Server {
    async fn accept_loop(self: Arc<Self>, listener: TcpListener, kind: ListenerKind, mut stop: watch::Receiver<bool>) {
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, remote)) => {
                        let server = self.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move { server.serve_connection(tcp, remote, kind, watcher).await });
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                _ = stop.changed() => break,
            }
        }
        drop(listener);
        if tokio::time::timeout(self.settings.drain_timeout, graceful.shutdown()).await.is_err() {
            tracing::warn!(?kind, "requests still in flight at the end of the drain timeout were cut");
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        tcp: TcpStream,
        remote: SocketAddr,
        kind: ListenerKind,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
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
                    tracing::info!(%remote, %error, ?kind, "TLS handshake refused");
                    return;
                }
                Err(_) => {
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
        let max_request_bytes = self.settings.max_request_bytes;
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let pipeline = pipeline.clone();
            let connection = connection.clone();
            async move {
                let (parts, body) = request.into_parts();
                let mut request = match Limited::new(body, max_request_bytes).collect().await {
                    Ok(body) => Request::from_parts(parts, body.to_bytes()),
                    Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                        let mut request = Request::from_parts(parts, Bytes::new());
                        request.extensions_mut().insert(BodyTooLarge { limit: max_request_bytes });
                        request
                    }
                    // The client went away mid-body: nothing to answer.
                    Err(error) => return Err(std::io::Error::other(error)),
                };
                request.extensions_mut().insert(connection);
                let response = pipeline.oneshot(request).await.unwrap_or_else(|never| match never {});
                Ok::<_, std::io::Error>(response.map(Full::new))
            }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.settings.handshake_timeout);
        let served = watcher.watch(builder.serve_connection(TokioIo::new(stream), service)).await;
        if let Err(error) = served {
            tracing::debug!(%remote, %error, "connection ended with an error");
        }
    }
}
