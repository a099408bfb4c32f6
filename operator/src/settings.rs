//! How the operator runs: what `main` reads from its flags and every controller shares.

/// How the operator runs, for every controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reconcile only Tenants with these labels (`govpaas.io/scope=ci-42`); unset: all. For tests
    /// sharing one cluster and for staged roll-outs; production runs one operator for everything.
    pub tenant_selector: Option<String>,
    /// The operator's namespace: where the LGSP gateway runs.
    pub operator_namespace: String,
    /// At most this many Tenants reconcile at once.
    pub concurrency: u16,
    /// This process's name in Events (its Pod name in a cluster).
    pub instance: Option<String>,
    /// Metrics, certificate gauges and readiness, shared with the HTTP port.
    pub telemetry: crate::telemetry::Telemetry,
}
