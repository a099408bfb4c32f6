//! What the operator tells the outside about itself: Prometheus metrics, liveness and readiness.
//!
//! One [`Telemetry`] is shared by every controller: each reconcile takes a [`ReconcileTimer`] that
//! records its outcome and duration when dropped (so an early return or `?` is measured too);
//! certificates are reported by the controllers that keep them and turned into gauges at scrape time.

mod certificates;
mod metrics;
mod server;

use std::sync::Arc;

pub use certificates::{CertificateGauges, CertificateKey};
pub use metrics::{Metrics, ReconcileTimer};
pub use server::{Health, router};

/// Metrics, certificate gauges and health, shared by the controllers and the HTTP server.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub certificates: Arc<CertificateGauges>,
    pub health: Arc<Health>,
}

impl Telemetry {
    pub fn new() -> Self {
        let certificates = Arc::new(CertificateGauges::default());
        let metrics = Arc::new(Metrics::new(certificates.clone()));
        Telemetry { metrics, certificates, health: Arc::new(Health::default()) }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
