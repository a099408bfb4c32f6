//! The agency tree: rules about a Tenant that need the other Tenants, so neither the schema nor
//! an admission policy can check them. The tenant controller calls [`check`] and reports each
//! error as the `HierarchyValid` condition (reason [`HierarchyError::reason`]) and an Event.

use std::collections::{BTreeSet, HashMap};

use crate::{
    Tenant,
    agency::{AgencyCode, AgencyCodeError, AgencyLevel},
    conditions::reasons,
};

/// What the rules need to know of a Tenant, borrowed from it: the controller builds one for every
/// Tenant of the province on each reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNode<'a> {
    /// The Tenant's name.
    pub name: &'a str,
    /// `spec.agency.code`.
    pub code: &'a str,
    /// `spec.agency.level`.
    pub level: AgencyLevel,
    /// `spec.parent`.
    pub parent: Option<&'a str>,
    /// The namespaces it owns.
    pub namespaces: Vec<&'a str>,
}

impl<'a> From<&'a Tenant> for TenantNode<'a> {
    fn from(tenant: &'a Tenant) -> Self {
        Self {
            name: tenant.metadata.name.as_deref().unwrap_or_default(),
            code: &tenant.spec.agency.code,
            level: tenant.spec.agency.level,
            parent: tenant.spec.parent.as_deref(),
            namespaces: tenant.namespace_refs(),
        }
    }
}

/// A broken rule of the agency tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HierarchyError {
    /// The code does not parse (only an object written before the schema existed can get here).
    #[error("spec.agency.code {code:?}: {error}")]
    InvalidCode { code: String, error: AgencyCodeError },
    /// Another Tenant has the same agency, possibly written in the other form.
    #[error(
        "spec.agency.code {code:?} is already used by Tenant {other:?} ({other_code:?}): agency codes are unique cluster-wide"
    )]
    DuplicateAgencyCode { code: String, other: String, other_code: String },
    /// `spec.parent` names no Tenant.
    #[error("spec.parent: Tenant {parent:?} does not exist")]
    ParentNotFound { parent: String },
    /// The parent is not of a higher level.
    #[error(
        "spec.parent: a {level} cannot hang below Tenant {parent:?}, a {parent_level}: the parent must be of a higher level (Province above Department and Commune; a Unit may hang anywhere)"
    )]
    ParentLevel { level: AgencyLevel, parent: String, parent_level: AgencyLevel },
    /// Following parents leads round in a circle.
    #[error("spec.parent: the parents form a cycle: {}", path.join(" -> "))]
    ParentCycle { path: Vec<String> },
    /// The code does not extend the parent's.
    #[error(
        "spec.agency.code {code:?} must extend the parent's code {parent_code:?} (Tenant {parent:?}), like {parent_code}.01"
    )]
    CodeNotUnderParent { code: String, parent: String, parent_code: String },
    /// A namespace the tenant wants belongs to another Tenant.
    #[error("spec.namespaces: namespace {namespace:?} already belongs to Tenant {other:?}")]
    NamespaceConflict { namespace: String, other: String },
}

impl HierarchyError {
    /// The condition reason, CamelCase.
    pub fn reason(&self) -> &'static str {
        match self {
            HierarchyError::InvalidCode { .. } => reasons::INVALID_SPEC,
            HierarchyError::DuplicateAgencyCode { .. } => reasons::DUPLICATE_AGENCY_CODE,
            HierarchyError::ParentNotFound { .. } => reasons::PARENT_NOT_FOUND,
            HierarchyError::ParentLevel { .. } => reasons::PARENT_LEVEL,
            HierarchyError::ParentCycle { .. } => reasons::PARENT_CYCLE,
            HierarchyError::CodeNotUnderParent { .. } => reasons::CODE_NOT_UNDER_PARENT,
            HierarchyError::NamespaceConflict { .. } => reasons::NAMESPACE_CONFLICT,
        }
    }
}

