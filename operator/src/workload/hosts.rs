//! Who serves a host, and how many public hosts a tenant has left.
//!
//! The rule is the API's ([`govpaas_crds::hosts`]): a host is served by one Portal or
//! DocumentService only, and the oldest claim keeps it. This module supplies the order — creation
//! time, then kind, namespace and name, so two services created in the same second still have a
//! fixed one — and uses the same order for the tenant's public-host quota, so a service that is
//! already serving is never pushed out by a newer one.

use govpaas_crds::hosts::HostConflict;
pub use govpaas_crds::hosts::{HostClaim, conflicts};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// A claim with the creation time of its object (`None` for one not stored yet: it comes last).
#[derive(Clone, Debug)]
pub struct Dated {
    pub created: Option<Time>,
    pub claim: HostClaim,
}

/// The claim of a Portal or DocumentService, with its creation time.
pub fn dated<'a, T>(service: &'a T) -> Dated
where
    T: kube::Resource,
    HostClaim: From<&'a T>,
{
    Dated { created: service.meta().creation_timestamp.clone(), claim: HostClaim::from(service) }
}

/// The claims, oldest first.
pub fn oldest_first(mut dated: Vec<Dated>) -> Vec<HostClaim> {
    dated.sort_by(|a, b| {
        let key = |d: &Dated| {
            (d.created.is_none(), d.created.clone(), d.claim.kind, d.claim.namespace.clone(), d.claim.name.clone())
        };
        key(a).cmp(&key(b))
    });
    dated.into_iter().map(|d| d.claim).collect()
}

fn same_object(a: &HostClaim, b: &HostClaim) -> bool {
    a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
}

/// How many public hosts the services in `namespaces` (the tenant's) that come before `me` in
/// `ordered` use; all of them but `me` when `me` is not in `ordered` yet.
pub fn used_before(me: &HostClaim, ordered: &[HostClaim], namespaces: &[String]) -> i64 {
    let earlier = match ordered.iter().position(|c| same_object(c, me)) {
        Some(p) => &ordered[..p],
        None => ordered,
    };
    earlier
        .iter()
        .filter(|c| namespaces.contains(&c.namespace) && !same_object(c, me))
        .map(|c| i64::try_from(c.hosts.len()).unwrap_or(i64::MAX))
        .sum()
}

/// The conflicts as one message, or `None` when there are none.
pub fn conflict_message(conflicts: &[HostConflict]) -> Option<String> {
    (!conflicts.is_empty()).then(|| conflicts.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dated(kind: &'static str, ns: &str, name: &str, created: Option<i64>, hosts: &[&str]) -> Dated {
        Dated {
            created: created.map(|s| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())),
            claim: HostClaim {
                kind,
                namespace: ns.into(),
                name: name.into(),
                hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            },
        }
    }

    #[test]
    fn the_older_service_keeps_a_shared_host() {
        let ordered = oldest_first(vec![
            dated("DocumentService", "a", "new", Some(200), &["y.gov.vn", "z.gov.vn"]),
            dated("Portal", "a", "old", Some(100), &["x.gov.vn", "y.gov.vn"]),
        ]);
        assert_eq!(ordered[0].name, "old");
        let found = conflicts(&ordered[1], &ordered);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].host, "y.gov.vn");
        assert!(conflicts(&ordered[0], &ordered).is_empty());
        let message = conflict_message(&found).unwrap();
        assert!(message.starts_with("host y.gov.vn is already served by Portal a/old"), "{message}");
    }

    #[test]
    fn ties_are_broken_by_kind_namespace_and_name_and_unsaved_comes_last() {
        let ordered = oldest_first(vec![
            dated("Portal", "a", "0", None, &[]),
            dated("Portal", "a", "b", Some(100), &[]),
            dated("Portal", "a", "a", Some(100), &[]),
            dated("DocumentService", "z", "z", Some(100), &[]),
        ]);
        let names: Vec<&str> = ordered.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["z", "a", "b", "0"]);
    }

    #[test]
    fn public_hosts_are_counted_in_the_tenants_namespaces_before_me() {
        let ns = vec!["t1".to_owned(), "t1-extra".to_owned()];
        let ordered = oldest_first(vec![
            dated("Portal", "t1", "p1", Some(1), &["a.t1.gov.vn", "b.t1.gov.vn"]),
            dated("DocumentService", "t1-extra", "d1", Some(2), &["c.t1.gov.vn"]),
            dated("Portal", "other", "p", Some(1), &["o.gov.vn"]),
            dated("Portal", "t1", "me", Some(5), &["m.t1.gov.vn"]),
            dated("Portal", "t1", "later", Some(9), &["l.t1.gov.vn"]),
        ]);
        let me = ordered.iter().find(|c| c.name == "me").unwrap();
        assert_eq!(used_before(me, &ordered, &ns), 3);
        // Not in the cache yet: every other service of the tenant comes first.
        let unsaved = dated("Portal", "t1", "new", None, &["n.t1.gov.vn"]).claim;
        assert_eq!(used_before(&unsaved, &ordered, &ns), 5);
    }
}
