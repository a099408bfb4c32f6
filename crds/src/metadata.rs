//! Labels and annotations that tie Kubernetes objects to govpaas tenants.
//!
//! The tenant controller writes them on every namespace it provisions; the
//! ValidatingAdmissionPolicies read them from `namespaceObject`, so rules that need the tenant
//! (hosts under its domain, no new services while suspended) hold without a webhook.

/// Label on a tenant namespace: the name of the `Tenant` that owns it.
pub const TENANT_LABEL: &str = "govpaas.io/tenant";

/// Label on a tenant namespace: the owning agency's code (`H49.12`), as written in the Tenant.
pub const AGENCY_CODE_LABEL: &str = "govpaas.io/agency-code";

/// Label on a tenant namespace: the owning agency's level (`Province`, `Department`, `Commune`,
/// `Unit`).
pub const AGENCY_LEVEL_LABEL: &str = "govpaas.io/agency-level";

/// Label on a tenant namespace, `"true"` while the Tenant is suspended: new services are refused.
pub const SUSPENDED_LABEL: &str = "govpaas.io/suspended";

/// Label on a tenant namespace, `"true"` when the Tenant's `spec.exposure.nodePorts` allows
/// NodePort Services there (read by the tenant-services ValidatingAdmissionPolicy).
pub const ALLOW_NODE_PORTS_LABEL: &str = "govpaas.io/allow-node-ports";

/// Label on a tenant namespace, `"true"` when the Tenant's `spec.exposure.loadBalancers` allows
/// LoadBalancer Services there.
pub const ALLOW_LOAD_BALANCERS_LABEL: &str = "govpaas.io/allow-load-balancers";

/// Annotation on a tenant namespace: the tenant's DNS domain (`so-noi-vu.quangnam.gov.vn`), under
/// which every host of its Portals and DocumentServices must sit.
pub const DOMAIN_ANNOTATION: &str = "govpaas.io/domain";
