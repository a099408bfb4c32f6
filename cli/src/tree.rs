//! `kubectl govpaas tree`: the agency tree by `spec.parent`, from one list of Tenants.

use std::collections::{BTreeMap, BTreeSet};

use govpaas_crds::Tenant;
use govpaas_crds::quota::{QuotaVector, Resource};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::objects::{self, Readiness, format_amount, percent, percent_label};
use crate::table::{Cell, Paint, Table};
use crate::{API_VERSION, Scope};

/// The agency tree (`kind: AgencyTree`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TreeReport {
    pub api_version: String,
    pub kind: String,
    /// False when the user could read only some Tenants (see `notes`).
    pub complete: bool,
    /// The top of each tree shown: Provinces, or the Tenant asked for, or Tenants whose parent is
    /// missing, unreadable or in a cycle (`detached` says which).
    pub agencies: Vec<AgencyNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// How an agency stands.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AgencyState {
    Ready,
    NotReady,
    Suspended,
    /// No `Ready` condition yet: the operator has not reconciled it.
    Unknown,
}

/// One Tenant and the Tenants below it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AgencyNode {
    pub name: String,
    pub code: String,
    pub level: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub state: AgencyState,
    pub ready: Readiness,
    pub suspended: bool,
    /// Tenants below this one (at any depth) that are not Ready or are suspended.
    pub not_ready_below: usize,
    /// Per resource, in `spec.quota` order.
    pub quota: Vec<ResourceUse>,
    pub children: Vec<AgencyNode>,
    /// Children named in `status.children` that the user may not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_children: Vec<String>,
    /// Why a Tenant with a parent is shown at the top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached: Option<String>,
}

/// One resource of a Tenant's `status.quota`, with percentages: used of its own share, own and
/// carved (handed to its children) of its quota. `null` where the operator reports nothing
/// (public hosts and LGSP APIs have no usage in status; a Tenant never applied has no quota).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceUse {
    pub resource: String,
    pub hard: Option<String>,
    pub carved: Option<String>,
    pub own: Option<String>,
    pub used: Option<String>,
    pub used_percent: Option<f64>,
    pub own_percent: Option<f64>,
    pub carved_percent: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    #[error("Tenant {0:?} not found (or you may not read it)")]
    NotFound(String),
}

/// The tree of `tenants`, or the subtree of `root`.
pub fn build(tenants: &[Tenant], scope: Scope, root: Option<&str>) -> Result<TreeReport, TreeError> {
    let by_name = objects::by_name(tenants);
    let mut children: BTreeMap<&str, Vec<&Tenant>> = BTreeMap::new();
    for tenant in tenants {
        if let Some(parent) = tenant.spec.parent.as_deref().filter(|p| by_name.contains_key(*p)) {
            children.entry(parent).or_default().push(tenant);
        }
    }
    for list in children.values_mut() {
        list.sort_by_key(|t| sort_key(t));
    }
    let walker = Walker { children: &children, scope };
    let mut visited = BTreeSet::new();
    let agencies = match root {
        Some(name) => {
            let tenant = by_name.get(name).ok_or_else(|| TreeError::NotFound(name.to_owned()))?;
            vec![walker.node(tenant, None, &mut visited)]
        }
        None => {
            let mut tops: Vec<&Tenant> = tenants.iter().filter(|t| detached(t, &by_name, scope).is_some()).collect();
            tops.extend(tenants.iter().filter(|t| t.spec.parent.is_none()));
            tops.sort_by_key(|t| sort_key(t));
            let mut agencies: Vec<AgencyNode> =
                tops.into_iter().map(|t| walker.node(t, detached(t, &by_name, scope), &mut visited)).collect();
            // Whatever no top reaches hangs in a cycle of parents: shown once, from its first member.
            let mut rest: Vec<&Tenant> = tenants.iter().filter(|t| !visited.contains(&t.name_any())).collect();
            rest.sort_by_key(|t| sort_key(t));
            for tenant in rest {
                if !visited.contains(&tenant.name_any()) {
                    let why = "its parents form a cycle".to_owned();
                    agencies.push(walker.node(tenant, Some(why), &mut visited));
                }
            }
            agencies
        }
    };
    Ok(TreeReport {
        api_version: API_VERSION.into(),
        kind: "AgencyTree".into(),
        complete: scope == Scope::Complete,
        agencies,
        notes: Vec::new(),
    })
}

