//! govpaas operator library: controllers, certificates, LGSP wiring.

pub mod certificates;
pub mod data_sharing;
pub mod document;
pub mod error;
pub mod leader;
pub mod portal;
pub mod quota;
pub mod reconcile;
pub mod telemetry;
pub mod tenant;
pub mod trust;
pub mod workload;
