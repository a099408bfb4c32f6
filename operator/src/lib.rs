//! govpaas operator library: controllers, certificates, LGSP wiring.

pub mod certificates;
pub mod controllers;
pub mod data_sharing;
pub mod document;
pub mod error;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod leader;
pub mod lgsp;
pub mod portal;
pub mod quota;
pub mod reconcile;
pub mod service;
pub mod settings;
pub mod telemetry;
pub mod tenancy;
pub mod tenant;
pub mod trust;
pub mod workload;
