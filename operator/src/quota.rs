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
//! - `reserved`: how much its parent's own ResourceQuotas leave room for it: lowered as soon as
//!   the parent plans a larger share of its own (the write may land any moment after the lock is
//!   released), raised only once the parent's ResourceQuotas were written;
//! - `unconfirmed`: the largest quota planned since an apply was last recorded (an apply can fail
//!   after its ResourceQuotas were written, and the ledger is then never told).
//!
//! A parent's own namespaces get its quota minus, for each child, the largest of what the child
//! was granted, has applied and may have written. A child applies an increase only once the
//! parent has reserved it (the parent's namespaces shrank first) and a parent grows its own share
//! back only after the child applied its decrease. So at every instant — plans, writes and records
//! of different tenants interleaved, since the lock is not held across the API calls between
//! them — the ResourceQuotas of a parent's own namespaces plus its children's add up to at most
//! the parent's quota.
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
    /// The largest quota planned since `applied` was last told: an apply may fail after its
    /// ResourceQuotas were written, so what a plan says is held until an apply is recorded.
    unconfirmed: Option<QuotaVector>,
}

impl Entry {
    fn seeded(member: &Member) -> Self {
        Entry {
            uid: member.uid.clone(),
            granted: member.recorded,
            applied: member.recorded,
            reserved: member.recorded,
            unconfirmed: None,
        }
    }

    /// What the tenant holds or may take: its parent must keep room for this.
    fn holding(&self) -> QuotaVector {
        [self.granted, self.applied, self.unconfirmed].iter().flatten().fold(QuotaVector::default(), |a, b| max(&a, b))
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
        if let Some(hard) = hard {
            entry.unconfirmed = Some(max(&entry.unconfirmed.unwrap_or_default(), &hard));
        }
        let own = hard.map(|hard| saturating_sub(&hard, &children));
        if own.is_some() {
            // `own` may be written from now on, before `applied` is told: a child's room shrinks
            // to what this plan leaves it now, and grows only once the plan is applied.
            for (child, room) in &reserved {
                if let Some(entry) = self.entries.get_mut(child) {
                    entry.reserved = Some(min(&entry.reserved.unwrap_or_default(), room));
                }
            }
        }
        Ok(Plan { hard, children, own, request, reserved })
    }

