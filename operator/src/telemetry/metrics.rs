//! Reconcile metrics, labelled by controller and error variant only — never by object name or text.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::certificates::CertificateGauges;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    /// The variant name of [`crate::error::Error`].
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabels {
    pub verb: &'static str,
    /// As kubectl names it: `deployments.apps`, `secrets`, `tenants.govpaas.io/status`.
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

/// The phases of a platform CA rotation, as `govpaas_pki::TrustRotation::phase` names them.
pub const ROTATION_PHASES: [&str; 3] = ["Stable", "Distributing", "Reissuing"];

/// The operator's metrics registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabels, Histogram>,
    managed: Family<ControllerLabels, Gauge>,
    /// 1 for the platform CA rotation's current phase, 0 for the others (an alert on a phase
    /// other than Stable held for days finds a stalled rotation).
    rotation: Family<PhaseLabels, Gauge>,
    leader: Gauge,
    api_requests: Family<ApiRequestLabels, Counter>,
    queue_wait: Family<ControllerLabels, Histogram>,
}

impl Metrics {
    pub fn new(certificates: Arc<CertificateGauges>) -> Self {
        Self::with_tenants(certificates, Arc::default())
    }

    /// The registry with the certificate gauges and the per-tenant quota gauges.
    pub fn with_tenants(certificates: Arc<CertificateGauges>, tenant_quota: Arc<super::TenantQuotaGauges>) -> Self {
        let mut registry = Registry::with_prefix("govpaas");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        // 1 ms … ~16 s: a reconcile is a handful of API round trips.
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 15))
        });
        let managed = Family::<ControllerLabels, Gauge>::default();
        let leader = Gauge::default();
        let rotation = Family::<PhaseLabels, Gauge>::default();
        registry.register("reconciles", "Reconciles run, by controller", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and error variant",
            failures.clone(),
        );
        registry.register("reconcile_duration_seconds", "How long reconciles took, by controller", duration.clone());
        registry.register("managed_objects", "Objects of the controller's kind in its cache", managed.clone());
        registry.register("leader", "1 while this instance holds the leader Lease", leader.clone());
        registry.register(
            "ca_rotation_phase",
            "1 for the platform CA rotation's current phase (as this instance last saw it)",
            rotation.clone(),
        );
        let api_requests = Family::<ApiRequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests sent to the API server, by verb and resource (watches counted when opened)",
            api_requests.clone(),
        );
        // 1 ms … ~33 s.
        let queue_wait = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "reconcile_queue_wait_seconds",
            "How long an object waited, from the event that asked for it to the start of its reconcile, by controller",
            queue_wait.clone(),
        );
        registry.register_collector(Box::new(certificates));
        registry.register_collector(Box::new(tenant_quota));
        Metrics { registry, reconciles, failures, duration, managed, leader, rotation, api_requests, queue_wait }
    }

    /// Starts timing one reconcile of `controller`; the result is recorded when the timer drops.
    pub fn reconcile(self: &Arc<Self>, controller: &'static str) -> ReconcileTimer {
        ReconcileTimer { metrics: self.clone(), controller, start: Instant::now(), error: None }
    }

    /// How many objects the controller's cache holds.
    pub fn set_managed(&self, controller: &'static str, count: usize) {
        self.managed.get_or_create(&ControllerLabels { controller }).set(count as i64);
    }

    /// The platform CA rotation is in `phase`.
    pub fn set_rotation_phase(&self, phase: &str) {
        for known in ROTATION_PHASES {
            self.rotation.get_or_create(&PhaseLabels { phase: known }).set(i64::from(known == phase));
        }
    }

    /// An object of `controller` waited `waited` for its reconcile to start.
    pub fn queue_wait(&self, controller: &'static str, waited: std::time::Duration) {
        self.queue_wait.get_or_create(&ControllerLabels { controller }).observe(waited.as_secs_f64());
    }

    /// One request sent to the API server.
    pub fn api_request(&self, request: &super::api_requests::ApiRequest) {
        let labels = ApiRequestLabels { verb: request.verb.label(), resource: request.resource.clone() };
        self.api_requests.get_or_create(&labels).inc();
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's outcome and duration on drop.
#[derive(Debug)]
pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    controller: &'static str,
    start: Instant,
    error: Option<&'static str>,
}

impl ReconcileTimer {
    /// Marks the reconcile failed with this error variant.
    pub fn failed(&mut self, variant: &'static str) {
        self.error = Some(variant);
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        let labels = ControllerLabels { controller: self.controller };
        self.metrics.reconciles.get_or_create(&labels).inc();
        self.metrics.duration.get_or_create(&labels).observe(self.start.elapsed().as_secs_f64());
        if let Some(error) = self.error {
            self.metrics.failures.get_or_create(&ErrorLabels { controller: self.controller, error }).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_records_on_drop_with_the_error_variant() {
        let metrics = Arc::new(Metrics::new(Arc::default()));
        {
            let _ok = metrics.reconcile("tenant");
        }
        {
            let mut failed = metrics.reconcile("tenant");
            failed.failed("Kube");
        }
        metrics.set_managed("tenant", 3);
        metrics.set_leader(true);
        let text = metrics.render();
        assert!(text.contains("govpaas_reconciles_total{controller=\"tenant\"} 2"), "{text}");
        assert!(text.contains("govpaas_reconcile_errors_total{controller=\"tenant\",error=\"Kube\"} 1"), "{text}");
        assert!(text.contains("govpaas_reconcile_duration_seconds_count{controller=\"tenant\"} 2"), "{text}");
        assert!(text.contains("govpaas_managed_objects{controller=\"tenant\"} 3"), "{text}");
        assert!(text.contains("govpaas_leader 1"), "{text}");
    }
}
