//! Host ownership across objects: a public host name is served by one Portal or DocumentService
//! only. An admission policy sees one object at a time, so the controllers decide this with
//! [`conflicts`] and report it as `Ready=False`, reason `HostConflict`.

use std::fmt;

use kube::ResourceExt;

use crate::{DocumentService, Portal, conditions::reasons};

/// The hosts one object serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostClaim {
    /// `Portal` or `DocumentService`.
    pub kind: &'static str,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// Its hosts, lower case.
    pub hosts: Vec<String>,
}

impl HostClaim {
    fn same_object(&self, other: &HostClaim) -> bool {
        self.kind == other.kind && self.namespace == other.namespace && self.name == other.name
    }
}

impl From<&Portal> for HostClaim {
    fn from(portal: &Portal) -> Self {
        Self {
            kind: "Portal",
            namespace: portal.namespace().unwrap_or_default(),
            name: portal.name_any(),
            hosts: portal.spec.hosts.clone(),
        }
    }
}

impl From<&DocumentService> for HostClaim {
    fn from(service: &DocumentService) -> Self {
        Self {
            kind: "DocumentService",
            namespace: service.namespace().unwrap_or_default(),
            name: service.name_any(),
            hosts: service.spec.host.iter().cloned().collect(),
        }
    }
}

/// A host that an older object already serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConflict {
    /// The contested host.
    pub host: String,
    /// The object that keeps it.
    pub owner: HostClaim,
}

impl HostConflict {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        reasons::HOST_CONFLICT
    }
}

impl fmt::Display for HostConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host {} is already served by {} {}/{}: a host belongs to one Portal or DocumentService",
            self.host, self.owner.kind, self.owner.namespace, self.owner.name
        )
    }
}

/// The hosts of `claim` that an earlier object in `all` already serves. `all` is ordered oldest
/// first (by creation time), so the first object to claim a host keeps it; `claim` may be in it.
pub fn conflicts(claim: &HostClaim, all: &[HostClaim]) -> Vec<HostConflict> {
    let position = all.iter().position(|c| c.same_object(claim));
    let earlier = match position {
        Some(p) => &all[..p],
        None => all,
    };
    claim
        .hosts
        .iter()
        .filter_map(|host| {
            earlier
                .iter()
                .find(|other| !other.same_object(claim) && other.hosts.contains(host))
                .map(|owner| HostConflict { host: host.clone(), owner: owner.clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(kind: &'static str, ns: &str, name: &str, hosts: &[&str]) -> HostClaim {
        HostClaim {
            kind,
            namespace: ns.into(),
            name: name.into(),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    #[test]
    fn the_first_claim_keeps_the_host() {
        let older = claim("Portal", "so-noivu", "cong", &["cong.so-noivu.danang.gov.vn"]);
        let newer = claim("DocumentService", "so-noivu", "van-ban", &["cong.so-noivu.danang.gov.vn"]);
        let all = vec![older.clone(), newer.clone()];
        assert_eq!(conflicts(&older, &all), []);
        let found = conflicts(&newer, &all);
        assert_eq!(found, [HostConflict { host: "cong.so-noivu.danang.gov.vn".into(), owner: older.clone() }]);
        assert_eq!(found[0].reason(), "HostConflict");
        assert!(found[0].to_string().contains("already served by Portal so-noivu/cong"));
        // An object not yet in the list loses to every existing one.
        let candidate = claim("Portal", "x", "y", &["cong.so-noivu.danang.gov.vn", "free.vn"]);
        assert_eq!(conflicts(&candidate, &all).len(), 1);
    }

    #[test]
    fn distinct_hosts_and_the_same_object_never_conflict() {
        let a = claim("Portal", "a", "p", &["a.danang.gov.vn", "www.a.danang.gov.vn"]);
        let b = claim("Portal", "b", "p", &["b.danang.gov.vn"]);
        let all = vec![a.clone(), b.clone()];
        assert_eq!(conflicts(&a, &all), []);
        assert_eq!(conflicts(&b, &all), []);
    }
}
