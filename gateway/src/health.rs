//! Probes for the kubelet, on a plain-HTTP port of their own (`--health-listen`):
//!
//! - `GET /livez`: 200 while the runtime answers (a wedged process fails it and is restarted);
//! - `GET /readyz`: 200 while the gateway should get traffic: it is not shutting down and its
//!   audit log takes records (a gateway that cannot audit answers 503 to every exchange, so it
//!   leaves the Service's endpoints until the disk is back); 503 with the reason otherwise;
//! - `GET /metrics`: [`crate::metrics`], for Prometheus.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::audit::AuditLog;

/// What `/readyz` looks at.
#[derive(Clone)]
pub struct Readiness {
    pub audit: Arc<AuditLog>,
    pub stopping: watch::Receiver<bool>,
    /// Served at `/metrics`.
    pub metrics: crate::metrics::Metrics,
}

impl Readiness {
    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        if *self.stopping.borrow() {
            return Err("shutting down".to_owned());
        }
        self.audit.writable().map_err(|error| format!("the audit log takes no records: {error}"))
    }
}

fn answer(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text + "\n")));
    *response.status_mut() = status;
    response
}

/// Serves the probes on `listener` until `stop`.
pub async fn serve(listener: TcpListener, readiness: Readiness, mut stop: watch::Receiver<bool>) {
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = match request.uri().path() {
                    "/livez" | "/healthz" => answer(StatusCode::OK, "ok".to_owned()),
                    "/readyz" => match readiness.check() {
                        Ok(()) => answer(StatusCode::OK, "ready".to_owned()),
                        Err(reason) => answer(StatusCode::SERVICE_UNAVAILABLE, reason),
                    },
                    "/metrics" => {
                        let mut metrics = answer(StatusCode::OK, readiness.metrics.render());
                        metrics.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        metrics
                    }
                    _ => answer(StatusCode::NOT_FOUND, "GET /livez (or /healthz), /readyz or /metrics".to_owned()),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(Duration::from_secs(10), connection).await;
        });
    }
}

/// Binds the probes' port.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
