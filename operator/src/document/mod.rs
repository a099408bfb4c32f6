//! The DocumentService controller: an agency's document management and electronic document
//! exchange, run as a Deployment with its own volume, a Service, an Ingress for the staff's web
//! host, a TLS certificate and a document-signing certificate from the tenant CA.
//!
//! [`build`] validates and builds the desired objects with no client; [`retention`] decides what
//! happens to the documents' volume.

pub mod build;
pub mod retention;
