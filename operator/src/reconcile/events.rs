//! Kubernetes Events for what users must know: their mistakes and the operator's notable actions.
//!
//! Events are published when a condition changes (see [`super::conditions::changed_with_events`]:
//! a Warning on any change, a Normal Event on a new status or reason), never on every pass, so a
//! steady world produces no Events. Failing to publish one is logged and
//! otherwise ignored: an Event is a courtesy, the condition in status is the record.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use tokio::sync::Mutex;

use crate::error::Error;

/// The `reportingController` of every govpaas Event.
pub const REPORTING_CONTROLLER: &str = "govpaas.io/operator";

/// How long a published Event takes repeats of itself into its series.
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);

/// What makes two Events the same: everything a reader sees, the note included. (kube-runtime's
/// `Recorder` leaves the note out of its key, so a second refusal of the same reason with another
/// cause was counted into the first Event's series and `kubectl describe` kept showing the first
/// cause; a condition's message and its Event's note must agree.)
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    regarding: (Option<String>, Option<String>, Option<String>, Option<String>),
    related: Option<(Option<String>, Option<String>, Option<String>)>,
    warning: bool,
    reason: String,
    action: String,
    note: String,
}

/// An Event already published, which repeats of it count into.
#[derive(Clone, Debug)]
struct Published {
    namespace: String,
    name: String,
    count: i32,
    at: Instant,
}

/// Publishes Events on behalf of the operator.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    instance: String,
    published: Arc<Mutex<HashMap<SeriesKey, Published>>>,
}

impl Publisher {
    /// `instance` names this operator process (its Pod name in a cluster).
    pub fn new(client: Client, instance: Option<String>) -> Self {
        Publisher {
            client,
            instance: instance.unwrap_or_else(|| REPORTING_CONTROLLER.to_owned()),
            published: Arc::default(),
        }
    }

    /// Publishes one Event about `regarding` (optionally naming a `related` object). The same Event
    /// again within a few minutes (same reason, action and note) counts into its series instead.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
        related: Option<ObjectReference>,
    ) {
        // The Events API caps notes at 1 kB.
        let note = truncate(note, 1000);
        let key = SeriesKey {
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
            related: related.as_ref().map(|r| (r.kind.clone(), r.namespace.clone(), r.name.clone())),
            warning: matches!(type_, EventType::Warning),
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.clone(),
        };
        if let Err(err) = self.send(key, regarding, related).await {
            let err = Error::Event(err);
            tracing::warn!(error = %err, kind = ?regarding.kind, name = ?regarding.name, reason, "could not publish an Event");
        }
    }

    async fn send(
        &self,
        key: SeriesKey,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
    ) -> Result<(), kube::Error> {
        // The lock is never held across a request: Events of other objects do not wait.
        let previous = {
            let mut published = self.published.lock().await;
            published.retain(|_, p| p.at.elapsed() < SERIES_WINDOW);
            published.get(&key).cloned()
        };
        let now = MicroTime(Timestamp::now());
        if let Some(previous) = previous {
            let events: Api<Event> = Api::namespaced(self.client.clone(), &previous.namespace);
            let series = EventSeries { count: previous.count + 1, last_observed_time: now.clone() };
            let patch = serde_json::json!({ "series": series });
            match events.patch(&previous.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    let updated = Published { count: previous.count + 1, at: Instant::now(), ..previous };
                    self.published.lock().await.insert(key, updated);
                    return Ok(());
                }
                // Expired or deleted: start afresh.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(err),
            }
        }
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(REPORTING_CONTROLLER), now.0.as_nanosecond());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..Default::default() },
            event_time: Some(now),
            action: Some(key.action.clone()),
            reason: Some(key.reason.clone()),
            note: Some(key.note.clone()),
            regarding: Some(regarding.clone()),
            related,
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if key.warning { "Warning" } else { "Normal" }.to_owned()),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        events.create(&PostParams::default(), &event).await?;
        self.published.lock().await.insert(key, Published { namespace, name, count: 1, at: Instant::now() });
        Ok(())
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