/// Children by agency code (`H17.01` before `H17.02`), then name.
fn sort_key(tenant: &Tenant) -> (String, String) {
    (govpaas_crds::agency::normalise(&tenant.spec.agency.code), tenant.name_any())
}

/// Why a Tenant with a parent has no parent to hang under, if so.
fn detached(tenant: &Tenant, by_name: &BTreeMap<String, &Tenant>, scope: Scope) -> Option<String> {
    let parent = tenant.spec.parent.as_deref()?;
    if by_name.contains_key(parent) {
        return None;
    }
    Some(match scope {
        Scope::Complete => format!("its parent Tenant {parent:?} does not exist"),
        Scope::Partial => format!("its parent Tenant {parent:?} is not readable with your permissions"),
    })
}

struct Walker<'a> {
    children: &'a BTreeMap<&'a str, Vec<&'a Tenant>>,
    scope: Scope,
}

impl Walker<'_> {
    fn node(&self, tenant: &Tenant, detached: Option<String>, visited: &mut BTreeSet<String>) -> AgencyNode {
        let name = tenant.name_any();
        visited.insert(name.clone());
        let mut children = Vec::new();
        for child in self.children.get(name.as_str()).into_iter().flatten() {
            // A child already shown is the way back into a cycle of parents.
            if !visited.contains(&child.name_any()) {
                children.push(self.node(child, None, visited));
            }
        }
        let unreadable_children = match self.scope {
            Scope::Complete => Vec::new(),
            Scope::Partial => {
                let listed = tenant.status.as_ref().map(|s| s.children.clone()).unwrap_or_default();
                listed.into_iter().filter(|c| !children.iter().any(|n| &n.name == c)).collect()
            }
        };
        let not_ready_below =
            children.iter().map(|c| c.not_ready_below + usize::from(c.state != AgencyState::Ready)).sum::<usize>();
        let ready = objects::readiness(objects::tenant_conditions(tenant));
        let suspended = objects::is_suspended(tenant);
        let state = if suspended {
            AgencyState::Suspended
        } else if ready.is_ready() {
            AgencyState::Ready
        } else if ready.status == "False" {
            AgencyState::NotReady
        } else {
            AgencyState::Unknown
        };
        AgencyNode {
            name,
            code: tenant.spec.agency.code.clone(),
            level: tenant.spec.agency.level.to_string(),
            display_name: tenant.spec.agency.display_name.clone(),
            parent: tenant.spec.parent.clone(),
            state,
            ready,
            suspended,
            not_ready_below,
            quota: quota_use(tenant),
            children,
            unreadable_children,
            detached,
        }
    }
}

/// The Tenant's `status.quota`, resource by resource.
pub fn quota_use(tenant: &Tenant) -> Vec<ResourceUse> {
    let quota = tenant.status.as_ref().and_then(|s| s.quota.clone()).unwrap_or_default();
    let parse = |map| QuotaVector::from_status(map).ok();
    let (hard, carved, own, used) = (parse(&quota.hard), parse(&quota.children), parse(&quota.own), parse(&quota.used));
    Resource::ALL
        .into_iter()
        .map(|r| {
            // A map without the key means "not reported", not zero (from_status reads it as zero).
            let get = |v: Option<QuotaVector>, map: &BTreeMap<String, _>| {
                v.filter(|_| map.contains_key(r.field())).map(|v| v.get(r))
            };
            let hard = get(hard, &quota.hard);
            let carved = get(carved, &quota.children);
            let own = get(own, &quota.own);
            let used = get(used, &quota.used);
            let of = |part: Option<_>, whole: Option<_>| part.zip(whole).and_then(|(p, w)| percent(p, w));
            ResourceUse {
                resource: r.field().into(),
                hard: hard.map(|a| format_amount(r, a)),
                carved: carved.map(|a| format_amount(r, a)),
                own: own.map(|a| format_amount(r, a)),
                used: used.map(|a| format_amount(r, a)),
                used_percent: of(used, own),
                own_percent: of(own, hard),
                carved_percent: of(carved, hard),
            }
        })
        .collect()
}

