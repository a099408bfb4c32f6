//! The Portal controller: an agency's public-service portal, run as a Deployment behind a Service
//! and an Ingress with a TLS certificate from the tenant CA, with a PodDisruptionBudget when it has
//! replicas to spare.
//!
//! [`build`] validates and builds the desired objects with no client.

pub mod build;
