//! What the service controllers (`portal`, `document`, `data_sharing`) share, and none of them
//! owns: the caches and wake-ups of [`runtime`], the one reconcile [`pipeline`] each kind plugs
//! into through [`pipeline::ServiceKind`], and the typed desired sets of [`owned`], applied and
//! pruned from the same set. The composition root (`controllers.rs`) fills the caches and
//! starts the controllers; this module names none of them.

pub mod owned;
pub mod pipeline;
pub mod runtime;
pub mod workload;

#[cfg(test)]
mod certificate_gauges;
