//! What must hold before anything of a Tenant is applied. Pure: it reads the Tenant, the other
//! Tenants and the Platform as the caches show them.
//!
//! Rules about one object alone live in the CRD schema and CEL; the ones here need other objects:
//! the agency tree (`govpaas_crds::hierarchy`), the domain under the Platform's base domain and
//! unique among tenants, and a quota that parses. A Tenant that breaks one is not applied at all:
//! whatever it had stays as it was, and its status says why.

use govpaas_crds::Tenant;
use govpaas_crds::hierarchy::{self, HierarchyError, TenantNode};
use govpaas_crds::quota::{QuotaError, QuotaVector};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use crate::quota::Member;

/// What validation found.
#[derive(Debug, Clone, PartialEq)]
pub struct Validation {
    /// Broken rules of the agency tree, the parent's among them.
    pub hierarchy: Vec<HierarchyError>,
    /// The tenant's domain, or why it cannot have it.
    pub domain: Result<String, DomainProblem>,
    /// The tenant as quota decisions see it, or why its quota cannot be read.
    pub member: Result<Member, QuotaError>,
    /// The schema's rules about admins and the display name, again (defence in depth: a Tenant
    /// stored under an older CRD never binds `system:authenticated` as its admins): `Err` lists
    /// what is wrong, `; `-separated.
    pub spec: Result<(), String>,
}

impl Validation {
    /// Whether the tenant may be applied.
    pub fn is_valid(&self) -> bool {
        self.hierarchy.is_empty() && self.domain.is_ok() && self.member.is_ok() && self.spec.is_ok()
    }

    /// The hierarchy errors about the tenant's parent (the `InvalidParent` condition).
    pub fn parent_errors(&self) -> Vec<&HierarchyError> {
        self.hierarchy.iter().filter(|e| is_parent_error(e)).collect()
    }
}

/// Why a tenant cannot have its domain: a reason for its conditions and a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainProblem {
    pub reason: &'static str,
    pub message: String,
}

/// The reason of a domain that is not under the base domain, or is the base domain itself.
pub const INVALID_DOMAIN: &str = "InvalidDomain";
/// The reason of a domain that overlaps another tenant's or covers a platform host.
pub const DOMAIN_CONFLICT: &str = "DomainConflict";

fn problem(reason: &'static str, message: String) -> DomainProblem {
    DomainProblem { reason, message }
}

/// Whether the error is about `spec.parent`.
pub fn is_parent_error(error: &HierarchyError) -> bool {
    matches!(
        error,
        HierarchyError::ParentNotFound { .. } | HierarchyError::ParentLevel { .. } | HierarchyError::ParentCycle { .. }
    )
}

/// Orders Tenants oldest first: the order in which claims (an agency code, a namespace, a domain)
/// are settled, so the Tenant that had it first keeps it. Creation times have a resolution of one
/// second, so within a second a Tenant already accepted (its status records a domain) comes before
/// one not yet accepted — a newcomer never displaces a provisioned Tenant — and then names decide.
pub fn oldest_first(tenants: &mut [&Tenant]) {
    // Borrowed keys: a province sorts thousands of Tenants on every reconcile.
    fn key(t: &Tenant) -> (Option<&Time>, bool, Option<&str>) {
        let accepted = t.status.as_ref().is_some_and(|s| s.domain.is_some());
        (t.metadata.creation_timestamp.as_ref(), !accepted, t.metadata.name.as_deref())
    }
    tenants.sort_by(|a, b| key(a).cmp(&key(b)));
}

/// Validates `tenant` against every Tenant (`all`, oldest first, `tenant` among them), the
/// Platform's base domain and the hosts the platform itself serves (`platform_hosts`: the LGSP
/// gateway's), which no tenant domain may cover.
pub fn validate(tenant: &Tenant, all: &[&Tenant], base_domain: &str, platform_hosts: &[&str]) -> Validation {
    let nodes: Vec<TenantNode> = all.iter().map(|t| TenantNode::from(*t)).collect();
    let hierarchy = hierarchy::check(&TenantNode::from(tenant), &nodes);
    Validation {
        hierarchy,
        domain: domain(tenant, all, base_domain, platform_hosts),
        member: member(tenant),
        spec: spec(tenant),
    }
}

