//! Condition types and reasons, shared by the API and the controllers that set them.
//!
//! Every kind reports `Ready`; the others say which part is not, so `kubectl describe` answers
//! "why not ready" without reading logs.

/// The object is fully provisioned and serving.
pub const READY: &str = "Ready";
/// Tenant: its quota, or its children's sum, does not fit its parent's (design: not applied).
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// Tenant: its place in the agency tree is valid (unique code, parent exists and is higher, no
/// cycle, code extends the parent's).
pub const HIERARCHY_VALID: &str = "HierarchyValid";
/// Tenant: `spec.parent` names no Tenant, one not of a higher level, or one in a cycle.
pub const INVALID_PARENT: &str = "InvalidParent";
/// Tenant: suspended (workloads at zero, no new Pods); the portals and document services of a
/// suspended tenant report it too.
pub const SUSPENDED: &str = "Suspended";
/// Tenant: its namespaces, quotas, limit ranges, network policies and role bindings exist.
pub const NAMESPACES_READY: &str = "NamespacesReady";
/// Tenant, Platform: its certificate authority is issued and current.
pub const CA_READY: &str = "CertificateAuthorityReady";
/// Portal, DocumentService: the TLS (and signing) certificates are issued and current;
/// DataSharingService: its LGSP client certificate is.
pub const CERTIFICATE_READY: &str = "CertificateReady";
/// DocumentService: its PersistentVolumeClaim is bound.
pub const STORAGE_BOUND: &str = "StorageBound";
/// DocumentService, DataSharingService: its routes are in the LGSP gateway's table.
pub const ROUTES_REGISTERED: &str = "RoutesRegistered";
/// Portal, DocumentService: the Deployment has its replicas ready.
pub const AVAILABLE: &str = "Available";
/// Platform: the LGSP gateway runs with the current route table.
pub const GATEWAY_READY: &str = "GatewayReady";

/// Reasons, CamelCase, for the conditions above.
pub mod reasons {
    /// Everything is as declared.
    pub const RECONCILED: &str = "Reconciled";
    /// Another Tenant has the same agency code (in either form).
    pub const DUPLICATE_AGENCY_CODE: &str = "DuplicateAgencyCode";
    /// `spec.parent` names no Tenant.
    pub const PARENT_NOT_FOUND: &str = "ParentNotFound";
    /// The parent's level is not higher than the tenant's.
    pub const PARENT_LEVEL: &str = "ParentLevelNotHigher";
    /// Following parents leads back to the tenant.
    pub const PARENT_CYCLE: &str = "ParentCycle";
    /// The agency code does not extend the parent's.
    pub const CODE_NOT_UNDER_PARENT: &str = "AgencyCodeNotUnderParent";
    /// The quota asks for more than the parent has left.
    pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
    /// A namespace split asks for more than the tenant's own share.
    pub const NAMESPACE_QUOTA_EXCEEDED: &str = "NamespaceQuotaExceeded";
    /// A namespace is owned by another Tenant.
    pub const NAMESPACE_CONFLICT: &str = "NamespaceConflict";
    /// A host is already served by another Portal or DocumentService.
    pub const HOST_CONFLICT: &str = "HostConflict";
    /// A value in the spec cannot be used (e.g. an unparsable quantity read from an old object).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The Tenant is suspended.
    pub const SUSPENDED: &str = "Suspended";
    /// Waiting for something else (the Tenant, the Platform, a certificate).
    pub const PENDING: &str = "Pending";
}