/// The tree as a table: one line per Tenant, drawn with box-drawing branches, and per resource
/// in `resources` the cell `used%/carved%`.
pub fn render(report: &TreeReport, resources: &[Resource], colour: bool) -> String {
    let mut header = vec!["tenant".to_owned(), "code".into(), "level".into(), "agency".into(), "ready".into()];
    header.extend(resources.iter().map(|r| column_name(*r).to_owned()));
    let mut table = Table::new(&header);
    for i in 5..header.len() {
        table = table.right_align(i);
    }
    for agency in &report.agencies {
        rows(&mut table, agency, "", None, resources);
    }
    let mut out = table.render(colour);
    out.push_str(&format!(
        "\nquota cells: {} used of the tenant's own share / carved out of its quota for its children (\"-\": not reported)\n",
        resources.iter().map(|r| column_name(*r)).collect::<Vec<_>>().join(", ")
    ));
    let counts = count_states(&report.agencies);
    let total = counts.values().sum::<usize>();
    out.push_str(&format!(
        "{total} {}: {} ready, {} not ready, {} suspended, {} unknown\n",
        if total == 1 { "tenant" } else { "tenants" },
        counts.get(&AgencyState::Ready).unwrap_or(&0),
        counts.get(&AgencyState::NotReady).unwrap_or(&0),
        counts.get(&AgencyState::Suspended).unwrap_or(&0),
        counts.get(&AgencyState::Unknown).unwrap_or(&0),
    ));
    out
}

/// A resource's column header.
pub fn column_name(resource: Resource) -> &'static str {
    match resource {
        Resource::Cpu => "cpu",
        Resource::Memory => "memory",
        Resource::Storage => "storage",
        Resource::Pods => "pods",
        Resource::Services => "services",
        Resource::PublicHosts => "hosts",
        Resource::LgspApis => "apis",
    }
}

fn count_states(agencies: &[AgencyNode]) -> BTreeMap<AgencyState, usize> {
    fn walk(node: &AgencyNode, counts: &mut BTreeMap<AgencyState, usize>) {
        *counts.entry(node.state).or_default() += 1;
        node.children.iter().for_each(|c| walk(c, counts));
    }
    let mut counts = BTreeMap::new();
    agencies.iter().for_each(|a| walk(a, &mut counts));
    counts
}

