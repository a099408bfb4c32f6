//! The Platform's count of Tenants: `status.tenants` and `status.readyTenants` (the printer
//! columns `Tenants` and `Tenants Ready` of `kubectl get platform`).
//!
//! One writer: only an operator that reconciles every Tenant (run without `--tenant-selector`)
//! counts them, and of its replicas only the leader runs it, like every controller. An operator
//! scoped to some Tenants sees only those, so it never writes the count. The two fields are
//! applied under a field manager of their own ([`FIELD_MANAGER`]): the platform-trust
//! controller's status applies, which omit them, leave them alone, and it compares its own fields
//! only.
//!
//! Woken by every event of the shared Tenant and Platform watches, it waits a moment so that a
//! burst of changes (thousands of Tenants turning Ready) becomes one write, counts from the
//! shared cache and writes through [`StatusWrites`]: an unchanged count is never rewritten.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use govpaas_crds::Platform;
use govpaas_crds::conditions::READY;
use govpaas_crds::platform::PLATFORM_NAME;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde::Serialize;
use tracing::{info, warn};

use crate::reconcile::apply::StatusWrites;
use crate::reconcile::shared::Subscription;
use crate::tenancy::TenantObject;

/// The field manager of the count.
pub const FIELD_MANAGER: &str = "govpaas.io/tenant-census";
/// How long a wake-up waits for more before counting.
const SETTLE: Duration = Duration::from_secs(2);
/// How soon a failed write is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// The fields of the Platform's status the census owns.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TenantCount {
    pub tenants: i32,
    pub ready_tenants: i32,
}

impl TenantCount {
    /// What the Platform's status shows now, if anything.
    pub fn of(platform: &Platform) -> Option<Self> {
        let status = platform.status.as_ref()?;
        Some(TenantCount { tenants: status.tenants?, ready_tenants: status.ready_tenants? })
    }
}

/// Counts `tenants`: every Tenant (one that does not parse too), and those whose `Ready` is True.
pub fn count(tenants: &[Arc<TenantObject>]) -> TenantCount {
    let ready = tenants
        .iter()
        .filter(|tenant| {
            tenant.0.as_ref().is_ok_and(|t| {
                t.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == READY && c.status == "True"))
            })
        })
        .count();
    let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    TenantCount { tenants: clamp(tenants.len()), ready_tenants: clamp(ready) }
}

/// Runs the census until both watches end (at shutdown).
pub async fn run(client: Client, tenants: Subscription<TenantObject>, platforms: Subscription<Platform>) {
    let (tenant_store, platform_store) = (tenants.store.clone(), platforms.store.clone());
    if !(tenants.listed.clone().wait().await && platforms.listed.clone().wait().await) {
        return;
    }
    let api: Api<Platform> = Api::all(client);
    let writes = StatusWrites::as_manager(FIELD_MANAGER);
    let mut events = futures::stream::select(tenants.events.map(|_| ()), platforms.events.map(|_| ()));
    // Count once at start, then after each burst of events.
    let mut pending = true;
    loop {
        if pending {
            tokio::time::sleep(SETTLE).await;
            // Everything that arrived meanwhile is covered by this count.
            while let Some(Some(())) = futures::FutureExt::now_or_never(events.next()) {}
            let counted = count(&tenant_store.state());
            pending = match platform_store.get(&ObjectRef::new(PLATFORM_NAME)) {
                // No Platform yet: its creation is an event.
                None => false,
                Some(platform) => {
                    match writes.write(&api, &*platform, TenantCount::of(&platform).as_ref(), &counted).await {
                        Ok(wrote) => {
                            if wrote {
                                info!(
                                    tenants = counted.tenants,
                                    ready = counted.ready_tenants,
                                    "Platform tenant count written"
                                );
                            }
                            false
                        }
                        Err(error) => {
                            warn!(%error, "cannot write the Platform's tenant count; trying again");
                            tokio::time::sleep(RETRY).await;
                            true
                        }
                    }
                }
            };
            continue;
        }
        match events.next().await {
            Some(()) => pending = true,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, ready: Option<&str>) -> Arc<TenantObject> {
        let conditions: Vec<serde_json::Value> = ready
            .map(|status| {
                vec![serde_json::json!({
                    "type": "Ready", "status": status, "reason": "R", "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z"
                })]
            })
            .unwrap_or_default();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "govpaas.io/v1alpha1", "kind": "Tenant",
                "metadata": {"name": name},
                "spec": {
                    "agency": {"code": "H17.13", "level": "Department", "displayName": "Sở Y tế"},
                    "parent": "ubnd",
                    "admins": {"users": ["a@danang.gov.vn"]},
                    "quota": {"cpu": "4", "memory": "8Gi", "storage": "100Gi", "pods": 40, "services": 10, "publicHosts": 2, "lgspApis": 5}
                },
                "status": {"conditions": conditions}
            }))
            .expect("a Tenant"),
        )
    }

    #[test]
    fn every_tenant_is_counted_and_the_ready_ones_apart() {
        let broken: Arc<TenantObject> = Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "govpaas.io/v1alpha1", "kind": "Tenant", "metadata": {"name": "hong"}, "spec": {"agency": 7}
            }))
            .expect("a guarded Tenant"),
        );
        assert!(broken.0.is_err());
        let tenants = [
            tenant("ubnd", Some("True")),
            tenant("so-yte", Some("False")),
            tenant("so-noivu", None),
            tenant("hai-chau", Some("True")),
            broken,
        ];
        assert_eq!(count(&tenants), TenantCount { tenants: 5, ready_tenants: 2 });
        assert_eq!(count(&[]), TenantCount { tenants: 0, ready_tenants: 0 });
        assert_eq!(
            serde_json::to_value(count(&tenants[..1])).unwrap(),
            serde_json::json!({"tenants": 1, "readyTenants": 1})
        );
    }

    #[test]
    fn the_platforms_count_is_read_back_only_when_both_fields_are_there() {
        let mut platform: Platform = serde_json::from_value(serde_json::json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "Platform", "metadata": {"name": "default"},
            "spec": {"baseDomain": "danang.gov.vn", "ingressClassName": "nginx", "ca": {"mode": "Generate", "secretName": "ca"}}
        }))
        .expect("a Platform");
        assert_eq!(TenantCount::of(&platform), None);
        platform.status = Some(govpaas_crds::platform::PlatformStatus { tenants: Some(3), ..Default::default() });
        assert_eq!(TenantCount::of(&platform), None);
        platform.status = Some(govpaas_crds::platform::PlatformStatus {
            tenants: Some(3),
            ready_tenants: Some(2),
            ..Default::default()
        });
        assert_eq!(TenantCount::of(&platform), Some(TenantCount { tenants: 3, ready_tenants: 2 }));
    }
}