/// Every rule of the agency tree that `tenant` breaks, given all Tenants (`all` may include
/// `tenant` itself). Ties between two Tenants claiming one code or namespace go to the Tenant
/// created first, which the caller expresses by the order of `all`: earlier wins.
///
/// Linear in the number of Tenants: it runs on every reconcile of every Tenant.
pub fn check(tenant: &TenantNode<'_>, all: &[TenantNode<'_>]) -> Vec<HierarchyError> {
    let mut errors = Vec::new();
    let own_code = match AgencyCode::parse(tenant.code) {
        Ok(code) => Some(code),
        Err(error) => {
            errors.push(HierarchyError::InvalidCode { code: tenant.code.to_owned(), error });
            None
        }
    };
    // Only the Tenants before this one can hold a claim against it; a Tenant not yet in the
    // list (being created) loses to every existing one.
    let earlier = match all.iter().position(|t| t.name == tenant.name) {
        Some(position) => &all[..position],
        None => all,
    };

    if let Some(code) = &own_code
        && let Some(other) =
            earlier.iter().find(|other| AgencyCode::parse(other.code).is_ok_and(|c| c.same_agency(code)))
    {
        errors.push(HierarchyError::DuplicateAgencyCode {
            code: tenant.code.to_owned(),
            other: other.name.to_owned(),
            other_code: other.code.to_owned(),
        });
    }

    for namespace in &tenant.namespaces {
        if let Some(other) = earlier.iter().find(|other| other.namespaces.contains(namespace)) {
            errors.push(HierarchyError::NamespaceConflict {
                namespace: (*namespace).to_owned(),
                other: other.name.to_owned(),
            });
        }
    }

    let Some(parent_name) = tenant.parent else {
        return errors;
    };
    let by_name: HashMap<&str, &TenantNode> = all.iter().map(|t| (t.name, t)).collect();
    let Some(parent) = by_name.get(parent_name) else {
        errors.push(HierarchyError::ParentNotFound { parent: parent_name.to_owned() });
        return errors;
    };
    if !tenant.level.may_have_parent(parent.level) {
        errors.push(HierarchyError::ParentLevel {
            level: tenant.level,
            parent: parent.name.to_owned(),
            parent_level: parent.level,
        });
    }
    if let (Some(code), Ok(parent_code)) = (&own_code, AgencyCode::parse(parent.code))
        && !code.extends(&parent_code)
    {
        errors.push(HierarchyError::CodeNotUnderParent {
            code: tenant.code.to_owned(),
            parent: parent.name.to_owned(),
            parent_code: parent.code.to_owned(),
        });
    }
    if let Some(path) = cycle_from(tenant, &by_name) {
        errors.push(HierarchyError::ParentCycle { path });
    }
    errors
}

/// The chain of parents from `tenant` if it comes back to a Tenant already on it.
fn cycle_from(tenant: &TenantNode<'_>, by_name: &HashMap<&str, &TenantNode<'_>>) -> Option<Vec<String>> {
    let mut path = vec![tenant.name.to_owned()];
    let mut seen = BTreeSet::from([tenant.name]);
    let mut current = tenant;
    while let Some(parent) = current.parent {
        path.push(parent.to_owned());
        if !seen.insert(parent) {
            return Some(path);
        }
        current = by_name.get(parent)?;
    }
    None
}

