//! The quota ledger: how much of its parent's quota each tenant holds, decided one tenant at a
//! time so that the sum never exceeds the province's budget, whatever order things happen in.
//!
//! Kubernetes enforces quota per namespace, so "the children never hold more than their parent"
//! is only true if every write keeps it true. Tenants reconcile concurrently, and the cache they
//! read lags the API server, so two siblings deciding from the cache alone could both take the
//! last free CPU. The ledger closes that gap. It lives in the operator (one writer: the leader)
//! behind a mutex and remembers, per tenant:
//! - `granted`: the quota its parent agreed to, decided under the lock against what the siblings
//!   already hold or were granted, so two siblings can never both take the same room;
//! - `applied`: the quota its ResourceQuotas were last written with (mirrors `status.quota.hard`,
//!   from which the ledger is re-seeded after a restart);
//! - `reserved`: how much its parent's own ResourceQuotas leave room for it, recorded when the
//!   parent's ResourceQuotas were written.
//!
//! A parent's own namespaces get its quota minus, for each child, the larger of what the child
//! was granted and what it has applied. A child applies an increase only once the parent has
//! reserved it (the parent's namespaces shrank first) and a parent grows its own share back only
//! after the child applied its decrease. So at every instant the ResourceQuotas of a parent's own
//! namespaces plus its children's add up to at most the parent's quota.
//!
//! Everything here is pure: the tenant controller feeds it what the cache shows ([`Member`]s) and
//! acts on the [`Plan`] it returns.

use std::collections::HashMap;

use govpaas_crds::quantity::Amount;
use govpaas_crds::quota::{Excess, QuotaError, QuotaVector, Resource};

/// A tenant as the cache shows it, reduced to what quota decisions need.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// The Tenant's name.
    pub name: String,
    /// The Tenant's uid: a Tenant deleted and re-created under the same name starts afresh.
    pub uid: String,
    /// `spec.quota`.
    pub requested: QuotaVector,
    /// `status.quota.hard`: the quota it was last applied with, as recorded in its status.
    pub recorded: Option<QuotaVector>,
    /// The sum of its namespaces' explicit shares; zero when its one namespace takes all that is
    /// left. These shares must stay inside its own part, so children cannot take them.
    pub namespace_shares: QuotaVector,
}

/// A tenant with its parent, its siblings (the parent's other children) and its children.
#[derive(Clone, Debug)]
pub struct Family<'a> {
    pub tenant: &'a Member,
    /// `None` for a province, the top of its tree.
    pub parent: Option<&'a Member>,
    pub siblings: Vec<&'a Member>,
    pub children: Vec<&'a Member>,
}

/// What became of the quota a tenant asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// It holds what it asks for.
    Granted,
    /// Its parent agreed; the parent's own ResourceQuotas must shrink first (a moment).
    WaitingForParent { parent: String },
    /// The parent has not been provisioned yet, so there is nothing to carve from.
    ParentNotProvisioned { parent: String },
    /// It asks for more than its parent has left.
    ExceedsParent { parent: String, excess: Vec<Excess> },
    /// It asks for less than its children hold plus its namespaces' shares.
    BelowCommitted { excess: Vec<Excess> },
}

impl Request {
    /// Whether the tenant got what it asked for.
    pub fn is_granted(&self) -> bool {
        matches!(self, Request::Granted)
    }
}

/// What one reconcile of a tenant may apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The tenant's quota for this apply; `None`: nothing may be applied yet (a new tenant whose
    /// quota does not fit, or whose parent is not provisioned).
    pub hard: Option<QuotaVector>,
    /// Carved out of `hard` for the children: for each, the larger of what it was granted and
    /// what it has applied.
    pub children: QuotaVector,
    /// `hard - children`: the share of the tenant's own namespaces.
    pub own: Option<QuotaVector>,
    /// The outcome of its request.
    pub request: Request,
    /// Per child, what `own` leaves room for: recorded as reserved once applied.
    reserved: Vec<(String, QuotaVector)>,
}

