//! `kubectl govpaas quota TENANT`: the carving from the top of the tree down to one Tenant and
//! its children — what each holds, hands down and has free — and what blocks a child whose quota
//! was refused.

use govpaas_crds::Tenant;
use govpaas_crds::conditions::QUOTA_EXCEEDED;
use govpaas_crds::quota::{QuotaVector, Resource};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::objects::{self, Readiness, format_amount};
use crate::table::{Cell, Paint, Table};
use crate::{API_VERSION, Scope};

/// The carving down to one Tenant (`kind: QuotaCarving`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaReport {
    pub api_version: String,
    pub kind: String,
    pub tenant: String,
    pub complete: bool,
    /// From the top of the tree (as far up as the user may read) down to the Tenant, included.
    pub path: Vec<QuotaHolder>,
    /// The Tenant's children: what each asks for, and what blocks a refused one.
    pub children: Vec<ChildRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One Tenant on the path and its quota as applied.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaHolder {
    pub name: String,
    pub code: String,
    pub level: String,
    pub display_name: String,
    pub ready: Readiness,
    pub resources: Vec<Carving>,
    /// Its own request refused (it runs on its previous quota, or was never applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Block>,
}

/// One resource of a Tenant: its quota, what its children carved out of it, its own share (what
/// its namespaces get, and all a new child could still take) and, of that, what is in use and
/// free. `null` where status reports nothing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Carving {
    pub resource: String,
    /// `spec.quota`: what it asks for (differs from `quota` while a change is refused or pending).
    pub requested: String,
    pub quota: Option<String>,
    pub carved: Option<String>,
    pub own: Option<String>,
    pub used: Option<String>,
    /// `own - used`.
    pub free: Option<String>,
}

/// A child of the Tenant and what it asks for.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChildRequest {
    pub name: String,
    pub code: String,
    pub level: String,
    pub display_name: String,
    pub ready: Readiness,
    /// Per resource: `spec.quota`, and what it holds (`status.quota.hard`).
    pub resources: Vec<ChildResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Block>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChildResource {
    pub resource: String,
    pub requested: String,
    pub holds: Option<String>,
}

/// Why a quota was refused: the operator's condition, and the resources short as computed from
/// the parent's status and the siblings' (empty when they cannot be read).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Block {
    pub reason: String,
    pub message: String,
    pub short: Vec<Shortfall>,
}

/// A resource asked for beyond what the parent has left for this child.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Shortfall {
    pub resource: String,
    pub requested: String,
    pub available: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaReportError {
    #[error("Tenant {0:?} not found (or you may not read it)")]
    NotFound(String),
}