    /// Records that `tenant`'s objects were applied as `plan` said.
    pub fn applied(&mut self, tenant: &Member, plan: &Plan) -> Effects {
        let mut effects = Effects::default();
        let entry = self.entry(tenant);
        entry.unconfirmed = None;
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
    use proptest::prelude::*;

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

    /// The parent of [`World`]: its quota, and its index among the tenants that reconcile.
    const BUDGET_CPU: &str = "16";
    const PARENT: usize = 4;

    /// One thing that happens around the ledger. As in the tenant controller, a reconcile is three
    /// moments apart: it plans under the lock, writes its ResourceQuotas (awaiting the API server,
    /// the lock released, while other tenants plan and write), then tells the ledger — or fails
    /// between, before or after its ResourceQuotas were written, and the ledger is never told.
    #[derive(Clone, Debug)]
    enum Step {
        /// A child's `spec.quota` changes (CPU cores).
        Ask { child: usize, cpu: u8 },
        /// Tenant `who` (a child, or [`PARENT`]) starts a reconcile: it plans.
        Plan(usize),
        /// Its ResourceQuotas are written as planned.
        Write(usize),
        /// Its apply is done: the ledger is told.
        Record(usize),
        /// Its apply fails: the ledger is not told.
        Fail(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            2 => (0..4usize, 0..9u8).prop_map(|(child, cpu)| Step::Ask { child, cpu }),
            3 => (0..5usize).prop_map(Step::Plan),
            3 => (0..5usize).prop_map(Step::Write),
            3 => (0..5usize).prop_map(Step::Record),
            2 => (0..5usize).prop_map(Step::Fail),
        ]
    }

    /// A reconcile between its plan and its end.
    struct InFlight {
        plan: Plan,
        written: bool,
    }

    /// A parent and four children, the ledger that decides for them, and — kept apart from the
    /// ledger, changed only by writes — what the API server holds: the ResourceQuotas of each
    /// tenant's own namespaces (a child has no children: its own share is its whole quota).
    struct World {
        tree: Tree,
        ledger: Ledger,
        in_flight: Vec<Option<InFlight>>,
        /// The parent's plan its own namespaces' ResourceQuotas were last written from.
        parent_written: Option<Plan>,
        /// The parent has told the ledger of an apply.
        parent_recorded: bool,
        children_written: Vec<QuotaVector>,
        /// What the ledger granted each child, as its plans announced it (a refusal keeps the
        /// previous grant).
        grants: Vec<QuotaVector>,
    }

    impl World {
        fn new() -> Self {
            World {
                tree: Tree {
                    parent: member("p", q(BUDGET_CPU, 100)),
                    children: (0..4).map(|i| member(&format!("c{i}"), q(&format!("{}", 1 + i), 5))).collect(),
                },
                ledger: Ledger::default(),
                in_flight: (0..5).map(|_| None).collect(),
                parent_written: None,
                parent_recorded: false,
                children_written: vec![QuotaVector::default(); 4],
                grants: vec![QuotaVector::default(); 4],
            }
        }

        fn tenant(&self, who: usize) -> &Member {
            if who == PARENT { &self.tree.parent } else { &self.tree.children[who] }
        }

        /// Applies `step`; a step that cannot happen now (a write with no reconcile in flight, a
        /// second reconcile of a tenant whose first is still running) does nothing.
        fn run(&mut self, step: &Step) -> Result<(), TestCaseError> {
            match *step {
                Step::Ask { child, cpu } => self.tree.children[child].requested = q(&cpu.to_string(), 5),
                Step::Plan(who) if self.in_flight[who].is_none() => {
                    let family = if who == PARENT { self.tree.family_of_parent() } else { self.tree.family_of(who) };
                    let plan = self.ledger.plan(&family).unwrap();
                    if who != PARENT {
                        self.decided(who, &plan)?;
                    }
                    // No quota to apply: the reconcile writes its status and ends.
                    if plan.hard.is_some() {
                        self.in_flight[who] = Some(InFlight { plan, written: false });
                    }
                }
                Step::Write(who) => {
                    if let Some(in_flight) = self.in_flight[who].as_mut().filter(|f| !f.written) {
                        in_flight.written = true;
                        let plan = in_flight.plan.clone();
                        if who == PARENT {
                            self.parent_written = Some(plan);
                        } else {
                            self.children_written[who] = plan.hard.unwrap();
                        }
                    }
                }
                Step::Record(who) if self.in_flight[who].as_ref().is_some_and(|f| f.written) => {
                    let in_flight = self.in_flight[who].take().unwrap();
                    let tenant = self.tenant(who).clone();
                    self.ledger.applied(&tenant, &in_flight.plan);
                    self.parent_recorded |= who == PARENT;
                }
                Step::Fail(who) => self.in_flight[who] = None,
                Step::Plan(_) | Step::Record(_) => {}
            }
            self.check()
        }

        /// What a child's plan decided, checked against what the world saw before it.
        fn decided(&mut self, child: usize, plan: &Plan) -> Result<(), TestCaseError> {
            let requested = self.tree.children[child].requested;
            match &plan.request {
                Request::Granted | Request::WaitingForParent { .. } => self.grants[child] = requested,
                Request::ParentNotProvisioned { .. } => {
                    prop_assert!(!self.parent_recorded, "the parent is provisioned: {plan:?}")
                }
                Request::ExceedsParent { .. } | Request::BelowCommitted { .. } => {
                    // A refused child changes nothing: it may apply what it was granted before,
                    // no more, and its grant stays.
                    let before = self.grants[child];
                    prop_assert!(
                        plan.hard.is_none_or(|hard| hard.excess_over(&before).is_empty()),
                        "refused, child c{child} applies {} beyond its grant {}",
                        cpu(&plan.hard.unwrap()),
                        cpu(&before)
                    );
                }
            }
            // Whatever the outcome, it never applies more than it was granted.
            prop_assert!(
                plan.hard.is_none_or(|hard| hard.excess_over(&self.grants[child]).is_empty()),
                "child c{child} applies {} beyond its grant {}",
                cpu(&plan.hard.unwrap()),
                cpu(&self.grants[child])
            );
            Ok(())
        }

        /// The invariants, at every instant, of what the API server holds and what was granted.
        fn check(&self) -> Result<(), TestCaseError> {
            let budget = q(BUDGET_CPU, 100);
            let own = self.parent_written.as_ref().and_then(|plan| plan.own).unwrap_or_default();
            let mut total = own;
            for (i, written) in self.children_written.iter().enumerate() {
                total = total.add(written).unwrap();
                // No child holds more than the parent carved for it when it wrote its own share.
                let carved = self
                    .parent_written
                    .as_ref()
                    .and_then(|plan| plan.reserved.iter().find(|(name, _)| *name == self.tree.children[i].name))
                    .map(|(_, room)| *room)
                    .unwrap_or_default();
                prop_assert!(
                    written.excess_over(&carved).is_empty(),
                    "child c{i} holds {} where the parent carved {}",
                    cpu(written),
                    cpu(&carved)
                );
            }
            prop_assert!(
                total.excess_over(&budget).is_empty(),
                "oversubscribed: {} (the parent's own {}, the children {:?})",
                cpu(&total),
                cpu(&own),
                self.children_written.iter().map(cpu).collect::<Vec<_>>()
            );
            let mut granted = QuotaVector::default();
            for grant in &self.grants {
                granted = granted.add(grant).unwrap();
            }
            prop_assert!(granted.excess_over(&budget).is_empty(), "granted {} of {BUDGET_CPU}", cpu(&granted));
            Ok(())
        }

        /// Every reconcile in flight ends, then everyone reconciles to the end, until nothing moves.
        fn settle(&mut self) -> Result<(), TestCaseError> {
            for who in 0..5 {
                self.run(&Step::Write(who))?;
                self.run(&Step::Record(who))?;
            }
            for _ in 0..4 {
                for who in [PARENT, 0, 1, 2, 3] {
                    for step in [Step::Plan(who), Step::Write(who), Step::Record(who)] {
                        self.run(&step)?;
                    }
                }
            }
            Ok(())
        }
    }

    /// A child provisioned with `cores` CPU cores, and its parent's share shrunk for it, all recorded.
    fn provisioned(cores: u8) -> World {
        use Step::*;
        let mut world = World::new();
        let steps = [Ask { child: 0, cpu: cores }, Plan(PARENT), Write(PARENT), Record(PARENT), Plan(0)]
            .into_iter()
            .chain([Plan(PARENT), Write(PARENT), Record(PARENT), Plan(0), Write(0), Record(0)]);
        for step in steps {
            world.run(&step).unwrap();
        }
        assert_eq!(cpu(&world.children_written[0]), cores.to_string());
        world
    }

    #[test]
    fn a_child_waits_while_its_parents_larger_share_may_be_written() {
        use Step::*;
        let mut world = provisioned(8);
        for step in [Ask { child: 0, cpu: 2 }, Plan(0), Write(0), Record(0), Plan(PARENT), Write(PARENT)] {
            world.run(&step).unwrap();
        }
        // The parent's own share grew to 16 - 2 = 14 and is written; it has not told the ledger yet.
        assert_eq!(cpu(&world.parent_written.as_ref().unwrap().own.unwrap()), "14");
        world.run(&Ask { child: 0, cpu: 8 }).unwrap();
        world.run(&Plan(0)).unwrap();
        let plan = &world.in_flight[0].as_ref().expect("it keeps what it has").plan;
        assert_eq!(plan.request, Request::WaitingForParent { parent: "p".into() });
        assert_eq!(cpu(&plan.hard.unwrap()), "2");
        world.run(&Write(0)).unwrap();
    }

    #[test]
    fn a_quota_written_by_an_apply_that_failed_stays_held() {
        use Step::*;
        let mut world = provisioned(2);
        for step in [Ask { child: 0, cpu: 8 }, Plan(0), Plan(PARENT), Write(PARENT), Record(PARENT), Fail(0)] {
            world.run(&step).unwrap();
        }
        // Its increase to 8 is written, then its apply fails: the ledger is not told.
        for step in [Plan(0), Write(0), Fail(0), Ask { child: 0, cpu: 1 }, Plan(0)] {
            world.run(&step).unwrap();
        }
        assert_eq!(cpu(&world.children_written[0]), "8");
        // Until an apply of the child is recorded, its parent keeps room for the 8 it may hold.
        world.run(&Plan(PARENT)).unwrap();
        assert_eq!(cpu(&world.in_flight[PARENT].as_ref().unwrap().plan.own.unwrap()), "8");
        world.run(&Write(PARENT)).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Siblings asking at once, their reconciles and the parent's interleaved in any order —
        /// a plan, the write of its ResourceQuotas and the ledger told of it apart in time, an
        /// apply failing before or after its write — never make what the API server holds for the
        /// parent's own namespaces plus its children exceed the parent's quota, nor a child hold
        /// more than the parent carved for it; a refused request changes nothing; and once things
        /// settle, every request that fits is granted.
        #[test]
        fn no_interleaving_oversubscribes_the_parent(steps in proptest::collection::vec(step(), 0..300)) {
            let mut world = World::new();
            for step in &steps {
                world.run(step)?;
            }
            world.settle()?;
            for i in 0..4 {
                let plan = world.ledger.plan(&world.tree.family_of(i)).unwrap();
                prop_assert!(
                    !matches!(plan.request, Request::ParentNotProvisioned { .. }),
                    "the parent is provisioned"
                );
                prop_assert!(
                    !matches!(plan.request, Request::WaitingForParent { .. }),
                    "after settling nobody waits: {:?}",
                    plan.request
                );
            }
        }
    }
}
