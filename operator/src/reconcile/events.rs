//! Kubernetes Events for what users must know: their mistakes and the operator's notable actions.
//!
//! Events are published when a condition changes (see [`super::conditions::changed_with_events`]),
//! never on every pass, so a steady world produces no Events. Failing to publish one is logged and
//! otherwise ignored: an Event is a courtesy, the condition in status is the record.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::error::Error;

/// The `reportingController` of every govpaas Event.
pub const REPORTING_CONTROLLER: &str = "govpaas.io/operator";

/// Publishes Events on behalf of the operator.
#[derive(Clone)]
pub struct Publisher {
    recorder: Recorder,
}

impl Publisher {
    /// `instance` names this operator process (its Pod name in a cluster).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: REPORTING_CONTROLLER.into(), instance };
        Publisher { recorder: Recorder::new(client, reporter) }
    }

    /// Publishes one Event about `regarding` (optionally naming a `related` object).
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
        related: Option<ObjectReference>,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            // The Events API caps notes at 1 kB.
            note: Some(truncate(note, 1000)),
            action: action.to_owned(),
            secondary: related,
        };
        if let Err(err) = self.recorder.publish(&event, regarding).await {
            let err = Error::Event(err);
            tracing::warn!(error = %err, kind = ?regarding.kind, name = ?regarding.name, reason, "could not publish an Event");
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_utf8() {
        let vietnamese = "Ủy ban nhân dân tỉnh Quảng Nam ".repeat(50);
        let cut = truncate(&vietnamese, 1000);
        assert!(cut.len() <= 1000);
        assert!(vietnamese.starts_with(&cut));
        assert_eq!(truncate("ngắn", 1000), "ngắn");
    }
}