/// The carving down to `name`.
pub fn build(tenants: &[Tenant], scope: Scope, name: &str) -> Result<QuotaReport, QuotaReportError> {
    let by_name = objects::by_name(tenants);
    let tenant = *by_name.get(name).ok_or_else(|| QuotaReportError::NotFound(name.to_owned()))?;
    let mut path = vec![tenant];
    while let Some(parent) = path.last().and_then(|t| t.spec.parent.as_deref()).and_then(|p| by_name.get(p)) {
        if path.iter().any(|t| t.name_any() == parent.name_any()) {
            break; // a cycle of parents: the operator reports it; stop here
        }
        path.push(parent);
    }
    path.reverse();
    let holders = path
        .iter()
        .map(|t| {
            let parent = t.spec.parent.as_deref().and_then(|p| by_name.get(p).copied());
            holder(t, parent.map(|p| (p, tenants)))
        })
        .collect();
    let mut kids: Vec<&Tenant> = tenants.iter().filter(|t| t.spec.parent.as_deref() == Some(name)).collect();
    kids.sort_by_key(|t| (govpaas_crds::agency::normalise(&t.spec.agency.code), t.name_any()));
    let children = kids.iter().map(|child| child_request(child, tenant, tenants)).collect();
    let mut notes = Vec::new();
    if let Some(parent) = path.first().and_then(|t| t.spec.parent.as_deref()) {
        let why = match scope {
            Scope::Complete => "does not exist",
            Scope::Partial => "is not readable with your permissions",
        };
        notes.push(format!(
            "the carving above {:?} is not shown: its parent Tenant {parent:?} {why}",
            path[0].name_any()
        ));
    }
    if scope == Scope::Partial {
        let named = tenant.status.as_ref().map(|s| s.children.clone()).unwrap_or_default();
        let unreadable: Vec<&String> = named.iter().filter(|c| !kids.iter().any(|k| &&k.name_any() == c)).collect();
        if !unreadable.is_empty() {
            notes.push(format!(
                "children you may not read (their quotas are in {:?}'s carved total): {}",
                name,
                unreadable.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    Ok(QuotaReport {
        api_version: API_VERSION.into(),
        kind: "QuotaCarving".into(),
        tenant: name.to_owned(),
        complete: scope == Scope::Complete,
        path: holders,
        children,
        notes,
    })
}

fn holder(tenant: &Tenant, parent: Option<(&Tenant, &[Tenant])>) -> QuotaHolder {
    let requested = QuotaVector::of_tenant(&tenant.spec.quota).ok();
    let resources = crate::tree::quota_use(tenant)
        .into_iter()
        .zip(Resource::ALL)
        .map(|(used, resource)| {
            let amount =
                |text: &Option<String>| text.as_deref().and_then(|t| govpaas_crds::quantity::Amount::parse(t).ok());
            let free = amount(&used.own)
                .zip(amount(&used.used))
                .and_then(|(own, used)| own.checked_sub(used))
                .map(|free| format_amount(resource, free));
            Carving {
                resource: used.resource,
                requested: requested.map(|r| format_amount(resource, r.get(resource))).unwrap_or_else(|| "?".into()),
                quota: used.hard,
                carved: used.carved,
                own: used.own,
                used: used.used,
                free,
            }
        })
        .collect();
    QuotaHolder {
        name: tenant.name_any(),
        code: tenant.spec.agency.code.clone(),
        level: tenant.spec.agency.level.to_string(),
        display_name: tenant.spec.agency.display_name.clone(),
        ready: objects::readiness(objects::tenant_conditions(tenant)),
        resources,
        blocked: parent.and_then(|(parent, all)| block(tenant, parent, all)).or_else(|| block_without_parent(tenant)),
    }
}

fn child_request(child: &Tenant, parent: &Tenant, all: &[Tenant]) -> ChildRequest {
    let requested = QuotaVector::of_tenant(&child.spec.quota).ok();
    let holds = child.status.as_ref().and_then(|s| s.quota.as_ref()).map(|q| q.hard.clone()).unwrap_or_default();
    let resources = Resource::ALL
        .into_iter()
        .map(|r| ChildResource {
            resource: r.field().into(),
            requested: requested.map(|q| format_amount(r, q.get(r))).unwrap_or_else(|| "?".into()),
            holds: holds.get(r.field()).map(|q| q.0.clone()),
        })
        .collect();
    ChildRequest {
        name: child.name_any(),
        code: child.spec.agency.code.clone(),
        level: child.spec.agency.level.to_string(),
        display_name: child.spec.agency.display_name.clone(),
        ready: objects::readiness(objects::tenant_conditions(child)),
        resources,
        blocked: block(child, parent, all),
    }
}

/// The `QuotaExceeded` condition, when it holds.
fn refusal(tenant: &Tenant) -> Option<(String, String)> {
    let condition = objects::condition(objects::tenant_conditions(tenant), QUOTA_EXCEEDED)?;
    (condition.status == "True").then(|| (condition.reason.clone(), condition.message.clone()))
}

fn block_without_parent(tenant: &Tenant) -> Option<Block> {
    refusal(tenant).map(|(reason, message)| Block { reason, message, short: Vec::new() })
}

/// Why `child`'s quota was refused: the condition, and what it asks beyond what `parent` has left
/// for it — the parent's quota minus what its other children hold and its own namespaces' shares
/// (as the operator's quota ledger counts, from what status shows).
fn block(child: &Tenant, parent: &Tenant, all: &[Tenant]) -> Option<Block> {
    let (reason, message) = refusal(child)?;
    Some(Block { reason, message, short: shortfall(child, parent, all).unwrap_or_default() })
}

fn shortfall(child: &Tenant, parent: &Tenant, all: &[Tenant]) -> Option<Vec<Shortfall>> {
    let hard = QuotaVector::from_status(&parent.status.as_ref()?.quota.as_ref()?.hard).ok()?;
    let mut committed = QuotaVector::default();
    for sibling in all {
        let is_sibling = sibling.spec.parent.as_deref() == Some(parent.name_any().as_str());
        if !is_sibling || sibling.name_any() == child.name_any() {
            continue;
        }
        if let Some(held) = sibling.status.as_ref().and_then(|s| s.quota.as_ref()) {
            committed = committed.add(&QuotaVector::from_status(&held.hard).ok()?).ok()?;
        }
    }
    for namespace in parent.spec.namespaces.iter().filter_map(|n| n.quota.as_ref()) {
        committed = committed.add(&QuotaVector::of_namespace(namespace).ok()?).ok()?;
    }
    let available = hard.sub(&committed).ok()?;
    let requested = QuotaVector::of_tenant(&child.spec.quota).ok()?;
    Some(
        requested
            .excess_over(&available)
            .into_iter()
            .map(|e| Shortfall { resource: e.resource.field().into(), requested: e.requested, available: e.available })
            .collect(),
    )
}

/// The report as text: a table per Tenant on the path, then the children.
pub fn render(report: &QuotaReport, colour: bool) -> String {
    let mut out = String::new();
    for (depth, holder) in report.path.iter().enumerate() {
        let indent = "   ".repeat(depth.saturating_sub(1));
        let branch = if depth == 0 { "" } else { "└─ " };
        out.push_str(&format!(
            "{indent}{branch}{}  {}  {}  {}  {}\n",
            holder.name,
            holder.code,
            holder.level,
            holder.display_name,
            holder.ready.label()
        ));
        let mut table = Table::new(&["resource", "requested", "quota", "carved", "own", "used", "free"]);
        for i in 1..7 {
            table = table.right_align(i);
        }
        for c in &holder.resources {
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let free_paint =
                if c.free.as_deref().is_some_and(|f| f.starts_with('-')) { Paint::Bad } else { Paint::Plain };
            table.push(vec![
                c.resource.as_str().into(),
                c.requested.as_str().into(),
                dash(&c.quota).into(),
                dash(&c.carved).into(),
                dash(&c.own).into(),
                dash(&c.used).into(),
                Cell::painted(dash(&c.free), free_paint),
            ]);
        }
        // Each level's table under its heading.
        let table_indent = "   ".repeat(depth);
        for line in table.render(colour).lines() {
            out.push_str(&format!("{table_indent}{line}\n"));
        }
        if let Some(block) = &holder.blocked {
            out.push_str(&render_block(&holder.name, block));
        }
        out.push('\n');
    }
    out.push_str(&format!("children of {}: {}\n", report.tenant, report.children.len()));
    if !report.children.is_empty() {
        let mut header = vec!["tenant".to_owned(), "code".into(), "ready".into()];
        header.extend(Resource::ALL.iter().map(|r| crate::tree::column_name(*r).to_owned()));
        let mut table = Table::new(&header);
        for i in 3..header.len() {
            table = table.right_align(i);
        }
        for child in &report.children {
            let paint = if child.ready.is_ready() { Paint::Good } else { Paint::Bad };
            let mut row =
                vec![child.name.as_str().into(), child.code.as_str().into(), Cell::painted(child.ready.label(), paint)];
            for r in &child.resources {
                let short = child.blocked.as_ref().is_some_and(|b| b.short.iter().any(|s| s.resource == r.resource));
                row.push(Cell::painted(r.requested.clone(), if short { Paint::Bad } else { Paint::Plain }));
            }
            table.push(row);
        }
        out.push_str(&table.render(colour));
        out.push_str("(what each child asks for in spec.quota)\n");
        for child in &report.children {
            if let Some(block) = &child.blocked {
                out.push_str(&render_block(&child.name, block));
            }
        }
    }
    out
}

fn render_block(name: &str, block: &Block) -> String {
    let mut out = format!("blocked: {name}: {}", block.reason);
    if !block.short.is_empty() {
        let short: Vec<String> =
            block.short.iter().map(|s| format!("{} asks {}, {} left", s.resource, s.requested, s.available)).collect();
        out.push_str(&format!(" ({})", short.join("; ")));
    }
    out.push_str(&format!("\n  {}\n", block.message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    fn carving<'a>(holder: &'a QuotaHolder, resource: &str) -> &'a Carving {
        holder.resources.iter().find(|c| c.resource == resource).unwrap()
    }

    #[test]
    fn the_carving_from_the_committee_down_to_the_hospital() {
        let report = build(&fixtures::danang(), Scope::Complete, "bv-danang").unwrap();
        let path: Vec<&str> = report.path.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(path, ["ubnd", "so-yte", "bv-danang"]);
        let cpu = carving(&report.path[0], "cpu");
        assert_eq!(
            (cpu.quota.as_deref(), cpu.carved.as_deref(), cpu.own.as_deref(), cpu.used.as_deref(), cpu.free.as_deref()),
            (Some("200"), Some("144"), Some("56"), Some("1500m"), Some("54500m"))
        );
        let hospital = carving(&report.path[2], "cpu");
        assert_eq!(
            (hospital.own.as_deref(), hospital.used.as_deref(), hospital.free.as_deref()),
            (Some("4"), Some("2"), Some("2"))
        );
        let hosts = carving(&report.path[2], "publicHosts");
        assert_eq!((hosts.quota.as_deref(), hosts.used.as_deref(), hosts.free.as_deref()), (Some("2"), None, None));
        assert!(report.path.iter().all(|h| h.blocked.is_none()));
    }

    #[test]
    fn what_blocks_a_refused_child() {
        let report = build(&fixtures::danang(), Scope::Complete, "bv-danang").unwrap();
        assert_eq!(report.children.len(), 1);
        let clinic = &report.children[0];
        assert_eq!(clinic.name, "phong-kham");
        assert!(!clinic.ready.is_ready());
        let block = clinic.blocked.as_ref().expect("blocked");
        assert_eq!(block.reason, "QuotaExceeded");
        assert!(block.message.contains("cpu 8 > 4"), "{}", block.message);
        assert_eq!(block.short, [Shortfall { resource: "cpu".into(), requested: "8".into(), available: "4".into() }]);
        let cpu = &clinic.resources[0];
        assert_eq!((cpu.requested.as_str(), cpu.holds.as_deref()), ("8", None));
        // Seen from the clinic itself: its own request is blocked.
        let own = build(&fixtures::danang(), Scope::Complete, "phong-kham").unwrap();
        assert_eq!(own.path.last().unwrap().blocked.as_ref().unwrap().short.len(), 1);
    }

    #[test]
    fn siblings_holdings_count_against_what_a_child_may_take() {
        let mut tenants = fixtures::danang();
        // A second clinic of 1 CPU, applied: the refused one now has only 3 left.
        let mut second = tenants.iter().find(|t| t.name_any() == "phong-kham").unwrap().clone();
        second.metadata.name = Some("phong-kham-2".into());
        second.spec.agency.code = "H17.03.01.02".into();
        second.spec.quota.cpu = k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into());
        let status = second.status.as_mut().unwrap();
        status.conditions = vec![fixtures::ready_condition("True", "Reconciled", "provisioned")];
        status.quota = Some(govpaas_crds::tenant::QuotaStatus {
            hard: [("cpu".to_owned(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()))].into(),
            ..Default::default()
        });
        tenants.push(second);
        let report = build(&tenants, Scope::Complete, "bv-danang").unwrap();
        let block = report.children.iter().find(|c| c.name == "phong-kham").unwrap().blocked.clone().unwrap();
        assert_eq!(block.short[0].available, "3");
    }

    #[test]
    fn the_table_shows_each_level_and_the_block() {
        let report = build(&fixtures::danang(), Scope::Complete, "bv-danang").unwrap();
        let text = render(&report, false);
        assert!(text.starts_with("ubnd  H17  Province  Ủy ban nhân dân thành phố Đà Nẵng  Ready\n"), "{text}");
        assert!(text.contains("└─ so-yte  H17.03  Department"), "{text}");
        assert!(text.contains("\n   cpu                 16     16       4     12     2     10\n"), "{text}");
        assert!(text.contains("\n      cpu                  4      4       0      4     2      2\n"), "{text}");
        assert!(text.contains("blocked: phong-kham: QuotaExceeded (cpu asks 8, 4 left)"), "{text}");
    }

    #[test]
    fn an_agency_admin_sees_its_own_carving_and_which_children_it_cannot_read() {
        let tenants: Vec<Tenant> = fixtures::danang().into_iter().filter(|t| t.name_any() == "so-yte").collect();
        let report = build(&tenants, Scope::Partial, "so-yte").unwrap();
        assert_eq!(report.path.len(), 1);
        assert!(report.children.is_empty());
        assert!(
            report.notes.iter().any(|n| n.contains("parent Tenant \"ubnd\" is not readable")),
            "{:?}",
            report.notes
        );
        assert!(report.notes.iter().any(|n| n.contains("bv-danang")), "{:?}", report.notes);
    }
}
