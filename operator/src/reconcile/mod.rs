//! The small reconcile framework every govpaas controller is built on.
//!
//! A reconcile reads from caches, validates and builds its desired objects with no client (pure
//! functions in the controller's own module), then hands them to this framework:
//! - [`apply`]: server-side apply under the one field manager [`apply::FIELD_MANAGER`], and pruning
//!   of objects the controller created earlier but no longer wants, found by label in its caches;
//! - [`conditions`]: status conditions whose `lastTransitionTime` moves only on a real transition,
//!   so a resync of an unchanged world writes nothing;
//! - [`events`]: Kubernetes Events for user errors, published only when a condition changes;
//! - [`labels`]: the `app.kubernetes.io/*` labels every owned object carries;
//! - [`watch`]: watchers whose caches hold only what reconcile reads (metadata of owned kinds,
//!   managed fields stripped);
//! - [`shared`]: the one watch of a kind that several controllers read, feeding each of them;
//! - [`runner`]: the controller loop with bounded concurrency and per-object backoff on errors.

pub mod apply;
pub mod conditions;
pub mod events;
pub mod labels;
pub mod runner;
pub mod shared;
pub mod triggers;
pub mod watch;