/// What the schema refuses in one Tenant alone and the controller must never act on: a `system:`
/// admin, a blank or invisible-character name.
fn spec(tenant: &Tenant) -> Result<(), String> {
    let mut problems = tenant.spec.admins.problems();
    problems.extend(tenant.spec.agency.problems());
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Whether one domain is the other or sits under it: a tenant CA constrained to either could
/// issue for hosts of the other.
pub fn domains_overlap(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || is_under(a, b) || is_under(b, a)
}

/// Whether `domain` sits strictly under `parent` at a label boundary, ignoring ASCII case, without
/// allocating (it runs once per other Tenant on every reconcile).
pub fn is_under(domain: &str, parent: &str) -> bool {
    let (domain, parent) = (domain.as_bytes(), parent.as_bytes());
    domain.len() > parent.len()
        && domain[domain.len() - parent.len() - 1] == b'.'
        && domain[domain.len() - parent.len()..].eq_ignore_ascii_case(parent)
}

/// The tenant's domain: `spec.domain` or `<name>.<base domain>`. It must sit strictly under the
/// base domain, cover no platform host, and be disjoint from every older Tenant's domain —
/// neither equal, nor inside it, nor around it — because its intermediate CA's name constraints
/// permit exactly that subtree.
fn domain(
    tenant: &Tenant,
    all: &[&Tenant],
    base_domain: &str,
    platform_hosts: &[&str],
) -> Result<String, DomainProblem> {
    let domain = tenant.domain(base_domain);
    if domain.eq_ignore_ascii_case(base_domain) {
        return Err(problem(
            INVALID_DOMAIN,
            format!(
                "spec.domain {domain:?} is the platform's base domain itself: a tenant's CA would cover every other tenant's hosts; use {}.{base_domain} or another name under it",
                tenant.name_any()
            ),
        ));
    }
    if !is_under(&domain, base_domain) {
        return Err(problem(
            INVALID_DOMAIN,
            format!(
                "spec.domain {domain:?} is not under the platform's base domain {base_domain:?}: use {}.{base_domain} or another name under it",
                tenant.name_any()
            ),
        ));
    }
    if let Some(host) = platform_hosts.iter().find(|host| domains_overlap(&domain, host)) {
        return Err(problem(
            DOMAIN_CONFLICT,
            format!(
                "spec.domain {domain:?} covers the platform's own host {host:?} (the LGSP gateway): choose a domain that does not contain it"
            ),
        ));
    }
    let name = tenant.metadata.name.as_deref();
    let position = all.iter().position(|t| t.metadata.name.as_deref() == name).unwrap_or(all.len());
    // One buffer for every older Tenant's domain: this loop runs over the whole province.
    let mut theirs = String::new();
    for other in &all[..position] {
        theirs.clear();
        match &other.spec.domain {
            Some(domain) => theirs.push_str(domain),
            None => {
                theirs.push_str(other.metadata.name.as_deref().unwrap_or_default());
                theirs.push('.');
                theirs.push_str(base_domain);
            }
        }
        let relation = if theirs.eq_ignore_ascii_case(&domain) {
            "is already the domain of"
        } else if is_under(&domain, &theirs) {
            "sits inside the domain"
        } else if is_under(&theirs, &domain) {
            "contains the domain"
        } else {
            continue;
        };
        let theirs_note = if relation.starts_with("is already") { String::new() } else { format!(" {theirs:?} of") };
        return Err(problem(
            DOMAIN_CONFLICT,
            format!(
                "spec.domain {domain:?} {relation}{theirs_note} Tenant {:?}: tenant domains must be disjoint (a tenant's CA may issue for every host under its domain); choose another",
                other.name_any()
            ),
        ));
    }
    Ok(domain)
}

/// The tenant as the quota ledger sees it.
pub fn member(tenant: &Tenant) -> Result<Member, QuotaError> {
    let requested = QuotaVector::of_tenant(&tenant.spec.quota)?;
    let recorded = match tenant.status.as_ref().and_then(|s| s.quota.as_ref()) {
        Some(quota) if !quota.hard.is_empty() => Some(QuotaVector::from_status(&quota.hard)?),
        _ => None,
    };
    let mut namespace_shares = QuotaVector::default();
    for share in tenant.spec.namespaces.iter().filter_map(|n| n.quota.as_ref()) {
        namespace_shares = namespace_shares.add(&QuotaVector::of_namespace(share)?)?;
    }
    Ok(Member {
        name: tenant.name_any(),
        uid: tenant.metadata.uid.clone().unwrap_or_default(),
        requested,
        recorded,
        namespace_shares,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::fixtures;

    const BASE: &str = "quangnam.gov.vn";

    #[test]
    fn a_well_formed_province_is_valid() {
        let tenants = fixtures::province();
        let all = fixtures::refs(&tenants);
        for tenant in &all {
            let validation = validate(tenant, &all, BASE, &[]);
            assert!(validation.is_valid(), "{}: {validation:?}", tenant.name_any());
        }
        let so_noi_vu = validate(all[1], &all, BASE, &[]);
        assert_eq!(so_noi_vu.domain.unwrap(), "so-noi-vu.quangnam.gov.vn");
    }

    #[test]
    fn system_admins_and_invisible_names_are_refused_again() {
        let mut tenants = fixtures::province();
        tenants[1].spec.admins.groups = vec!["so-noi-vu-admins".into(), "system:authenticated".into()];
        tenants[1].spec.admins.users = vec!["system:serviceaccount:so-noi-vu:ci".into(), " ".into()];
        tenants[2].spec.agency.display_name = "S\u{202E}ở Nội vụ".into();
        let all = fixtures::refs(&tenants);
        let admins = validate(all[1], &all, BASE, &[]);
        assert!(!admins.is_valid());
        let message = admins.spec.unwrap_err();
        assert!(
            message.contains("spec.admins.groups[1] \"system:authenticated\": system: groups are Kubernetes' own"),
            "{message}"
        );
        assert!(message.contains("spec.admins.users[0]"), "{message}");
        assert!(message.contains("spec.admins.users[1] \" \" must not be blank"), "{message}");
        assert!(!message.contains("so-noi-vu-admins"), "{message}");
        let name = validate(all[2], &all, BASE, &[]).spec.unwrap_err();
        assert!(name.contains("U+202E at character 1"), "{name}");
        // Vietnamese, composed or decomposed, is not refused.
        tenants[2].spec.agency.display_name = "U\u{309}y ban nhân dân tha\u{300}nh phô\u{301}".into();
        let all = fixtures::refs(&tenants);
        assert_eq!(validate(all[2], &all, BASE, &[]).spec, Ok(()));
    }

    #[test]
    fn a_missing_parent_is_a_parent_error() {
        let tenants = fixtures::province();
        let all = fixtures::refs(&tenants);
        // Without the province.
        let orphans: Vec<&Tenant> = all[1..].to_vec();
        let validation = validate(orphans[0], &orphans, BASE, &[]);
        assert!(!validation.is_valid());
        assert_eq!(validation.parent_errors().len(), 1);
        assert_eq!(validation.parent_errors()[0].reason(), "ParentNotFound");
    }

    #[test]
    fn a_domain_outside_the_base_domain_or_taken_is_refused() {
        let mut tenants = fixtures::province();
        tenants[1].spec.domain = Some("sonoivu.example.com".into());
        tenants[2].spec.domain = Some("quang-nam.quangnam.gov.vn".into());
        let all = fixtures::refs(&tenants);
        let outside = validate(all[1], &all, BASE, &[]).domain.unwrap_err().message;
        assert!(outside.contains("not under the platform's base domain"), "{outside}");
        let taken = validate(all[2], &all, BASE, &[]).domain.unwrap_err().message;
        assert!(taken.contains("already the domain of Tenant \"quang-nam\""), "{taken}");
        // The older tenant keeps it.
        assert!(validate(all[0], &all, BASE, &[]).domain.is_ok());
    }

    #[test]
    fn overlapping_domains_are_refused_naming_the_older_tenant() {
        let mut tenants = fixtures::province();
        let older = tenants[0].name_any();
        let older_domain = tenants[0].domain(BASE);
        // Inside the older tenant's domain, around it, and the base domain itself.
        tenants[1].spec.domain = Some(format!("cong.{older_domain}"));
        tenants[2].spec.domain = Some(older_domain.split_once('.').unwrap().1.to_owned());
        let all = fixtures::refs(&tenants);
        let inside = validate(all[1], &all, BASE, &[]).domain.unwrap_err();
        assert_eq!(inside.reason, DOMAIN_CONFLICT);
        let inside = inside.message;
        assert!(inside.contains(&format!("sits inside the domain {older_domain:?} of Tenant {older:?}")), "{inside}");
        let base = validate(all[2], &all, BASE, &[]).domain.unwrap_err().message;
        assert!(base.contains("is the platform's base domain itself"), "{base}");
        // Not a suffix at a label boundary: no overlap.
        assert!(!domains_overlap("xso-noi-vu.quangnam.gov.vn", "so-noi-vu.quangnam.gov.vn"));
        assert!(domains_overlap("A.quangnam.gov.vn", "a.QuangNam.gov.vn"));

        let mut tenants = fixtures::province();
        tenants[1].spec.domain = Some(format!("a.b.{BASE}"));
        tenants[2].spec.domain = Some(format!("b.{BASE}"));
        let all = fixtures::refs(&tenants);
        let around = validate(all[2], &all, BASE, &[]).domain.unwrap_err().message;
        assert!(around.contains(&format!("contains the domain \"a.b.{BASE}\" of Tenant")), "{around}");
    }

    #[test]
    fn within_one_second_an_accepted_tenant_keeps_its_domain_from_a_newcomer() {
        // Created in the same second, the newcomer's name sorts first; the accepted tenant still
        // holds its domain, and the newcomer inside it is the one refused.
        let mut tenants = fixtures::province();
        let second = tenants[0].metadata.creation_timestamp.clone();
        tenants[0].metadata.name = Some("z-tinh".into());
        let older_domain = tenants[0].domain(BASE);
        tenants[0].status.get_or_insert_with(Default::default).domain = Some(older_domain.clone());
        tenants[1].metadata.creation_timestamp = second;
        tenants[1].metadata.name = Some("a-moi".into());
        tenants[1].spec.domain = Some(format!("cong.{older_domain}"));
        tenants[1].status = None;
        let mut all = fixtures::refs(&tenants);
        oldest_first(&mut all);
        assert_eq!(all[0].name_any(), "z-tinh");
        let refused = validate(&tenants[1], &all, BASE, &[]).domain.unwrap_err().message;
        assert!(refused.contains("Tenant \"z-tinh\""), "{refused}");
        assert!(validate(&tenants[0], &all, BASE, &[]).domain.is_ok());
    }

    #[test]
    fn a_domain_covering_the_gateway_host_is_refused() {
        let mut tenants = fixtures::province();
        tenants[1].spec.domain = Some(format!("lgsp.{BASE}"));
        let all = fixtures::refs(&tenants);
        let gateway = format!("lgsp.{BASE}");
        let refused = validate(all[1], &all, BASE, &[&gateway]).domain.unwrap_err().message;
        assert!(refused.contains("covers the platform's own host"), "{refused}");
        assert!(validate(all[2], &all, BASE, &[&gateway]).domain.is_ok());
    }

    #[test]
    fn members_read_their_recorded_quota_and_namespace_shares() {
        let tenants = fixtures::province();
        let split = tenants.iter().find(|t| t.spec.namespaces.len() > 1).expect("a tenant with several namespaces");
        let m = member(split).unwrap();
        assert_eq!(m.namespace_shares.get(govpaas_crds::quota::Resource::Pods).to_string(), "30");
        assert!(m.recorded.is_none());
    }
}
