//! Route tables: the ConfigMaps in the operator's namespace that the LGSP gateway serves, of both
//! kinds — a DataSharingService's (its APIs and national grants) and a DocumentService's (its
//! exchange endpoint). Both controllers name, apply, prune and sweep them here.
//!
//! An owner reference cannot point at a service in another namespace (the garbage collector treats
//! such a reference as dangling), so tables are pruned by label instead: each carries the uid of the
//! service it was compiled from ([`SOURCE_UID_LABEL`]), its tenant ([`TENANT_LABEL`]) and, for a
//! DocumentService's, its kind ([`SOURCE_KIND_LABEL`]); each controller watches and sweeps only its
//! own kind ([`DATA_SHARING_TABLES`], [`DOCUMENT_TABLES`]). When a service is deleted (its watch
//! wakes the sweep), at start-up, and every few minutes as a safety net, every table of that kind
//! whose source uid is not a live service is deleted — only tables of tenants this operator serves,
//! so operators scoped to other tenants leave each other's alone. A deletion is conditional on the
//! table's uid and resourceVersion as cached, so a table re-written meanwhile (a service re-created
//! under the same name) survives.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use govpaas_crds::lgsp::{
    ROUTE_TABLE_COMPONENT, ROUTE_TABLE_KEY, ROUTE_TABLE_SELECTOR, RouteTable, SOURCE_KIND_LABEL,
    SOURCE_NAME_ANNOTATION, SOURCE_NAMESPACE_LABEL, SOURCE_UID_LABEL,
};
use govpaas_crds::metadata::TENANT_LABEL;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ObjectMeta, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::error::Result;
use crate::reconcile::apply::Applier;
use crate::reconcile::{labels, watch};
use crate::service::owned::{OwnedKey, OwnedKind};

/// The route tables of DataSharingServices (they carry no kind label: version 1 had none).
pub const DATA_SHARING_TABLES: &str = concat!(
    "app.kubernetes.io/managed-by=govpaas-operator,app.kubernetes.io/component=lgsp-routes,",
    "!govpaas.io/lgsp-source-kind"
);
/// The route tables of DocumentServices.
pub const DOCUMENT_TABLES: &str = concat!(
    "app.kubernetes.io/managed-by=govpaas-operator,app.kubernetes.io/component=lgsp-routes,",
    "govpaas.io/lgsp-source-kind=DocumentService"
);

/// Where a table comes from.
#[derive(Clone, Copy, Debug)]
pub struct TableSource<'a> {
    /// `None` for a DataSharingService, [`govpaas_crds::lgsp::DOCUMENT_SOURCE`] for a DocumentService.
    pub kind: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub tenant: &'a str,
}

/// The labels of a table from `source`: what the gateway selects, the sweep reads and each
/// controller's watch tells apart.
pub fn table_labels(source: &TableSource<'_>) -> BTreeMap<String, String> {
    let mut labels = labels::owned_labels(ROUTE_TABLE_COMPONENT, source.name);
    labels.insert(SOURCE_NAMESPACE_LABEL.to_owned(), source.namespace.to_owned());
    labels.insert(SOURCE_UID_LABEL.to_owned(), source.uid.to_owned());
    labels.insert(TENANT_LABEL.to_owned(), source.tenant.to_owned());
    if let Some(kind) = source.kind {
        labels.insert(SOURCE_KIND_LABEL.to_owned(), kind.to_owned());
    }
    labels
}

/// The ConfigMap `name` in `operator_namespace` holding `table` from `source`. It carries no owner
/// reference (one cannot cross namespaces): it is found by its labels and pruned by them.
pub fn table_config_map(
    name: String,
    operator_namespace: &str,
    source: &TableSource<'_>,
    table: &RouteTable,
) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(operator_namespace.to_owned()),
            labels: Some(table_labels(source)),
            annotations: Some(BTreeMap::from([(SOURCE_NAME_ANNOTATION.to_owned(), source.name.to_owned())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(ROUTE_TABLE_KEY.to_owned(), table.to_json())])),
        ..Default::default()
    }
}

