//! Watchers whose caches hold only what a reconcile reads.
//!
//! Owned kinds are watched as metadata only (`PartialObjectMeta`), selected by the operator's
//! labels: enough to map a change back to its owner and to find orphans to prune. Managed fields
//! and kubectl's last-applied annotation, often the largest part of an object, are stripped before
//! anything is cached. Each stream yields every touched object (deletions included, so a deleted
//! child triggers its owner's repair) and retries the API with backoff on its own.

use std::fmt::Debug;

use std::collections::HashSet;

use futures::{Stream, TryStreamExt};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// kubectl's client-side-apply copy of the whole object: never read by the operator.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from a cached object what no reconcile reads.
pub fn strip<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// A cache of the metadata of every `K` matching `selector` (cluster-wide), and the stream that
/// fills it; poll the stream (e.g. as a controller's `owns_stream`) or the cache stays empty.
pub fn metadata_cache<K>(
    client: Client,
    selector: &str,
) -> (Store<PartialObjectMeta<K>>, impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// A cache of whole `K` objects matching `selector` (cluster-wide) and the stream that fills it,
/// for the few kinds whose status a reconcile reads (a ResourceQuota's usage).
pub fn object_cache<K>(
    client: Client,
    selector: &str,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// A cache of the metadata of every `K` in the cluster, for counting, and a stream of the objects
/// created or deleted since it listed — not of their updates, which do not change a count.
pub fn census<K>(
    client: Client,
) -> (Store<PartialObjectMeta<K>>, impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let (reader, writer) = reflector::store();
    let mut known: HashSet<String> = HashSet::new();
    let stream =
        watcher(api, watcher::Config::default()).default_backoff().modify(strip).reflect(writer).try_filter_map(
            move |event| {
                let uid = |object: &PartialObjectMeta<K>| object.metadata.uid.clone().unwrap_or_default();
                let counted = match event {
                    watcher::Event::InitApply(object) => {
                        known.insert(uid(&object));
                        None
                    }
                    watcher::Event::Apply(object) => known.insert(uid(&object)).then_some(object),
                    watcher::Event::Delete(object) => {
                        known.remove(&uid(&object));
                        Some(object)
                    }
                    watcher::Event::Init | watcher::Event::InitDone => None,
                };
                futures::future::ready(Ok(counted))
            },
        );
    (reader, stream)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    use super::*;

    #[test]
    fn strip_drops_managed_fields_and_last_applied() {
        let mut ns = Namespace {
            metadata: ObjectMeta {
                name: Some("so-noi-vu".into()),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                annotations: Some(BTreeMap::from([
                    (LAST_APPLIED_ANNOTATION.to_owned(), "{...}".to_owned()),
                    ("govpaas.io/domain".to_owned(), "so-noi-vu.quangnam.gov.vn".to_owned()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        strip(&mut ns);
        assert!(ns.metadata.managed_fields.is_none());
        let annotations = ns.metadata.annotations.unwrap();
        assert_eq!(annotations.len(), 1);
        assert!(annotations.contains_key("govpaas.io/domain"));
    }
}
