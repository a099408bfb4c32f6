//! What the operator tells the outside about itself: Prometheus metrics, liveness and readiness.
//!
//! One [`Telemetry`] is shared by every controller: each reconcile takes a [`ReconcileTimer`] that
//! records its outcome and duration when dropped (so an early return or `?` is measured too);
//! certificates are reported by the controllers that keep them and turned into gauges at scrape time.

pub mod api_requests;
mod certificates;
mod metrics;
mod server;
mod tenants;

use std::sync::Arc;

pub use certificates::{CertificateGauges, CertificateKey, Observed};
pub use metrics::{Metrics, ReconcileTimer};
pub use server::{Health, router};
pub use tenants::TenantQuotaGauges;

/// Metrics, certificate gauges and health, shared by the controllers and the HTTP server.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub certificates: Arc<CertificateGauges>,
    /// Quota per tenant, read from the shared Tenant cache once the controllers start.
    pub tenant_quota: Arc<TenantQuotaGauges>,
    pub health: Arc<Health>,
}

impl Telemetry {
    pub fn new() -> Self {
        let certificates = Arc::new(CertificateGauges::default());
        let tenant_quota = Arc::new(TenantQuotaGauges::default());
        let metrics = Arc::new(Metrics::with_tenants(certificates.clone(), tenant_quota.clone()));
        Telemetry { metrics, certificates, tenant_quota, health: Arc::new(Health::default()) }
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}