/// The ancestors of `tenant`, nearest first, as far as they exist and do not loop.
pub fn ancestors<'n, 'a>(tenant: &TenantNode<'a>, all: &'n [TenantNode<'a>]) -> Vec<&'n TenantNode<'a>> {
    let by_name: HashMap<&str, &TenantNode> = all.iter().map(|t| (t.name, t)).collect();
    let mut seen = BTreeSet::from([tenant.name]);
    let mut chain = Vec::new();
    let mut next = tenant.parent;
    while let Some(name) = next {
        let Some(parent) = by_name.get(name) else {
            break;
        };
        if !seen.insert(parent.name) {
            break;
        }
        chain.push(*parent);
        next = parent.parent;
    }
    chain
}

/// The Tenants whose `spec.parent` is `name`.
pub fn children<'n, 'a>(name: &str, all: &'n [TenantNode<'a>]) -> Vec<&'n TenantNode<'a>> {
    all.iter().filter(|t| t.parent == Some(name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use AgencyLevel::*;

    fn node(
        name: &'static str,
        code: &'static str,
        level: AgencyLevel,
        parent: Option<&'static str>,
    ) -> TenantNode<'static> {
        TenantNode { name, code, level, parent, namespaces: vec![name] }
    }

    fn province() -> Vec<TenantNode<'static>> {
        vec![
            node("quang-nam", "H49", Province, None),
            node("so-noi-vu", "H49.12", Department, Some("quang-nam")),
            node("xa-dai-loc", "H49.40", Commune, Some("quang-nam")),
            node("benh-vien", "H49.12.01", Unit, Some("so-noi-vu")),
            node("truong-thpt", "H49.40.03", Unit, Some("xa-dai-loc")),
        ]
    }

    #[test]
    fn a_well_formed_tree_has_no_errors() {
        let all = province();
        for tenant in &all {
            assert_eq!(check(tenant, &all), [], "{}", tenant.name);
        }
    }

    #[test]
    fn legacy_codes_fit_the_tree() {
        let mut all = province();
        all.push(node("phong-ban", "000.05.12.H49", Unit, Some("so-noi-vu")));
        assert_eq!(check(all.last().unwrap(), &all), []);
    }

    #[test]
    fn duplicate_codes_are_found_in_either_form_and_the_older_tenant_keeps_its_code() {
        let mut all = province();
        all.push(node("so-noi-vu-2", "000.00.12.H49", Department, Some("quang-nam")));
        let newcomer = all.last().unwrap();
        let errors = check(newcomer, &all);
        assert_eq!(
            errors,
            [HierarchyError::DuplicateAgencyCode {
                code: "000.00.12.H49".into(),
                other: "so-noi-vu".into(),
                other_code: "H49.12".into(),
            }]
        );
        assert_eq!(errors[0].reason(), "DuplicateAgencyCode");
        // The older tenant is unaffected.
        assert_eq!(check(&all[1], &all), []);
        // A tenant not yet created loses to every existing one.
        let candidate = node("new", "H49.40", Commune, Some("quang-nam"));
        assert!(matches!(check(&candidate, &province())[..], [HierarchyError::DuplicateAgencyCode { .. }]));
    }

    #[test]
    fn the_parent_must_exist() {
        let all = province();
        let orphan = node("mo-coi", "H49.77", Department, Some("khong-co"));
        let errors = check(&orphan, &all);
        assert_eq!(errors, [HierarchyError::ParentNotFound { parent: "khong-co".into() }]);
        assert_eq!(errors[0].reason(), "ParentNotFound");
        assert!(errors[0].to_string().contains("spec.parent"));
    }

    #[test]
    fn the_parent_must_be_of_a_higher_level() {
        let all = province();
        let commune_under_department = node("xa", "H49.12.09", Commune, Some("so-noi-vu"));
        let errors = check(&commune_under_department, &all);
        assert_eq!(
            errors,
            [HierarchyError::ParentLevel { level: Commune, parent: "so-noi-vu".into(), parent_level: Department }]
        );
        assert_eq!(errors[0].reason(), "ParentLevelNotHigher");
        // A Unit may hang anywhere, even below another Unit.
        let unit_under_unit = node("khoa", "H49.12.01.02", Unit, Some("benh-vien"));
        assert_eq!(check(&unit_under_unit, &all), []);
    }

    #[test]
    fn the_code_must_extend_the_parents() {
        let all = province();
        let stray = node("lac", "H50.12", Department, Some("quang-nam"));
        let errors = check(&stray, &all);
        assert_eq!(
            errors,
            [HierarchyError::CodeNotUnderParent {
                code: "H50.12".into(),
                parent: "quang-nam".into(),
                parent_code: "H49".into(),
            }]
        );
        assert!(errors[0].to_string().contains("like H49.01"));
        let sibling_prefix = node("gan", "H49.123", Unit, Some("so-noi-vu"));
        assert!(matches!(check(&sibling_prefix, &all)[..], [HierarchyError::CodeNotUnderParent { .. }]));
    }

    #[test]
    fn cycles_are_found() {
        // Only Units may sit below Units, so a cycle needs Units.
        let all = vec![
            node("a", "H49.1", Unit, Some("c")),
            node("b", "H49.1.2", Unit, Some("a")),
            node("c", "H49.1.2.3", Unit, Some("b")),
        ];
        let errors = check(&all[0], &all);
        assert!(
            errors
                .contains(&HierarchyError::ParentCycle { path: vec!["a".into(), "c".into(), "b".into(), "a".into()] }),
            "{errors:?}"
        );
        let self_parent = vec![node("s", "H49.9", Unit, Some("s"))];
        assert!(check(&self_parent[0], &self_parent).iter().any(|e| e.reason() == "ParentCycle"));
        // Ancestors stop at the loop.
        assert_eq!(ancestors(&all[0], &all).len(), 2);
    }

    #[test]
    fn namespaces_belong_to_one_tenant() {
        let mut all = province();
        let mut thief = node("thief", "H49.50", Commune, Some("quang-nam"));
        thief.namespaces = vec!["so-noi-vu"];
        all.push(thief);
        assert_eq!(
            check(all.last().unwrap(), &all),
            [HierarchyError::NamespaceConflict { namespace: "so-noi-vu".into(), other: "so-noi-vu".into() }]
        );
    }

    #[test]
    fn ancestors_and_children() {
        let all = province();
        let names = |v: Vec<&TenantNode<'static>>| v.iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(ancestors(&all[3], &all)), ["so-noi-vu", "quang-nam"]);
        assert_eq!(names(children("quang-nam", &all)), ["so-noi-vu", "xa-dai-loc"]);
        assert!(children("benh-vien", &all).is_empty());
    }
}
