//! What the gateway counts, for Prometheus (`GET /metrics` on the probes' port, plain HTTP, never
//! on the TLS listeners): refusals before the pipeline by reason (the label is the
//! [`RefusalReason`] variant), TLS handshake failures by reason, requests by provider, API,
//! outcome and status with their latency, exchanges whose client went away, audit records written
//! and failed, and — read when scraped — the connections each listener holds, the body budgets'
//! free bytes, the route table's size, generation and age, the audit's unsigned records and time
//! since its last checkpoint, and when the gateway's own certificate expires; and the route table
//! sources whose latest table was refused.
//!
//! Labels are bounded: provider codes and API names come from the route table the request was
//! matched to (`unrouted` when none), outcomes from the gateway's own problem kinds, never from
//! the request path.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::AuditLog;
use crate::body::BodyBudget;
use crate::config::LiveConfig;
use crate::connections::ConnectionGate;

/// Why a connection or a request head was refused before the pipeline.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RefusalReason {
    HandshakeRefused,
    HandshakeTimedOut,
    OverListenerCap,
    OverAddressCap,
    MalformedRequest,
    HeadersTimedOut,
    IdleClosed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: RefusalReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// Why a TLS handshake failed, from rustls's error (a few classes, for alerts).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum HandshakeFailure {
    /// The client's certificate chains to no trusted CA.
    UnknownIssuer,
    /// The client's certificate is expired or not yet valid.
    Expired,
    /// Another problem with the client's certificate (revoked, wrong usage, bad signature…).
    BadCertificate,
    /// The mutual-TLS listener got no client certificate.
    NoCertificate,
    /// The peer sent an alert (often: it does not trust the gateway's certificate).
    AlertReceived,
    /// Not TLS, or TLS the gateway does not speak.
    Protocol,
    /// The connection failed during the handshake.
    Io,
}

impl HandshakeFailure {
    /// The class of a handshake's error as tokio-rustls reports it.
    pub fn of(error: &std::io::Error) -> Self {
        use tokio_rustls::rustls::{CertificateError, Error};
        let Some(error) = error.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
            return HandshakeFailure::Io;
        };
        match error {
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => HandshakeFailure::UnknownIssuer,
            Error::InvalidCertificate(
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. },
            ) => HandshakeFailure::Expired,
            Error::InvalidCertificate(_) => HandshakeFailure::BadCertificate,
            Error::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            Error::AlertReceived(_) => HandshakeFailure::AlertReceived,
            _ => HandshakeFailure::Protocol,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub reason: HandshakeFailure,
}

/// A request's route and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The provider's agency code as its route table writes it, or `unrouted`.
    pub provider: String,
    pub api: String,
    /// `provider` when the provider answered, else the problem kind the gateway answered with
    /// (`not-granted`, `rate-limited`, `upstream-timeout`…).
    pub outcome: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub provider: String,
    pub api: String,
}

/// Where no route matched.
pub const UNROUTED: &str = "unrouted";

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The gateway's metrics; cheap to clone (handles to the same series).
#[derive(Clone)]
pub struct Metrics {
    pub refusals: Family<ReasonLabels, Counter>,
    pub exchanges: Family<StatusLabels, Counter>,
    pub client_gone: Counter,
    handshake_failures: Family<HandshakeLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    audit_records: Counter,
    audit_failures: Counter,
    connections: Family<ListenerLabels, Gauge>,
    budget_free: Family<ListenerLabels, Gauge>,
    /// Route table sources whose latest table was refused ([`crate::routes::RouteSources`] sets it).
    pub route_tables_refused: Gauge,
    /// What the gauges are read from when scraped.
    sources: Arc<std::sync::Mutex<Sources>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            refusals: Family::default(),
            exchanges: Family::default(),
            client_gone: Counter::default(),
            handshake_failures: Family::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            audit_records: Counter::default(),
            audit_failures: Counter::default(),
            connections: Family::default(),
            budget_free: Family::default(),
            route_tables_refused: Gauge::default(),
            sources: Arc::default(),
        }
    }
}