/// `prefix` is what the ancestors drew; `last` whether this node is its parent's last child
/// (`None` at the top).
fn rows(table: &mut Table, node: &AgencyNode, prefix: &str, last: Option<bool>, resources: &[Resource]) {
    let branch = match last {
        None => "",
        Some(true) => "└── ",
        Some(false) => "├── ",
    };
    let name_paint = match node.state {
        AgencyState::Ready => Paint::Plain,
        AgencyState::Suspended => Paint::Warning,
        AgencyState::NotReady => Paint::Bad,
        AgencyState::Unknown => Paint::Dim,
    };
    let mut ready = match node.state {
        AgencyState::Suspended => "Suspended".to_owned(),
        _ => node.ready.label(),
    };
    if node.not_ready_below > 0 {
        ready.push_str(&format!(", {} below not ready", node.not_ready_below));
    }
    let ready_paint = match (node.state, node.not_ready_below) {
        (AgencyState::Ready, 0) => Paint::Good,
        (AgencyState::Ready, _) | (AgencyState::Suspended, _) => Paint::Warning,
        (AgencyState::NotReady, _) => Paint::Bad,
        (AgencyState::Unknown, _) => Paint::Dim,
    };
    let mut agency = node.display_name.clone();
    if let Some(why) = &node.detached {
        agency.push_str(&format!(" ({why})"));
    }
    let mut row = vec![
        Cell::painted(format!("{prefix}{branch}{}", node.name), name_paint),
        node.code.as_str().into(),
        node.level.as_str().into(),
        agency.into(),
        Cell::painted(ready, ready_paint),
    ];
    for resource in resources {
        let used = node.quota.iter().find(|q| q.resource == resource.field());
        row.push(match used {
            Some(q) if q.hard.is_some() => {
                format!("{}/{}", percent_label(q.used_percent), percent_label(q.carved_percent)).into()
            }
            _ => Cell::painted("-", Paint::Dim),
        });
    }
    table.push(row);
    let deeper = match last {
        None => prefix.to_owned(),
        Some(true) => format!("{prefix}    "),
        Some(false) => format!("{prefix}│   "),
    };
    let total = node.children.len() + node.unreadable_children.len();
    for (i, child) in node.children.iter().enumerate() {
        rows(table, child, &deeper, Some(i + 1 == total), resources);
    }
    for (i, name) in node.unreadable_children.iter().enumerate() {
        let last = node.children.len() + i + 1 == total;
        let branch = if last { "└── " } else { "├── " };
        let mut row = vec![
            Cell::painted(format!("{deeper}{branch}{name}"), Paint::Dim),
            Cell::painted("?", Paint::Dim),
            Cell::painted("?", Paint::Dim),
            Cell::painted("(a child you may not read)", Paint::Dim),
            Cell::painted("-", Paint::Dim),
        ];
        row.extend(resources.iter().map(|_| Cell::painted("-", Paint::Dim)));
        table.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn names(nodes: &[AgencyNode]) -> Vec<&str> {
        nodes.iter().map(|n| n.name.as_str()).collect()
    }

    fn find<'a>(nodes: &'a [AgencyNode], name: &str) -> Option<&'a AgencyNode> {
        nodes.iter().find_map(|n| if n.name == name { Some(n) } else { find(&n.children, name) })
    }

    #[test]
    fn the_danang_tree_hangs_by_parent_in_code_order() {
        let tenants = fixtures::danang();
        let report = build(&tenants, Scope::Complete, None).unwrap();
        assert_eq!(names(&report.agencies), ["ubnd"]);
        let ubnd = &report.agencies[0];
        assert_eq!(ubnd.code, "H17");
        assert_eq!(ubnd.children.len(), 18, "six departments and twelve communes");
        assert_eq!(&names(&ubnd.children)[..3], ["so-noivu", "so-taichinh", "so-yte"]);
        assert_eq!(ubnd.children.last().unwrap().name, "hoang-sa");
        let so_yte = find(&report.agencies, "so-yte").unwrap();
        assert_eq!(names(&so_yte.children), ["bv-danang"]);
        assert_eq!(names(&so_yte.children[0].children), ["phong-kham"]);
        // phong-kham asks for more than the hospital has: not ready, and marked on its branch.
        assert_eq!(find(&report.agencies, "phong-kham").unwrap().state, AgencyState::NotReady);
        assert_eq!(so_yte.not_ready_below, 1);
        assert_eq!(find(&report.agencies, "hoang-sa").unwrap().state, AgencyState::Suspended);
        assert_eq!(ubnd.not_ready_below, 2);
    }

    #[test]
    fn quota_percentages_come_from_status() {
        let report = build(&fixtures::danang(), Scope::Complete, Some("ubnd")).unwrap();
        let cpu = &report.agencies[0].quota[0];
        assert_eq!(cpu.resource, "cpu");
        // 200 CPU; six departments of 16 and twelve communes of 4 carved: 144.
        assert_eq!(
            (cpu.hard.as_deref(), cpu.carved.as_deref(), cpu.own.as_deref()),
            (Some("200"), Some("144"), Some("56"))
        );
        assert_eq!(cpu.carved_percent, Some(72.0));
        assert_eq!(cpu.own_percent, Some(28.0));
        assert_eq!(cpu.used, Some("1500m".into()));
        assert_eq!(cpu.used_percent, Some(2.7));
        let hosts = report.agencies[0].quota.iter().find(|q| q.resource == "publicHosts").unwrap();
        assert_eq!((hosts.used.as_deref(), hosts.used_percent), (None, None), "no usage reported for hosts");
        let refused = build(&fixtures::danang(), Scope::Complete, Some("phong-kham")).unwrap();
        assert!(refused.agencies[0].quota.iter().all(|q| q.hard.is_none()), "never applied: no quota");
    }

    #[test]
    fn a_subtree_and_an_unknown_tenant() {
        let report = build(&fixtures::danang(), Scope::Complete, Some("so-yte")).unwrap();
        assert_eq!(names(&report.agencies), ["so-yte"]);
        assert_eq!(
            build(&fixtures::danang(), Scope::Complete, Some("khong-co")),
            Err(TreeError::NotFound("khong-co".into()))
        );
    }

    #[test]
    fn orphans_and_cycles_are_shown_once_and_say_why() {
        let mut tenants = fixtures::danang();
        tenants.retain(|t| t.name_any() != "so-yte");
        tenants.extend(fixtures::tenants(
            "
apiVersion: govpaas.io/v1alpha1
kind: Tenant
metadata: {name: a}
spec: {agency: {code: H20.01, displayName: A, level: Unit}, parent: b, quota: {cpu: 1, memory: 1Gi, storage: 1Gi, pods: 1, services: 1, publicHosts: 1, lgspApis: 1}}
---
apiVersion: govpaas.io/v1alpha1
kind: Tenant
metadata: {name: b}
spec: {agency: {code: H20.02, displayName: B, level: Unit}, parent: a, quota: {cpu: 1, memory: 1Gi, storage: 1Gi, pods: 1, services: 1, publicHosts: 1, lgspApis: 1}}
",
        ));
        let report = build(&tenants, Scope::Complete, None).unwrap();
        let tops = names(&report.agencies);
        assert_eq!(tops, ["ubnd", "bv-danang", "a"]);
        assert_eq!(report.agencies[1].detached.as_deref(), Some("its parent Tenant \"so-yte\" does not exist"));
        assert_eq!(report.agencies[2].detached.as_deref(), Some("its parents form a cycle"));
        assert_eq!(names(&report.agencies[2].children), ["b"]);
        assert!(report.agencies[2].children[0].children.is_empty());
    }

    #[test]
    fn an_agency_admin_sees_its_subtree_and_the_children_it_may_not_read() {
        let tenants: Vec<Tenant> = fixtures::danang().into_iter().filter(|t| t.name_any() == "so-yte").collect();
        let report = build(&tenants, Scope::Partial, None).unwrap();
        assert!(!report.complete);
        assert_eq!(names(&report.agencies), ["so-yte"]);
        let so_yte = &report.agencies[0];
        assert_eq!(
            so_yte.detached.as_deref(),
            Some("its parent Tenant \"ubnd\" is not readable with your permissions")
        );
        assert_eq!(so_yte.unreadable_children, ["bv-danang"]);
        let table = render(&report, &[Resource::Cpu], false);
        assert!(table.contains("└── bv-danang  ?"), "{table}");
    }

    #[test]
    fn the_table_aligns_vietnamese_names_and_marks_branches() {
        let report = build(&fixtures::danang(), Scope::Complete, Some("so-yte")).unwrap();
        let table = render(&report, &[Resource::Cpu, Resource::Memory], false);
        let expected = "\
TENANT              CODE          LEVEL       AGENCY                        READY                         CPU   MEMORY
so-yte              H17.03        Department  Sở Y tế thành phố Đà Nẵng     Ready, 1 below not ready  17%/25%  17%/25%
└── bv-danang       H17.03.01     Unit        Bệnh viện Đà Nẵng             Ready, 1 below not ready   50%/0%   25%/0%
    └── phong-kham  H17.03.01.01  Unit        Phòng khám đa khoa Hòa Khánh  NotReady: QuotaExceeded         -        -
";
        assert!(table.starts_with(expected), "{table}");
        assert!(table.contains("3 tenants: 2 ready, 1 not ready, 0 suspended, 0 unknown"), "{table}");
        let coloured = render(&report, &[Resource::Cpu], true);
        assert!(coloured.contains("\x1b[31m    └── phong-kham\x1b[0m"), "{coloured}");
    }
}
