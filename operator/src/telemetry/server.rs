//! The operator's HTTP port: `/metrics`, `/healthz` (the process serves) and `/readyz` (a standby
//! waiting for the Lease, or a leader whose controllers' caches have synced).

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::Telemetry;

/// Readiness of this instance.
#[derive(Debug, Default)]
pub struct Health {
    leading: AtomicBool,
    /// Per controller: has its cache synced?
    synced: RwLock<BTreeMap<&'static str, bool>>,
}

impl Health {
    /// A controller that will report its cache: not ready until it does.
    pub fn expect(&self, controller: &'static str) {
        self.synced.write().unwrap_or_else(|p| p.into_inner()).entry(controller).or_insert(false);
    }

    pub fn synced(&self, controller: &'static str) {
        self.synced.write().unwrap_or_else(|p| p.into_inner()).insert(controller, true);
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::SeqCst);
    }

    /// What is not ready yet, or `None` when ready. A standby is ready: it is ready to take over.
    pub fn not_ready(&self) -> Option<String> {
        if !self.leading.load(Ordering::SeqCst) {
            return None;
        }
        let synced = self.synced.read().unwrap_or_else(|p| p.into_inner());
        let waiting: Vec<&str> = synced.iter().filter(|(_, ok)| !**ok).map(|(name, _)| *name).collect();
        (!waiting.is_empty()).then(|| format!("caches not synced: {}", waiting.join(", ")))
    }
}

async fn metrics(State(telemetry): State<Telemetry>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], telemetry.metrics.render())
}

async fn readyz(State(telemetry): State<Telemetry>) -> impl IntoResponse {
    match telemetry.health.not_ready() {
        None => (StatusCode::OK, "ok".to_string()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// The router, separate from binding so it can be tested without a socket.
pub fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(telemetry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_ready_only_when_every_cache_synced_and_a_standby_is_ready() {
        let health = Health::default();
        health.expect("tenant");
        health.expect("portal");
        assert_eq!(health.not_ready(), None, "a standby is ready to take over");
        health.set_leading(true);
        assert_eq!(health.not_ready().as_deref(), Some("caches not synced: portal, tenant"));
        health.synced("tenant");
        health.synced("portal");
        assert_eq!(health.not_ready(), None);
    }

    #[tokio::test]
    async fn the_port_answers_each_path() {
        let telemetry = Telemetry::new();
        telemetry.health.expect("tenant");
        telemetry.health.set_leading(true);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(telemetry.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            stream
                .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            stream.read_to_string(&mut out).await.unwrap();
            out
        };
        assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get("/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503") && not_ready.contains("tenant"), "{not_ready}");
        telemetry.health.synced("tenant");
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
        let _timer = telemetry.metrics.reconcile("tenant");
        drop(_timer);
        assert!(get("/metrics").await.contains("govpaas_reconciles_total{controller=\"tenant\"} 1"));
    }
}