#[derive(Default)]
struct Sources {
    gates: Vec<(&'static str, Arc<ConnectionGate>)>,
    budgets: Vec<(&'static str, BodyBudget)>,
    live: Option<Arc<LiveConfig>>,
    audit: Option<Arc<AuditLog>>,
}

impl Metrics {
    /// A failed TLS handshake, by the class of its error.
    pub fn handshake_failed(&self, error: &std::io::Error) {
        self.handshake_failures.get_or_create(&HandshakeLabels { reason: HandshakeFailure::of(error) }).inc();
    }

    /// A request that went through the pipeline: its route (`None`: unrouted), its answer's status,
    /// the problem kind when the gateway answered itself, and how long it took.
    pub fn request(&self, route: Option<&(String, String)>, status: u16, problem: Option<&'static str>, seconds: f64) {
        let (provider, api) = match route {
            Some((provider, api)) => (provider.clone(), api.clone()),
            None => (UNROUTED.to_owned(), UNROUTED.to_owned()),
        };
        let outcome = problem.unwrap_or("provider");
        self.requests
            .get_or_create(&RequestLabels { provider: provider.clone(), api: api.clone(), outcome, status })
            .inc();
        self.latency.get_or_create(&RouteLabels { provider, api }).observe(seconds);
    }

    /// An audit record written (`Ok`) or not.
    pub fn audit_written<T, E>(&self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.audit_records.inc(),
            Err(_) => self.audit_failures.inc(),
        };
    }

    /// Reads the route table and the certificate from `live` when scraped.
    pub fn watch_live(&self, live: Arc<LiveConfig>) {
        self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).live = Some(live);
    }

    /// Reads the audit log's checkpoint state when scraped.
    pub fn watch_audit(&self, audit: Arc<AuditLog>) {
        self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).audit = Some(audit);
    }

    pub fn refused(&self, reason: RefusalReason) {
        self.refusals.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn watch_gate(&self, listener: &'static str, gate: Arc<ConnectionGate>) {
        self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).gates.push((listener, gate));
    }

    pub fn watch_budget(&self, direction: &'static str, budget: BodyBudget) {
        self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).budgets.push((direction, budget));
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        {
            let sources = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (listener, gate) in &sources.gates {
                self.connections.get_or_create(&ListenerLabels { listener }).set(gate.held() as i64);
            }
            for (direction, budget) in &sources.budgets {
                self.budget_free.get_or_create(&ListenerLabels { listener: direction }).set(budget.available() as i64);
            }
        }
        let mut registry = Registry::with_prefix("lgsp_gateway");
        self.register_scraped(&mut registry);
        registry.register(
            "refusals",
            "Connections and request heads refused before the pipeline",
            self.refusals.clone(),
        );
        registry.register("exchanges", "Requests through the pipeline, by the status answered", self.exchanges.clone());
        registry.register(
            "exchanges_client_gone",
            "Exchanges completed after their client went away",
            self.client_gone.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed, by the class of their error",
            self.handshake_failures.clone(),
        );
        registry.register(
            "requests",
            "Requests through the pipeline by provider, API (from the route table), outcome and status",
            self.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its audited answer, by provider and API",
            self.latency.clone(),
        );
        registry.register("audit_records", "Audit records of exchanges written durably", self.audit_records.clone());
        registry.register(
            "audit_write_failures",
            "Exchanges whose audit record could not be written (answered 503)",
            self.audit_failures.clone(),
        );
        registry.register(
            "route_tables_refused",
            "Route table sources whose latest table was refused: the gateway serves their last good table, or none",
            self.route_tables_refused.clone(),
        );
        registry.register("connections", "Connections held, per listener", self.connections.clone());
        registry.register(
            "body_budget_free_bytes",
            "Free bytes of the body budgets (listener label: request or response)",
            self.budget_free.clone(),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("writing to a String");
        text
    }
}

/// The gauges read at scrape time (registered only once their source exists), by name without
/// the `lgsp_gateway_` prefix: alert rules may use them, and the chart's tests check the names.
pub const SCRAPED_GAUGES: [&str; 6] =
    [ROUTES, ROUTE_TABLE_GENERATION, ROUTE_TABLE_AGE, CERTIFICATE_NOT_AFTER, AUDIT_UNSIGNED, AUDIT_SINCE_CHECKPOINT];
const ROUTES: &str = "routes";
const ROUTE_TABLE_GENERATION: &str = "route_table_generation";
const ROUTE_TABLE_AGE: &str = "route_table_age_seconds";
const CERTIFICATE_NOT_AFTER: &str = "certificate_not_after_seconds";
const AUDIT_UNSIGNED: &str = "audit_unsigned_records";
const AUDIT_SINCE_CHECKPOINT: &str = "audit_seconds_since_checkpoint";

