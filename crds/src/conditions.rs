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
/// Tenant: suspended (workloads at zero, no new Pods); the Portals and DocumentServices of a
/// suspended tenant report it too.
pub const SUSPENDED: &str = "Suspended";
/// Tenant: its namespaces, quotas, limit ranges, network policies and role bindings exist.
pub const NAMESPACES_READY: &str = "NamespacesReady";
/// Platform: its certificate authority is issued and current.
pub const CA_READY: &str = "CertificateAuthorityReady";
/// Platform: a CA rotation is under way (or why a requested one is refused).
pub const CA_ROTATION: &str = "CaRotation";
/// Platform: the gateway has what it needs to reach the national platform (`lgsp.ndxp`).
pub const NATIONAL_PLATFORM_READY: &str = "NationalPlatformReady";
/// Portal, DocumentService: the TLS (and signing) certificates are issued and current;
/// DataSharingService: its LGSP client certificate is.
pub const CERTIFICATE_READY: &str = "CertificateReady";
/// DocumentService: its PersistentVolumeClaim is bound.
pub const STORAGE_BOUND: &str = "StorageBound";
/// DocumentService, DataSharingService: its routes are in the LGSP gateway's table.
pub const ROUTES_REGISTERED: &str = "RoutesRegistered";
/// Portal, DocumentService: the Deployment has its replicas ready.
pub const AVAILABLE: &str = "Available";

/// A condition type as documented for one kind: `kubectl explain <kind>.status.conditions` and
/// docs/conditions.md are generated from these lists, and a test of the operator checks that each
/// controller writes exactly the types listed for its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Documented {
    pub type_: &'static str,
    /// What `True` means, and where `False` points.
    pub meaning: &'static str,
}

const fn documented(type_: &'static str, meaning: &'static str) -> Documented {
    Documented { type_, meaning }
}

/// The conditions of a Tenant.
pub const TENANT: &[Documented] = &[
    documented(READY, "everything the Tenant asks for is provisioned; False names the first thing that is not"),
    documented(
        HIERARCHY_VALID,
        "its place in the agency tree is valid: unique agency code, an existing parent of a higher level, no cycle, a code that extends the parent's",
    ),
    documented(INVALID_PARENT, "True when spec.parent names no Tenant, one not of a higher level, or one in a cycle"),
    documented(
        QUOTA_EXCEEDED,
        "True when its quota, or its children's sum, does not fit what its parent has left; nothing is applied then",
    ),
    documented(SUSPENDED, "True while spec.suspended holds: workloads at zero, no new Pods"),
    documented(NAMESPACES_READY, "its namespaces, quotas, limit ranges, network policies and role bindings exist"),
];

/// The conditions of the Platform.
pub const PLATFORM: &[Documented] = &[
    documented(READY, "the platform CA issues; False when it cannot be used or a requested rotation is refused"),
    documented(CA_READY, "the CA in spec.ca.secretName loads and issues tenant CAs"),
    documented(
        CA_ROTATION,
        "True while a CA rotation is under way (reason Distributing or Reissuing); False when stable, or with the reason a requested rotation is refused",
    ),
    documented(
        NATIONAL_PLATFORM_READY,
        "present when spec.lgsp.ndxp is set: True when the gateway's Secret holds the NDXP's URL and CAs and the province's client identity (status.ndxp says which); False names what is missing (NdxpCaInvalid, ClientIdentityInvalid, ProvinceTenantMissing, Pending)",
    ),
];

/// The conditions of a Portal.
pub const PORTAL: &[Documented] = &[
    documented(
        READY,
        "the portal serves its hosts; False names why not (tenant suspended or not ready, host conflict, quota)",
    ),
    documented(AVAILABLE, "its Deployment has its replicas ready"),
    documented(CERTIFICATE_READY, "its TLS certificate is issued by the tenant CA and current"),
    documented(SUSPENDED, "present and True while its tenant is suspended: scaled to zero replicas, nothing deleted"),
];

/// The conditions of a DocumentService.
pub const DOCUMENT_SERVICE: &[Documented] = &[
    documented(READY, "the document service runs with its storage and certificates; False names why not"),
    documented(AVAILABLE, "its Deployment has its replicas ready"),
    documented(CERTIFICATE_READY, "its TLS and signing certificates are issued by the tenant CA and current"),
    documented(SUSPENDED, "present and True while its tenant is suspended: scaled to zero replicas, nothing deleted"),
    documented(STORAGE_BOUND, "its PersistentVolumeClaim is bound"),
    documented(ROUTES_REGISTERED, "its electronic document exchange routes are in the LGSP gateway's table"),
];

/// The conditions of a DataSharingService.
pub const DATA_SHARING_SERVICE: &[Documented] = &[
    documented(READY, "its provided APIs are registered and its consumptions decided; False names why not"),
    documented(ROUTES_REGISTERED, "its provided APIs are in the LGSP gateway's route table"),
    documented(CERTIFICATE_READY, "its LGSP client certificate (when it consumes) is issued and current"),
];

/// The documented conditions of `kind`, if it is a govpaas kind.
pub fn of_kind(kind: &str) -> Option<&'static [Documented]> {
    match kind {
        "Tenant" => Some(TENANT),
        "Platform" => Some(PLATFORM),
        "Portal" => Some(PORTAL),
        "DocumentService" => Some(DOCUMENT_SERVICE),
        "DataSharingService" => Some(DATA_SHARING_SERVICE),
        _ => None,
    }
}

/// The description of `status.conditions` for `kind`, as `kubectl explain` shows it.
pub fn description(kind: &str) -> String {
    let mut text = String::from(
        "Standard conditions, keyed by type. `Ready` says whether the object is fully provisioned; the others say which part is not.",
    );
    for condition in of_kind(kind).unwrap_or_default() {
        text.push_str(&format!("\n- {}: {}.", condition.type_, condition.meaning));
    }
    text
}

/// docs/conditions.md: every kind's conditions, from the lists above.
pub fn markdown() -> String {
    let mut text = String::from(
        "# Status conditions\n\n<!-- generated by `cargo xtask crds` from crds/src/conditions.rs, do not edit -->\n\n\
         Every govpaas object has a `status` subresource with `observedGeneration` and standard\n\
         `metav1.Condition`s keyed by `type`. `Ready` is on every kind; the others say which part is not ready.\n\
         Each condition's `reason` is CamelCase and stable (alerts may match it); its `message` is for people.\n",
    );
    for kind in ["Platform", "Tenant", "Portal", "DocumentService", "DataSharingService"] {
        text.push_str(&format!("\n## {kind}\n\n| Type | Meaning |\n|---|---|\n"));
        for condition in of_kind(kind).unwrap_or_default() {
            text.push_str(&format!("| `{}` | {} |\n", condition.type_, condition.meaning));
        }
    }
    text
}

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
    /// The Platform's certificate settings (lifetimes, renewal point, key type) cannot be used.
    pub const CERTIFICATE_POLICY_INVALID: &str = "CertificatePolicyInvalid";
    /// The platform CA or its trust state cannot be used (missing, damaged, another CA).
    pub const PLATFORM_CA_NOT_READY: &str = "PlatformCaNotReady";
    /// The tenant controller has not issued, renewed or re-issued the tenant CA yet.
    pub const TENANT_CA_PENDING: &str = "TenantCaPending";
    /// The tenant CA Secret does not hold a usable CA.
    pub const TENANT_CA_INVALID: &str = "TenantCaInvalid";
    /// The tenant CA was issued for another agency code or domain than the Tenant now has.
    pub const TENANT_CA_MISMATCH: &str = "TenantCaMismatch";
}
