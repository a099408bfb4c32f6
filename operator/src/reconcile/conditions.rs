//! Status conditions that only change when the world does.
//!
//! A controller states its conditions afresh on every reconcile ([`Desired`]); [`merge`] turns them
//! into `metav1.Condition`s, keeping the previous `lastTransitionTime` unless the status flipped,
//! so re-stating an unchanged condition produces a byte-identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

/// A condition as a controller states it on one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: String,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
    /// The Event to publish when this condition changes; `None` for conditions that are not worth a
    /// line in `kubectl describe`'s event list. A Warning is published on any change (a new cause of
    /// a failure is news); a Normal Event only on a transition, a new status or reason: a message that
    /// only counts progress ("1 of 3 granted") is read from the condition, not announced each time.
    pub event: Option<EventType>,
}

impl Desired {
    /// A condition that holds.
    pub fn holds(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Desired { type_: type_.into(), status: TRUE, reason: reason.into(), message: message.into(), event: None }
    }

    /// A condition that does not hold.
    pub fn fails(type_: &str, reason: &str, message: impl Into<String>) -> Self {
        Desired { type_: type_.into(), status: FALSE, reason: reason.into(), message: message.into(), event: None }
    }

    /// Publish an Event of this type whenever the condition changes.
    pub fn with_event(mut self, event: EventType) -> Self {
        self.event = Some(event);
        self
    }

    /// Whether `previous` already says what this condition says.
    pub fn same_as(&self, previous: &Condition) -> bool {
        previous.type_ == self.type_
            && previous.status == self.status
            && previous.reason == self.reason
            && previous.message == self.message
    }

    /// Whether `previous` is this condition's type with its status and reason: the same state,
    /// whatever its message says of the progress within it.
    pub fn same_transition_as(&self, previous: &Condition) -> bool {
        previous.type_ == self.type_ && previous.status == self.status && previous.reason == self.reason
    }
}

/// The conditions to write: `desired`, in its order, with `lastTransitionTime` carried over from
/// `previous` when the status did not change, else `now`; every one at `generation`.
pub fn merge(previous: &[Condition], desired: &[Desired], generation: Option<i64>, now: &Time) -> Vec<Condition> {
    desired
        .iter()
        .map(|want| {
            let before = previous.iter().find(|c| c.type_ == want.type_);
            let last_transition_time = match before {
                Some(before) if before.status == want.status => before.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: want.type_.clone(),
                status: want.status.to_owned(),
                reason: want.reason.clone(),
                message: want.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The desired conditions that changed since `previous` and ask for an Event: a Warning on any
/// change, a Normal Event on a transition (status or reason).
pub fn changed_with_events<'a>(previous: &[Condition], desired: &'a [Desired]) -> Vec<&'a Desired> {
    desired
        .iter()
        .filter(|want| match want.event {
            None => false,
            Some(EventType::Warning) => !previous.iter().any(|before| want.same_as(before)),
            Some(EventType::Normal) => !previous.iter().any(|before| want.same_transition_as(before)),
        })
        .collect()
}

/// The condition of `type_` in `conditions`, if any.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The condition of `type_` in `previous`, re-stated as it is (no Event): what a reconcile that
/// changed nothing it describes says of it.
pub fn carried_over(previous: &[Condition], type_: &str) -> Option<Desired> {
    find(previous, type_).map(carry)
}

/// Every condition in `previous`, re-stated as it is.
pub fn carried(previous: &[Condition]) -> Vec<Desired> {
    previous.iter().map(carry).collect()
}

fn carry(condition: &Condition) -> Desired {
    Desired {
        type_: condition.type_.clone(),
        status: match condition.status.as_str() {
            TRUE => TRUE,
            FALSE => FALSE,
            _ => UNKNOWN,
        },
        reason: condition.reason.clone(),
        message: condition.message.clone(),
        event: None,
    }
}

/// Whether the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// A `Time` from an `time::OffsetDateTime` (whole seconds, as certificates carry them).
pub fn time_of(at: time::OffsetDateTime) -> Time {
    Time(
        k8s_openapi::jiff::Timestamp::from_second(at.unix_timestamp())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(&[], &[Desired::fails("Ready", "Pending", "waiting")], Some(1), &at(100));
        assert_eq!(first[0].last_transition_time, at(100));

        // Same status, new reason and message: still the same transition.
        let second = merge(&first, &[Desired::fails("Ready", "QuotaExceeded", "too big")], Some(2), &at(200));
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].observed_generation, Some(2));

        let third = merge(&second, &[Desired::holds("Ready", "Reconciled", "ok")], Some(2), &at(300));
        assert_eq!(third[0].last_transition_time, at(300));

        // Restating everything unchanged is byte-identical.
        let again = merge(&third, &[Desired::holds("Ready", "Reconciled", "ok")], Some(2), &at(400));
        assert_eq!(again, third);
    }

    #[test]
    fn events_only_for_changes() {
        let bad = Desired::fails("Ready", "QuotaExceeded", "too big").with_event(EventType::Warning);
        let quiet = Desired::holds("Suspended", "NotSuspended", "");
        let desired = vec![bad.clone(), quiet];
        assert_eq!(changed_with_events(&[], &desired), vec![&bad]);
        let written = merge(&[], &desired, Some(1), &at(1));
        assert!(changed_with_events(&written, &desired).is_empty());
        let worse = vec![Desired::fails("Ready", "QuotaExceeded", "even bigger").with_event(EventType::Warning)];
        assert_eq!(changed_with_events(&written, &worse).len(), 1);
        assert!(is_true(&written, "Suspended"));
        assert!(!is_true(&written, "Ready"));
    }

    #[test]
    fn normal_events_only_for_transitions() {
        let pending =
            Desired::holds("Ready", "Reconciled", "2 consumptions: 0 granted, 2 pending").with_event(EventType::Normal);
        let written = merge(&[], std::slice::from_ref(&pending), Some(1), &at(1));
        // Progress within the same state: the condition says it, no Event does.
        let progress =
            Desired::holds("Ready", "Reconciled", "2 consumptions: 1 granted, 1 pending").with_event(EventType::Normal);
        assert!(changed_with_events(&written, std::slice::from_ref(&progress)).is_empty());
        // A new reason or status is a transition: announced, whatever the message.
        let failed =
            Desired::fails("Ready", "Reconciled", "2 consumptions: 1 granted, 1 pending").with_event(EventType::Normal);
        assert_eq!(changed_with_events(&written, std::slice::from_ref(&failed)).len(), 1);
        let other =
            Desired::holds("Ready", "Suspended", "2 consumptions: 0 granted, 2 pending").with_event(EventType::Normal);
        assert_eq!(changed_with_events(&written, std::slice::from_ref(&other)).len(), 1);
        // A condition seen for the first time is a transition.
        let fresh = Desired::holds("Available", "Reconciled", "1 of 1").with_event(EventType::Normal);
        assert_eq!(changed_with_events(&written, std::slice::from_ref(&fresh)).len(), 1);
    }
}