/// What changed when a plan was applied: who must reconcile again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// The tenant's applied quota changed: its parent may resize its own share.
    pub parent_changed: bool,
    /// Children whose reserved room changed (they may now apply what they were granted), or all
    /// of them when the tenant's own quota changed (they may have waited for it to exist).
    pub children_to_wake: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    uid: String,
    granted: Option<QuotaVector>,
    applied: Option<QuotaVector>,
    reserved: Option<QuotaVector>,
}

impl Entry {
    fn seeded(member: &Member) -> Self {
        Entry { uid: member.uid.clone(), granted: member.recorded, applied: member.recorded, reserved: member.recorded }
    }

    /// What the tenant holds or may take: its parent must keep room for this.
    fn holding(&self) -> QuotaVector {
        match (self.granted, self.applied) {
            (Some(g), Some(a)) => max(&g, &a),
            (Some(v), None) | (None, Some(v)) => v,
            (None, None) => QuotaVector::default(),
        }
    }
}

/// The operator's memory of every tenant's quota. Hold it behind one mutex and never across an
/// `.await`: decisions are quick and must be serial.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: HashMap<String, Entry>,
}

impl Ledger {
    fn entry(&mut self, member: &Member) -> &mut Entry {
        let entry = self.entries.entry(member.name.clone()).or_insert_with(|| Entry::seeded(member));
        if entry.uid != member.uid {
            *entry = Entry::seeded(member);
        }
        entry
    }

    /// Decides the tenant's request and what it may apply now.
    pub fn plan(&mut self, family: &Family<'_>) -> Result<Plan, QuotaError> {
        let tenant = family.tenant;
        let mut children = QuotaVector::default();
        let mut reserved = Vec::with_capacity(family.children.len());
        for child in &family.children {
            let holding = self.entry(child).holding();
            children = children.add(&holding)?;
            reserved.push((child.name.clone(), holding));
        }
        let committed = children.add(&tenant.namespace_shares)?;
        let below = committed.excess_over(&tenant.requested);

        let request = if !below.is_empty() {
            Request::BelowCommitted { excess: below }
        } else {
            match family.parent {
                None => Request::Granted,
                Some(parent) => match self.entry(parent).applied {
                    None => Request::ParentNotProvisioned { parent: parent.name.clone() },
                    Some(parent_hard) => {
                        let mut taken = parent.namespace_shares;
                        for sibling in family.siblings.iter().filter(|s| s.name != tenant.name) {
                            taken = taken.add(&self.entry(sibling).holding())?;
                        }
                        let left = saturating_sub(&parent_hard, &taken);
                        let excess = tenant.requested.excess_over(&left);
                        if excess.is_empty() {
                            Request::Granted
                        } else {
                            Request::ExceedsParent { parent: parent.name.clone(), excess }
                        }
                    }
                },
            }
        };

        let entry = self.entry(tenant);
        if request.is_granted() {
            entry.granted = Some(tenant.requested);
        }
        let (hard, request) = match (entry.granted, family.parent) {
            (None, _) => (None, request),
            (Some(granted), None) => (Some(granted), request),
            (Some(granted), Some(parent)) => {
                let room = entry.reserved.unwrap_or_default();
                if granted.excess_over(&room).is_empty() {
                    (Some(granted), request)
                } else {
                    // Granted but not yet carved out of the parent's own namespaces: keep what it
                    // has until the parent's ResourceQuotas have shrunk.
                    let request = match request {
                        Request::Granted => Request::WaitingForParent { parent: parent.name.clone() },
                        other => other,
                    };
                    let applied = entry.applied.map(|applied| min(&applied, &room));
                    (applied, request)
                }
            }
        };
        let own = hard.map(|hard| saturating_sub(&hard, &children));
        Ok(Plan { hard, children, own, request, reserved })
    }