impl Metrics {
    /// The gauges read from the live configuration and the audit log at scrape time.
    fn register_scraped(&self, registry: &mut Registry) {
        let (live, audit) = {
            let sources = self.sources.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (sources.live.clone(), sources.audit.clone())
        };
        let now = std::time::SystemTime::now();
        let gauge = |value: i64| {
            let gauge: Gauge = Gauge::default();
            gauge.set(value);
            gauge
        };
        let seconds = |value: f64| {
            let gauge: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
            gauge.set(value);
            gauge
        };
        if let Some(live) = live {
            let routes = live.routes.load();
            registry.register(ROUTES, "APIs in the route table in force", gauge(routes.len() as i64));
            registry.register(
                ROUTE_TABLE_GENERATION,
                "Which route table is in force (1 for the first this process built, then one more per change)",
                gauge(routes.generation() as i64),
            );
            if let Some(built) = routes.built_at() {
                let age = now.duration_since(built).unwrap_or_default().as_secs_f64();
                registry.register(ROUTE_TABLE_AGE, "Seconds since the route table in force was built", seconds(age));
            }
            if let Some(not_after) = live.tls.load().certificate_not_after {
                registry.register(
                    CERTIFICATE_NOT_AFTER,
                    "When the gateway's own certificate expires (Unix time)",
                    gauge(not_after.unix_timestamp()),
                );
            }
        }
        if let Some(audit) = audit {
            let (unsigned, since) = audit.unsigned();
            registry.register(
                AUDIT_UNSIGNED,
                "Audit records not yet covered by a signed checkpoint",
                gauge(unsigned as i64),
            );
            registry.register(
                AUDIT_SINCE_CHECKPOINT,
                "Seconds since the audit chain's head was last signed (or had nothing to sign)",
                seconds(since.as_secs_f64()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::ConnectionLimits;

    #[test]
    fn counters_and_scraped_gauges_are_rendered() {
        let metrics = Metrics::default();
        metrics.refused(RefusalReason::OverAddressCap);
        metrics.exchanges.get_or_create(&StatusLabels { status: 403 }).inc();
        let gate = ConnectionGate::new(ConnectionLimits { max_connections: 4, max_per_address: 4 });
        let _held = gate.admit("192.0.2.1".parse().unwrap()).unwrap();
        metrics.watch_gate("open_data", gate);
        metrics.watch_budget("request", BodyBudget::new(1024));
        let text = metrics.render();
        for expected in [
            "lgsp_gateway_refusals_total{reason=\"OverAddressCap\"} 1",
            "lgsp_gateway_exchanges_total{status=\"403\"} 1",
            "lgsp_gateway_connections{listener=\"open_data\"} 1",
            "lgsp_gateway_body_budget_free_bytes{listener=\"request\"} 1024",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }

    #[test]
    fn handshake_failures_are_classed_from_the_rustls_error() {
        use tokio_rustls::rustls::{CertificateError, Error};
        let wrapped = |error: Error| std::io::Error::new(std::io::ErrorKind::InvalidData, error);
        let cases = [
            (wrapped(Error::InvalidCertificate(CertificateError::UnknownIssuer)), HandshakeFailure::UnknownIssuer),
            (wrapped(Error::InvalidCertificate(CertificateError::Expired)), HandshakeFailure::Expired),
            (wrapped(Error::InvalidCertificate(CertificateError::BadSignature)), HandshakeFailure::BadCertificate),
            (wrapped(Error::NoCertificatesPresented), HandshakeFailure::NoCertificate),
            (wrapped(Error::DecryptError), HandshakeFailure::Protocol),
            (std::io::Error::from(std::io::ErrorKind::ConnectionReset), HandshakeFailure::Io),
        ];
        for (error, class) in cases {
            assert_eq!(HandshakeFailure::of(&error), class, "{error}");
        }
    }

    #[test]
    fn requests_are_labelled_by_route_and_outcome_never_by_path() {
        let metrics = Metrics::default();
        let route = ("H49.12".to_owned(), "land-records".to_owned());
        metrics.request(Some(&route), 200, None, 0.002);
        metrics.request(Some(&route), 429, Some("rate-limited"), 0.001);
        metrics.request(None, 404, Some("no-such-api"), 0.001);
        let text = metrics.render();
        for expected in [
            "lgsp_gateway_requests_total{provider=\"H49.12\",api=\"land-records\",outcome=\"provider\",status=\"200\"} 1",
            "lgsp_gateway_requests_total{provider=\"H49.12\",api=\"land-records\",outcome=\"rate-limited\",status=\"429\"} 1",
            "lgsp_gateway_requests_total{provider=\"unrouted\",api=\"unrouted\",outcome=\"no-such-api\",status=\"404\"} 1",
            "lgsp_gateway_request_duration_seconds_count{provider=\"H49.12\",api=\"land-records\"} 2",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }
}
