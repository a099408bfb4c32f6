//! Leader election on a `coordination.k8s.io` Lease, so that of the operator's replicas exactly one
//! reconciles and the others stand by.
//!
//! The Lease is renewed every few seconds; when the leader dies without releasing it, a standby takes
//! it over once it has gone unrenewed for [`LEASE_SECONDS`]. A leader that loses the Lease (it could
//! not renew it in time, e.g. cut off from the API server) stops at once rather than risk two writers;
//! its Pod is restarted and stands by. On a graceful shutdown the leader releases the Lease, so the
//! standby takes over without waiting for it to expire.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// The Lease's name in the operator's namespace, for an operator of every tenant.
pub const LEASE_NAME: &str = "govpaas-operator-leader";

/// The Lease an operator elects its leader on: [`LEASE_NAME`], or for an operator scoped to some
/// tenants by a label selector, one Lease per selector (operators of disjoint scopes never write the
/// same objects, so they need not wait for each other).
pub fn lease_name(tenant_selector: Option<&str>) -> String {
    match tenant_selector {
        None => LEASE_NAME.to_string(),
        Some(selector) => {
            // FNV-1a: stable across builds and platforms, unlike std's hasher.
            let hash = selector
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
            format!("{LEASE_NAME}-{hash:016x}")
        }
    }
}
/// How long a Lease stays valid after its last renewal: a standby takes over at most this long after
/// the leader's death (plus one watch round trip).
pub const LEASE_SECONDS: u64 = 10;
/// How long before expiry the leader renews.
pub const RENEW_BEFORE_SECONDS: u64 = 4;

/// This instance's part in the election.
pub struct Leadership {
    identity: String,
    state: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

fn lease_error(err: kube_lease_manager::LeaseManagerError) -> Error {
    Error::Leadership(err.to_string())
}

impl Leadership {
    /// Joins the election (creating the Lease if needed) and keeps taking part in the background.
    pub async fn join(client: Client, namespace: &str, lease: &str, identity: String) -> Result<Self> {
        let manager = LeaseManagerBuilder::new(client, lease)
            .with_namespace(namespace)
            .with_identity(identity.clone())
            .with_duration(LEASE_SECONDS)
            .with_grace(RENEW_BEFORE_SECONDS)
            .with_field_manager(format!("govpaas.io/leader-election-{identity}"))
            .build()
            .await
            .map_err(lease_error)?;
        let (state, task) = manager.watch().await;
        Ok(Leadership { identity, state, task })
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Waits until this instance holds the Lease.
    pub async fn acquired(&mut self) -> Result<()> {
        self.state.wait_for(|leading| *leading).await.map_err(|_| Error::Leadership("the election stopped".into()))?;
        Ok(())
    }

    /// Resolves when this instance, having led, no longer holds the Lease.
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leading| !*leading).await;
    }

    /// Leaves the election, releasing the Lease if held, so a standby takes over at once.
    pub async fn release(self) -> Result<()> {
        drop(self.state);
        match self.task.await {
            Ok(Ok(_manager)) => Ok(()),
            Ok(Err(err)) => Err(lease_error(err)),
            Err(join) => Err(Error::Leadership(format!("the election task failed: {join}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_has_its_own_stable_lease() {
        assert_eq!(lease_name(None), "govpaas-operator-leader");
        let a = lease_name(Some("govpaas.io/scope=a"));
        assert_eq!(a, lease_name(Some("govpaas.io/scope=a")));
        assert_ne!(a, lease_name(Some("govpaas.io/scope=b")));
        assert!(a.len() <= 63 && a.starts_with("govpaas-operator-leader-"));
    }
}