    /// Records that `tenant`'s objects were applied as `plan` said.
    pub fn applied(&mut self, tenant: &Member, plan: &Plan) -> Effects {
        let mut effects = Effects::default();
        let entry = self.entry(tenant);
        if entry.applied != plan.hard {
            entry.applied = plan.hard;
            effects.parent_changed = true;
        }
        for (child, room) in &plan.reserved {
            if let Some(entry) = self.entries.get_mut(child)
                && (entry.reserved != Some(*room) || effects.parent_changed)
            {
                entry.reserved = Some(*room);
                effects.children_to_wake.push(child.clone());
            }
        }
        effects
    }

    /// Forgets a deleted tenant: its parent stops keeping room for it.
    pub fn forget(&mut self, name: &str) {
        self.entries.remove(name);
    }
}

fn combine(a: &QuotaVector, b: &QuotaVector, pick: impl Fn(Amount, Amount) -> Amount) -> QuotaVector {
    let mut out = QuotaVector::default();
    for r in Resource::ALL {
        out.set(r, pick(a.get(r), b.get(r)));
    }
    out
}

/// Resource by resource, the larger.
pub fn max(a: &QuotaVector, b: &QuotaVector) -> QuotaVector {
    combine(a, b, Amount::max)
}

/// Resource by resource, the smaller.
pub fn min(a: &QuotaVector, b: &QuotaVector) -> QuotaVector {
    combine(a, b, Amount::min)
}

/// Resource by resource, `a - b`, never below zero.
pub fn saturating_sub(a: &QuotaVector, b: &QuotaVector) -> QuotaVector {
    combine(a, b, |x, y| x.checked_sub(y).filter(|d| !d.is_negative()).unwrap_or(Amount::ZERO))
}

#[cfg(test)]
mod tests {
    use govpaas_crds::tenant::TenantQuota;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    fn q(cpu: &str, pods: i32) -> QuotaVector {
        QuotaVector::of_tenant(&TenantQuota {
            cpu: Quantity(cpu.into()),
            memory: Quantity(format!("{pods}Gi")),
            storage: Quantity(format!("{pods}Gi")),
            pods,
            services: pods,
            public_hosts: pods,
            lgsp_apis: pods,
        })
        .unwrap()
    }

    fn member(name: &str, requested: QuotaVector) -> Member {
        Member {
            name: name.into(),
            uid: format!("uid-{name}"),
            requested,
            recorded: None,
            namespace_shares: QuotaVector::default(),
        }
    }

    fn cpu(v: &QuotaVector) -> String {
        v.get(Resource::Cpu).to_string()
    }

    /// A parent with children, the way the controller sees it.
    struct Tree {
        parent: Member,
        children: Vec<Member>,
    }

    impl Tree {
        fn family_of_parent(&self) -> Family<'_> {
            Family { tenant: &self.parent, parent: None, siblings: vec![], children: self.children.iter().collect() }
        }

