//! govpaas operator library: controllers, certificates, LGSP wiring.

/// The certificate authority: the `govpaas-pki` library, under the name the controllers use.
pub use govpaas_pki as certificates;
pub mod data_sharing;
pub mod document;
pub mod error;
pub mod leader;
pub mod lgsp;
pub mod portal;
pub mod quota;
pub mod reconcile;
pub mod telemetry;
pub mod tenant;
pub mod trust;
pub mod workload;
