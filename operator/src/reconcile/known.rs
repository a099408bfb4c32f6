//! Whole objects a reconcile reads (a certificate Secret, a Deployment, an Ingress) kept from the
//! last time they were read or applied, and served again while a metadata cache shows the same
//! resourceVersion: the object cannot have changed, so the API server is not asked again.
//!
//! The metadata caches (`watch::metadata_cache`) already say when each owned object changes; this
//! memory turns that into "no live read of what has not changed" without caching every whole
//! object of the kind (a Secret's key material is held only for the objects reconciles read).
//! What is kept is stripped as the caches are (`watch::strip`: managed fields, kubectl's
//! last-applied copy), often the larger part of an object as the API server returns it.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::api::ObjectMeta;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// The last version read or applied of each object of kind `K`, by namespace and name.
pub struct KnownObjects<K> {
    last: Mutex<HashMap<(String, String), Arc<K>>>,
    sweeps: std::sync::atomic::AtomicU64,
}

impl<K> Default for KnownObjects<K> {
    fn default() -> Self {
        KnownObjects { last: Mutex::new(HashMap::new()), sweeps: Default::default() }
    }
}

impl<K> KnownObjects<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Arc<K>>> {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The object `namespace/name`: the one kept, while `cached` (its metadata as a cache shows
    /// it) has its resourceVersion; else read from the API server (and kept). `None` when it does
    /// not exist.
    pub async fn get(
        &self,
        api: &Api<K>,
        cached: Option<&ObjectMeta>,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<Arc<K>>> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(version) = cached.and_then(|meta| meta.resource_version.as_deref())
            && let Some(known) = self.lock().get(&key).cloned()
            && known.meta().resource_version.as_deref() == Some(version)
        {
            return Ok(Some(known));
        }
        // Not in the cache yet (just created) or changed since: ask.
        match api.get_opt(name).await? {
            Some(mut object) => {
                super::watch::strip(&mut object);
                let object = Arc::new(object);
                self.lock().insert(key, object.clone());
                Ok(Some(object))
            }
            None => {
                self.lock().remove(&key);
                Ok(None)
            }
        }
    }

    /// Keeps `object` as the API server returned it (from an apply).
    pub fn remember(&self, object: &K) {
        let (Some(namespace), Some(name)) = (object.meta().namespace.clone(), object.meta().name.clone()) else {
            return;
        };
        let mut kept = object.clone();
        super::watch::strip(&mut kept);
        self.lock().insert((namespace, name), Arc::new(kept));
    }

    /// Forgets the objects `cache` no longer holds (deleted), so that the memory holds no more than
    /// the cache does: at most once per 256 calls (the walk is over every kept object).
    pub fn sweep(&self, cache: &Store<PartialObjectMeta<K>>)
    where
        PartialObjectMeta<K>: Resource<DynamicType = ()> + Clone,
    {
        let calls = self.sweeps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if calls.is_multiple_of(256) {
            self.lock().retain(|(namespace, name), _| cache.get(&ObjectRef::new(name).within(namespace)).is_some());
        }
    }
}

/// A kind's kept objects with the metadata cache that says whether they changed.
pub struct Lookup<'a, K: Resource<DynamicType = ()> + Clone + 'static> {
    pub known: &'a KnownObjects<K>,
    pub cache: &'a Store<PartialObjectMeta<K>>,
}

impl<K> Lookup<'_, K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + 'static,
    PartialObjectMeta<K>: Resource<DynamicType = ()> + Clone,
{
    /// [`KnownObjects::get`] of `namespace/name`, with its metadata from the cache.
    pub async fn get(&self, client: &kube::Client, namespace: &str, name: &str) -> kube::Result<Option<Arc<K>>> {
        let cached = cached_meta(self.cache, namespace, name);
        if cached.is_none() {
            // Gone, or not seen yet: nothing kept of it can be trusted, and what the cache no
            // longer holds is let go now and then, so the memory stays the size of the cache.
            self.known.sweep(self.cache);
        }
        let api = Api::namespaced(client.clone(), namespace);
        self.known.get(&api, cached.as_ref(), namespace, name).await
    }
}

/// The metadata of `namespace/name` in `cache`.
pub fn cached_meta<K>(cache: &Store<PartialObjectMeta<K>>, namespace: &str, name: &str) -> Option<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    PartialObjectMeta<K>: Resource<DynamicType = ()> + Clone,
{
    cache.get(&ObjectRef::new(name).within(namespace)).map(|object| object.metadata.clone())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;

    use super::*;

    type ApiServer = tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

    fn secret(version: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("tls".into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    async fn answer_get(api_server: &mut ApiServer, answer: &Secret) {
        let (request, send) = api_server.next_request().await.expect("a request");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.uri().path(), "/api/v1/namespaces/ns/secrets/tls");
        let body = serde_json::to_vec(answer).unwrap();
        send.send_response(http::Response::builder().status(200).body(kube::client::Body::from(body)).unwrap());
    }

    #[tokio::test]
    async fn an_object_is_read_again_only_once_its_version_changed() {
        let (service, mut api_server) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let api: Api<Secret> = Api::namespaced(kube::Client::new(service, "ns"), "ns");
        let known = Arc::new(KnownObjects::<Secret>::default());
        let reads = {
            let (known, api) = (known.clone(), api.clone());
            tokio::spawn(async move {
                let meta = |v: &str| secret(v).metadata;
                // Unknown: read. Known at the cached version: not read. A new version: read.
                let first = known.get(&api, Some(&meta("1")), "ns", "tls").await.unwrap().unwrap();
                let again = known.get(&api, Some(&meta("1")), "ns", "tls").await.unwrap().unwrap();
                let changed = known.get(&api, Some(&meta("2")), "ns", "tls").await.unwrap().unwrap();
                // Not in the cache (created a moment ago): read.
                let uncached = known.get(&api, None, "ns", "tls").await.unwrap().unwrap();
                [&first, &again, &changed, &uncached].map(|s| s.metadata.resource_version.clone().unwrap())
            })
        };
        answer_get(&mut api_server, &secret("1")).await;
        answer_get(&mut api_server, &secret("2")).await;
        answer_get(&mut api_server, &secret("2")).await;
        assert_eq!(reads.await.unwrap(), ["1", "1", "2", "2"].map(String::from));
        // Applied: the answer is kept, without its managed fields.
        let mut applied = secret("3");
        applied.metadata.managed_fields = Some(vec![Default::default()]);
        known.remember(&applied);
        let meta = secret("3").metadata;
        let kept = known.get(&api, Some(&meta), "ns", "tls").await.unwrap().unwrap();
        assert_eq!(kept.metadata.resource_version.as_deref(), Some("3"));
        assert_eq!(kept.metadata.managed_fields, None);
    }
}