        fn family_of(&self, i: usize) -> Family<'_> {
            Family {
                tenant: &self.children[i],
                parent: Some(&self.parent),
                siblings: self.children.iter().collect(),
                children: vec![],
            }
        }
    }

    /// Reconciles a tenant: plan, then (the apply succeeded) record.
    fn reconcile(ledger: &mut Ledger, family: &Family<'_>) -> (Plan, Effects) {
        let plan = ledger.plan(family).unwrap();
        let effects = ledger.applied(family.tenant, &plan);
        (plan, effects)
    }

    #[test]
    fn children_are_carved_out_of_the_province() {
        let tree = Tree { parent: member("quang-nam", q("64", 100)), children: vec![member("so-noi-vu", q("8", 10))] };
        let mut ledger = Ledger::default();
        let (plan, _) = reconcile(&mut ledger, &tree.family_of_parent());
        assert_eq!(plan.request, Request::Granted);
        assert_eq!(cpu(&plan.own.unwrap()), "64");

        // The child is granted, but must wait until the province's namespaces made room.
        let (plan, effects) = reconcile(&mut ledger, &tree.family_of(0));
        assert_eq!(plan.request, Request::WaitingForParent { parent: "quang-nam".into() });
        assert_eq!(plan.hard, None);
        assert!(!effects.parent_changed);

        let (plan, effects) = reconcile(&mut ledger, &tree.family_of_parent());
        assert_eq!(cpu(&plan.children), "8");
        assert_eq!(cpu(&plan.own.unwrap()), "56");
        assert_eq!(effects.children_to_wake, vec!["so-noi-vu".to_string()]);

        let (plan, effects) = reconcile(&mut ledger, &tree.family_of(0));
        assert_eq!(plan.request, Request::Granted);
        assert_eq!(cpu(&plan.hard.unwrap()), "8");
        assert!(effects.parent_changed);
    }

    #[test]
    fn a_child_that_does_not_fit_gets_nothing_and_a_reason() {
        let tree = Tree {
            parent: member("quang-nam", q("10", 100)),
            children: vec![member("so-noi-vu", q("8", 10)), member("so-tai-chinh", q("4", 10))],
        };
        let mut ledger = Ledger::default();
        reconcile(&mut ledger, &tree.family_of_parent());
        reconcile(&mut ledger, &tree.family_of(0));
        let (plan, _) = reconcile(&mut ledger, &tree.family_of(1));
        let Request::ExceedsParent { parent, excess } = &plan.request else { panic!("{:?}", plan.request) };
        assert_eq!(parent, "quang-nam");
        assert_eq!(excess.len(), 1);
        assert_eq!(excess[0].to_string(), "cpu 4 > 2");
        assert_eq!(plan.hard, None);
    }

    #[test]
    fn a_parent_cannot_drop_below_its_children() {
        let mut tree =
            Tree { parent: member("quang-nam", q("10", 100)), children: vec![member("so-noi-vu", q("8", 10))] };
        let mut ledger = Ledger::default();
        reconcile(&mut ledger, &tree.family_of_parent());
        reconcile(&mut ledger, &tree.family_of(0));
        reconcile(&mut ledger, &tree.family_of_parent());
        reconcile(&mut ledger, &tree.family_of(0));

        tree.parent.requested = q("6", 100);
        let (plan, _) = reconcile(&mut ledger, &tree.family_of_parent());
        let Request::BelowCommitted { excess } = &plan.request else { panic!("{:?}", plan.request) };
        assert_eq!(excess[0].to_string(), "cpu 8 > 6");
        // It keeps the quota it had.
        assert_eq!(cpu(&plan.hard.unwrap()), "10");
        assert_eq!(cpu(&plan.own.unwrap()), "2");
    }

    #[test]
    fn a_decrease_applies_at_once_and_the_parent_grows_after() {
        let mut tree =
            Tree { parent: member("quang-nam", q("10", 100)), children: vec![member("so-noi-vu", q("8", 10))] };
        let mut ledger = Ledger::default();
        for family in [tree.family_of_parent(), tree.family_of(0), tree.family_of_parent(), tree.family_of(0)] {
            reconcile(&mut ledger, &family);
        }
        tree.children[0].requested = q("3", 10);
        let (plan, effects) = reconcile(&mut ledger, &tree.family_of(0));
        assert_eq!(cpu(&plan.hard.unwrap()), "3");
        assert!(effects.parent_changed);
        let (plan, _) = reconcile(&mut ledger, &tree.family_of_parent());
        assert_eq!(cpu(&plan.own.unwrap()), "7");
    }

    #[test]
    fn a_restart_reseeds_from_status() {
        let mut parent = member("quang-nam", q("10", 100));
        parent.recorded = Some(q("10", 100));
        let mut child = member("so-noi-vu", q("8", 10));
        child.recorded = Some(q("8", 10));
        let tree = Tree { parent, children: vec![child] };
        let mut ledger = Ledger::default();
        // The child reconciles first after the restart: it keeps what it has, no waiting.
        let (plan, effects) = reconcile(&mut ledger, &tree.family_of(0));
        assert_eq!(plan.request, Request::Granted);
        assert_eq!(cpu(&plan.hard.unwrap()), "8");
        assert_eq!(effects, Effects::default());
        let (plan, effects) = reconcile(&mut ledger, &tree.family_of_parent());
        assert_eq!(cpu(&plan.own.unwrap()), "2");
        assert_eq!(effects, Effects::default(), "an unchanged world changes nothing");
    }

    #[test]
    fn a_recreated_tenant_starts_afresh() {
        let tree = Tree { parent: member("quang-nam", q("10", 100)), children: vec![member("so-noi-vu", q("8", 10))] };
        let mut ledger = Ledger::default();
        for family in [tree.family_of_parent(), tree.family_of(0), tree.family_of_parent(), tree.family_of(0)] {
            reconcile(&mut ledger, &family);
        }
        let mut again = Tree { parent: tree.parent.clone(), children: vec![member("so-noi-vu", q("8", 10))] };
        again.children[0].uid = "uid-new".into();
        let (plan, _) = reconcile(&mut ledger, &again.family_of(0));
        // The old one's reservation went with it; the new one waits for the parent like any new child.
        assert_eq!(plan.request, Request::WaitingForParent { parent: "quang-nam".into() });
    }

    /// Siblings asking at once, reconciled in any interleaving, never make the parent's own share
    /// plus what the children applied exceed the parent's quota; and once things settle, every
    /// request that fits is granted.
    #[test]
    fn no_interleaving_oversubscribes_the_parent() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _round in 0..200 {
            let mut tree = Tree {
                parent: member("p", q("16", 100)),
                children: (0..4).map(|i| member(&format!("c{i}"), q(&format!("{}", 1 + i), 5))).collect(),
            };
            let mut ledger = Ledger::default();
            let mut parent_own = QuotaVector::default();
            let mut applied: Vec<QuotaVector> = vec![QuotaVector::default(); 4];
            for _step in 0..60 {
                // Now and then a child changes its request.
                if next(4) == 0 {
                    let i = next(4);
                    tree.children[i].requested = q(&format!("{}", next(9)), 5);
                }
                let who = next(5);
                if who == 4 {
                    let plan = ledger.plan(&tree.family_of_parent()).unwrap();
                    ledger.applied(&tree.parent, &plan);
                    parent_own = plan.own.unwrap();
                } else {
                    let plan = ledger.plan(&tree.family_of(who)).unwrap();
                    ledger.applied(&tree.children[who], &plan);
                    applied[who] = plan.hard.unwrap_or_default();
                }
                let mut total = parent_own;
                for a in &applied {
                    total = total.add(a).unwrap();
                }
                assert!(total.excess_over(&q("16", 100)).is_empty(), "oversubscribed: {}", cpu(&total));
            }
            // Settle: reconcile everyone until nothing changes; whatever is applied is granted or refused.
            for _ in 0..4 {
                let plan = ledger.plan(&tree.family_of_parent()).unwrap();
                ledger.applied(&tree.parent, &plan);
                for i in 0..4 {
                    let plan = ledger.plan(&tree.family_of(i)).unwrap();
                    ledger.applied(&tree.children[i], &plan);
                    assert!(!matches!(plan.request, Request::ParentNotProvisioned { .. }), "the parent is provisioned");
                }
            }
            for i in 0..4 {
                let plan = ledger.plan(&tree.family_of(i)).unwrap();
                assert!(
                    !matches!(plan.request, Request::WaitingForParent { .. }),
                    "after settling nobody waits: {:?}",
                    plan.request
                );
            }
        }
    }
}
