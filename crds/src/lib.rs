//! The govpaas.io/v1alpha1 API: the five kinds, their validation, and the pure rules that need
//! more than one object (the agency tree, quota carving), for the controllers to call.
//!
//! Validation sits as close to the API server as it can: the OpenAPI schema (patterns, enums,
//! bounds), CEL rules in the CRDs (`x-kubernetes-validations`), ValidatingAdmissionPolicies for
//! rules that need the tenant, and, for rules across objects, pure functions
//! for the controllers. `docs/api.md` lists every rule and the message a user sees.

pub mod admission;
pub mod agency;
pub mod common;
pub mod conditions;
pub mod data_sharing;
pub mod document_service;
#[cfg(test)]
mod fuzz;
pub mod generate;
pub mod hierarchy;
pub mod hosts;
pub mod lgsp;
pub mod metadata;
pub mod platform;
pub mod portal;
pub mod quantity;
pub mod quota;
mod schema;
pub mod status;
pub mod tenant;

pub use agency::{AgencyCode, AgencyLevel};
pub use data_sharing::{DataSharingService, DataSharingServiceSpec, DataSharingServiceStatus};
pub use document_service::{DocumentService, DocumentServiceSpec, DocumentServiceStatus};
pub use platform::{Platform, PlatformSpec, PlatformStatus};
pub use portal::{Portal, PortalSpec, PortalStatus};
pub use tenant::{Tenant, TenantSpec, TenantStatus};

/// The API group.
pub const GROUP: &str = "govpaas.io";
/// The API version.
pub const VERSION: &str = "v1alpha1";
/// The category every kind belongs to: `kubectl get govpaas -A` lists them all.
pub const CATEGORY: &str = "govpaas";
