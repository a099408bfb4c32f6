//! govpaas operator library: controllers, certificates, LGSP wiring.

pub mod error;
pub mod quota;
pub mod reconcile;