/// A metadata cache of the tables `selector` picks in `namespace`, and the stream of those touched
/// (for wake-ups), each mapped back to its source's `(namespace, name)` by [`source_of`].
pub fn watch_tables(
    client: Client,
    namespace: &str,
    selector: &str,
) -> (
    Store<PartialObjectMeta<ConfigMap>>,
    impl Stream<Item = std::result::Result<PartialObjectMeta<ConfigMap>, kube::runtime::watcher::Error>> + Send + use<>,
) {
    debug_assert!(selector.starts_with(ROUTE_TABLE_SELECTOR));
    let (store, writer) = reflector::store::<PartialObjectMeta<ConfigMap>>();
    let api: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client, namespace);
    let stream = watch::watcher(api, crate::reconcile::watch::config().labels(selector))
        .default_backoff()
        .modify(watch::strip)
        .reflect(writer)
        .touched_objects();
    (store, stream)
}

/// The `(namespace, name)` of the service a table was compiled from.
pub fn source_of(table: &PartialObjectMeta<ConfigMap>) -> Option<(String, String)> {
    let namespace = table.labels().get(SOURCE_NAMESPACE_LABEL).cloned();
    let name = table.annotations().get(SOURCE_NAME_ANNOTATION).cloned();
    namespace.zip(name)
}

/// A service's table as one of its owned kinds: applied while wanted, deleted (by name, as cached)
/// once not.
pub struct TableSlot<'a> {
    pub wanted: Option<&'a ConfigMap>,
    pub name: &'a str,
    pub namespace: &'a str,
    pub cached: &'a Store<PartialObjectMeta<ConfigMap>>,
}

impl OwnedKind for TableSlot<'_> {
    fn apply<'a>(&'a self, applier: &'a mut Applier) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if let Some(table) = self.wanted {
                applier.apply_unless_current(table, self.cached).await?;
            }
            Ok(())
        })
    }

    fn prune<'a>(
        &'a self,
        applier: &'a Applier,
        _: &'a OwnedKey<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            if self.wanted.is_some() {
                return Ok(Vec::new());
            }
            let Some(cached) = self.cached.get(&ObjectRef::new(self.name).within(self.namespace)) else {
                return Ok(Vec::new());
            };
            let stale = Stale {
                name: self.name.to_owned(),
                uid: cached.metadata.uid.clone().unwrap_or_default(),
                resource_version: cached.metadata.resource_version.clone(),
            };
            let api = Api::namespaced(applier.client().clone(), self.namespace);
            Ok(if delete(&api, &stale).await? { vec![format!("{}/{}", self.namespace, self.name)] } else { Vec::new() })
        })
    }
}

/// The safety net between wake-ups.
const INTERVAL: Duration = Duration::from_secs(300);

/// A route table to delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub name: String,
    pub uid: String,
    pub resource_version: Option<String>,
}

/// The `tables` whose source is not among the `live` service uids, of tenants `serves`
/// accepts, not being deleted already; by name.
pub fn stale_tables(
    tables: &[Arc<PartialObjectMeta<ConfigMap>>],
    live: &HashSet<String>,
    serves: &impl Fn(&str) -> bool,
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
pub async fn delete(api: &Api<ConfigMap>, table: &Stale) -> Result<bool> {
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

/// What a sweep needs: who is live, whether a tenant is served, when to look again.
pub struct Sweep<Live, Serves> {
    /// The kind whose tables are swept, for the log.
    pub kind: &'static str,
    pub live: Live,
    pub serves: Serves,
    pub woken: Arc<tokio::sync::Notify>,
}

/// Sweeps the tables of `tables` (one kind's) until shutdown, once `ready` resolves.
pub async fn sweep<Live, Serves>(
    client: Client,
    namespace: &str,
    tables: Store<PartialObjectMeta<ConfigMap>>,
    ready: impl std::future::Future<Output = bool>,
    sweep: Sweep<Live, Serves>,
) where
    Live: Fn() -> HashSet<String>,
    Serves: Fn(&str) -> bool,
{
    if !ready.await || tables.wait_until_ready().await.is_err() {
        return;
    }
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    loop {
        let live = (sweep.live)();
        for table in stale_tables(&tables.state(), &live, &sweep.serves) {
            match delete(&api, &table).await {
                Ok(true) => tracing::info!(
                    table = table.name,
                    kind = sweep.kind,
                    "deleted the route table of a deleted service"
                ),
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(table = table.name, error = %err, "could not delete a stale route table; retrying later")
                }
            }
        }
        tokio::select! {
            () = sweep.woken.notified() => {
                // Let the cache see the deletion's effects settle (several deletions in a row).
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            () = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
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
        let stale = stale_tables(&tables, &live, &|tenant: &str| tenant == "so-tu-phap");
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
