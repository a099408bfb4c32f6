//! What the gateway counts, for Prometheus (`GET /metrics` on the probes' port): refusals before
//! the pipeline by reason (the label is the [`RefusalReason`] variant), exchanges by status,
//! exchanges whose client went away, and — read when scraped — the connections each listener
//! holds and the body budgets' free bytes.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::body::BodyBudget;
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

/// The gateway's metrics; cheap to clone (handles to the same series).
#[derive(Clone, Default)]
pub struct Metrics {
    pub refusals: Family<ReasonLabels, Counter>,
    pub exchanges: Family<StatusLabels, Counter>,
    pub client_gone: Counter,
    connections: Family<ListenerLabels, Gauge>,
    budget_free: Family<ListenerLabels, Gauge>,
    /// What the gauges are read from when scraped.
    sources: Arc<std::sync::Mutex<Sources>>,
}

#[derive(Default)]
struct Sources {
    gates: Vec<(&'static str, Arc<ConnectionGate>)>,
    budgets: Vec<(&'static str, BodyBudget)>,
}

impl Metrics {
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
}
