//! The small reconcile framework every govpaas controller is built on.
//!
//! A reconcile reads from caches, validates and builds its desired objects with no client (pure
//! functions in the controller's own module), then hands them to this framework:
//! - [`apply`]: server-side apply under the one field manager [`apply::FIELD_MANAGER`] (skipped for
//!   an object its cache shows exactly as last applied), and pruning of objects the controller
//!   created earlier but no longer wants, found by label in its caches;
//! - [`known`]: whole objects a reconcile reads, kept while their cached version is unchanged;
//! - [`conditions`]: status conditions whose `lastTransitionTime` moves only on a real transition,
//!   so a resync of an unchanged world writes nothing;
//! - [`events`]: Kubernetes Events for user errors, published only when a condition changes;
//! - [`outcome`]: why a reconcile stopped early, as a stable reason ([`outcome::Halt`]) or an
//!   error;
//! - [`labels`]: the `app.kubernetes.io/*` labels every owned object carries;
//! - [`watch`]: watchers whose caches hold only what reconcile reads (metadata of owned kinds,
//!   managed fields stripped);
//! - [`shared`]: the one watch of a kind that several controllers read, feeding each of them;
//! - [`runner`]: the controller loop with bounded concurrency and per-object backoff on errors.

pub mod apply;
pub mod conditions;
pub mod events;
pub mod known;
pub mod labels;
pub mod outcome;
pub mod runner;
pub mod shared;
pub mod triggers;
pub mod watch;

/// Why an object cannot be applied as declared, or not yet: the stable reason and the message of its
/// `Ready` condition (and of the Event that goes with it). Reasons are constants, so users and
/// alerts can tell "the tenant CA is not issued yet" from "it was issued for another domain".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Problem { reason, message: message.into() }
    }
}
