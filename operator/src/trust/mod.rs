//! The platform's trust: which platform CA issues, which CAs every trust bundle carries, and the
//! CA rotation that replaces one platform CA with another without an outage.
//!
//! - `crate::certificates::trust_state`: the persisted state and the pure decision of a rotation's
//!   next step (a library: the tenant and service controllers read the trust too);
//! - [`census`]: where the cluster's bundles and certificates stand, counted from listed objects;
//! - `crate::certificates::trust_store`: the ConfigMap the state lives in, and `PlatformTrust`,
//!   what the tenant and service controllers issue with;
//! - [`reconcile`]: the controller of the Platform's CA: starts, advances, completes or aborts a
//!   rotation, and reports it in the Platform's status, conditions and Events.
//!
//! Triggers: the Platform's spec changing (a generation predicate: its own status writes do not
//! retrigger it); the trust ConfigMap changing (another operator moved the rotation, or someone
//! edited it); during a rotation, a poll whose period grows with the number of certificates;
//! hourly otherwise.

pub mod census;
pub mod reconcile;

pub use reconcile::run;
