//! Route tables of DataSharingServices that are gone.
//!
//! A route table is a ConfigMap in the operator's namespace; an owner reference cannot point at a
//! DataSharingService in another namespace (the garbage collector treats such a reference as
//! dangling), so the tables are pruned by label instead: each carries the uid of the
//! DataSharingService it was compiled from (`govpaas.io/lgsp-source-uid`) and its tenant
//! (`govpaas.io/tenant`). When a DataSharingService is deleted (the watcher's Delete wakes this
//! task), at start-up, and every few minutes as a safety net, every table whose source uid is not a
//! DataSharingService in the cache is deleted — only tables of tenants this operator serves, so
//! operators scoped to other tenants leave each other's alone. A deletion is conditional on the
//! table's uid and resourceVersion as cached, so a table re-written meanwhile (a DataSharingService
//! re-created under the same name) survives.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use govpaas_crds::lgsp::SOURCE_UID_LABEL;
use govpaas_crds::metadata::TENANT_LABEL;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;
use kube::{Api, Resource};

use crate::service::runtime::Shared;

/// The safety net between wake-ups.
const INTERVAL: Duration = Duration::from_secs(300);

/// A route table to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

/// The `tables` whose source is not among the `live` DataSharingService uids, of tenants `serves`
/// accepts, not being deleted already; by name.
pub fn stale_tables(
    tables: &[Arc<PartialObjectMeta<ConfigMap>>],
    live: &HashSet<String>,
    serves: impl Fn(&str) -> bool,
) -> Vec<Stale> {
    let mut stale: Vec<Stale> = tables
        .iter()
        .filter(|table| table.metadata.deletion_timestamp.is_none())
        .filter_map(|table| {
            let labels = table.metadata.labels.as_ref()?;
            let source = labels.get(SOURCE_UID_LABEL)?;
            let tenant = labels.get(TENANT_LABEL)?;
            if live.contains(source) || !serves(tenant) {
                return None;
            }
            Some(Stale {
                name: table.metadata.name.clone()?,
                uid: table.metadata.uid.clone()?,
                resource_version: table.metadata.resource_version.clone(),
            })
        })
        .collect();
    stale.sort_by(|a, b| a.name.cmp(&b.name));
    stale
}

/// Deletes `table` unless it changed since it was cached; whether it was deleted.
pub async fn delete(api: &Api<ConfigMap>, table: &Stale) -> crate::error::Result<bool> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(table.uid.clone()),
            resource_version: table.resource_version.clone(),
        }),
        ..DeleteParams::background()
    };
    match api.delete(&table.name, &params).await {
        Ok(_) => Ok(true),
        // Gone already, or re-written meanwhile: not stale any more.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Sweeps until shutdown.
pub async fn run(shared: Arc<Shared>, tables: Store<PartialObjectMeta<ConfigMap>>) {
    if shared.wait_until_ready().await.is_err() || tables.wait_until_ready().await.is_err() {
        return;
    }
    let api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.settings.operator_namespace);
    loop {
        let live: HashSet<String> =
            shared.data_sharing.state().iter().filter_map(|service| service.meta().uid.clone()).collect();
        for table in stale_tables(&tables.state(), &live, |tenant| shared.serves_tenant(tenant)) {
            match delete(&api, &table).await {
                Ok(true) => {
                    tracing::info!(table = table.name, "deleted the route table of a deleted DataSharingService")
                }
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(table = table.name, error = %err, "could not delete a stale route table; retrying later")
                }
            }
        }
        tokio::select! {
            () = shared.route_tables_orphaned.notified() => {
                // Let the cache see the deletion's effects settle (several deletions in a row).
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn table(name: &str, source: &str, tenant: &str, deleting: bool) -> Arc<PartialObjectMeta<ConfigMap>> {
        Arc::new(PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("cm-{name}")),
                resource_version: Some("7".into()),
                labels: Some(BTreeMap::from([
                    (SOURCE_UID_LABEL.to_owned(), source.to_owned()),
                    (TENANT_LABEL.to_owned(), tenant.to_owned()),
                ])),
                deletion_timestamp: deleting.then(|| Time(Default::default())),
                ..Default::default()
            },
            _phantom: Default::default(),
        })
    }

    #[test]
    fn only_tables_of_vanished_services_of_served_tenants_are_stale() {
        let tables = vec![
            table("lgsp-routes.a.live", "u-live", "so-tu-phap", false),
            table("lgsp-routes.a.gone", "u-gone", "so-tu-phap", false),
            table("lgsp-routes.b.gone", "u-gone-2", "another-scope", false),
            table("lgsp-routes.a.going", "u-going", "so-tu-phap", true),
        ];
        let live = HashSet::from(["u-live".to_owned()]);
        let stale = stale_tables(&tables, &live, |tenant| tenant == "so-tu-phap");
        assert_eq!(
            stale,
            vec![Stale {
                name: "lgsp-routes.a.gone".into(),
                uid: "cm-lgsp-routes.a.gone".into(),
                resource_version: Some("7".into())
            }]
        );
    }
}
