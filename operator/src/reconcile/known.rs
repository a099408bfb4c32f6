//! The whole objects a reconcile reads (a certificate Secret, a Deployment, an Ingress, a claim),
//! served from the controller's whole-object cache (`watch::whole_cache`), with what this process
//! applied a moment ago kept until the cache has caught up with it.
//!
//! A reconcile that follows its own apply must never see the version before it (it would issue a
//! certificate twice), and the cache lags the apply by a watch event. So the answer of every apply
//! is kept ([`KnownObjects::remember`]) and served while it is newer than what the cache shows.
//! resourceVersions are compared as numbers: the API server documents them as comparable since
//! Kubernetes 1.35 (KEP-5504); one that is not a number is read from the API server instead.
//! An object the cache lacks does not exist, since the controller starts reconciling only once
//! its caches have listed — unless it was applied a moment ago. Nothing else is read live.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::apply::Applier;

/// How long an applied copy is kept when no reconcile asks for it again: far longer than a watch
/// event takes to reach the cache.
const KEPT_FOR: Duration = Duration::from_secs(60);

/// What this process applied of kind `K` lately, by namespace and name, trimmed as the cache
/// trims (`trim`).
pub struct KnownObjects<K> {
    kept: Mutex<HashMap<(String, String), Kept<K>>>,
    trim: fn(&mut K),
}

struct Kept<K> {
    object: Arc<K>,
    at: Instant,
}

impl<K> Default for KnownObjects<K> {
    fn default() -> Self {
        KnownObjects { kept: Mutex::new(HashMap::new()), trim: |_| {} }
    }
}

/// How two copies of one object are ordered, by resourceVersion (integers of any size, as the
/// API server defines them); `None`: they cannot be compared.
fn newer(a: Option<&str>, b: Option<&str>) -> Option<Ordering> {
    fn integer(version: &str) -> Option<&str> {
        let digits = version.trim_start_matches('0');
        (!version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
    }
    let (a, b) = (integer(a?)?, integer(b?)?);
    Some(a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
}

impl<K> KnownObjects<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    /// Kept copies trimmed by `trim`, the cache's own trim.
    pub fn trimmed(trim: fn(&mut K)) -> Self {
        KnownObjects { kept: Mutex::new(HashMap::new()), trim }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, String), Kept<K>>> {
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn keep(&self, mut object: K) -> Arc<K> {
        super::watch::strip(&mut object);
        (self.trim)(&mut object);
        let object = Arc::new(object);
        let (Some(namespace), Some(name)) = (object.meta().namespace.clone(), object.meta().name.clone()) else {
            return object;
        };
        let now = Instant::now();
        let mut kept = self.lock();
        kept.insert((namespace, name), Kept { object: object.clone(), at: now });
        // Copies the cache has long caught up with go, so the memory holds only recent applies.
        if kept.len() >= 64 && kept.len().is_power_of_two() {
            kept.retain(|_, copy| now.duration_since(copy.at) < KEPT_FOR);
        }
        object
    }

    /// Keeps `object` as the API server returned it from an apply.
    pub fn remember(&self, object: &K) {
        self.keep(object.clone());
    }

    /// Keeps every `K` `applier` applied (failed reconciles too: what did get applied is stored).
    pub fn remember_applied(&self, applier: &Applier)
    where
        K: Send + Sync + 'static,
    {
        for object in applier.all_applied::<K>() {
            self.remember(object);
        }
    }

    /// `namespace/name`: as `cache` shows it, or as this process applied it when that is newer
    /// (or the cache does not show it yet). Read from the API server only when the two cannot be
    /// ordered. `None`: it does not exist.
    pub async fn get(
        &self,
        client: &kube::Client,
        cache: &Store<K>,
        namespace: &str,
        name: &str,
    ) -> kube::Result<Option<Arc<K>>>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
    {
        let key = (namespace.to_owned(), name.to_owned());
        let cached = cache.get(&ObjectRef::new(name).within(namespace));
        let kept = {
            let mut kept = self.lock();
            match kept.get(&key) {
                Some(copy) if copy.at.elapsed() < KEPT_FOR => Some(copy.object.clone()),
                Some(_) => {
                    kept.remove(&key);
                    None
                }
                None => None,
            }
        };
        let Some(kept) = kept else { return Ok(cached) };
        let Some(cached) = cached else { return Ok(Some(kept)) };
        let (cached_version, kept_version) =
            (cached.meta().resource_version.as_deref(), kept.meta().resource_version.as_deref());
        match newer(cached_version, kept_version) {
            Some(Ordering::Less) => Ok(Some(kept)),
            Some(_) => {
                // The cache has caught up (or someone wrote since): it is the truth from now on.
                self.lock().remove(&key);
                Ok(Some(cached))
            }
            None => {
                let api: Api<K> = Api::namespaced(client.clone(), namespace);
                Ok(api.get_opt(name).await?.map(|object| self.keep(object)))
            }
        }
    }

    /// How many applied copies are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A kind's cache with what this process applied of it lately.
pub struct Lookup<'a, K: Resource<DynamicType = ()> + Clone + 'static> {
    pub known: &'a KnownObjects<K>,
    pub cache: &'a Store<K>,
}

impl<K> Lookup<'_, K>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + 'static,
{
    /// [`KnownObjects::get`] of `namespace/name`.
    pub async fn get(&self, client: &kube::Client, namespace: &str, name: &str) -> kube::Result<Option<Arc<K>>> {
        self.known.get(client, self.cache, namespace, name).await
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::ObjectMeta;
    use kube::runtime::watcher;

    use super::*;

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

    /// A client whose API server answers nothing: any request would hang the test.
    fn silent_client()
    -> (kube::Client, tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>)
    {
        let (service, handle) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        (kube::Client::new(service, "ns"), handle)
    }

    fn version(object: &Option<Arc<Secret>>) -> Option<String> {
        object.as_ref().and_then(|o| o.metadata.resource_version.clone())
    }

    #[tokio::test]
    async fn the_cache_serves_unless_what_was_applied_is_newer() {
        let (client, _api_server) = silent_client();
        let (cache, mut writer) = kube::runtime::reflector::store::<Secret>();
        let known = KnownObjects::<Secret>::default();

        // Not cached, nothing applied: it does not exist, and nobody is asked.
        assert_eq!(version(&known.get(&client, &cache, "ns", "tls").await.unwrap()), None);

        // Applied a moment ago, not cached yet: the applied copy, without its managed fields.
        let mut applied = secret("5");
        applied.metadata.managed_fields = Some(vec![Default::default()]);
        known.remember(&applied);
        let kept = known.get(&client, &cache, "ns", "tls").await.unwrap();
        assert_eq!(version(&kept), Some("5".into()));
        assert_eq!(kept.unwrap().metadata.managed_fields, None);

        // The cache still shows the version before the apply: the applied copy wins.
        writer.apply_watcher_event(&watcher::Event::Apply(secret("4")));
        assert_eq!(version(&known.get(&client, &cache, "ns", "tls").await.unwrap()), Some("5".into()));

        // The cache caught up, then someone else wrote: the cache, and the copy is let go.
        writer.apply_watcher_event(&watcher::Event::Apply(secret("7")));
        assert_eq!(version(&known.get(&client, &cache, "ns", "tls").await.unwrap()), Some("7".into()));
        assert_eq!(known.len(), 0);
    }

    #[tokio::test]
    async fn versions_that_cannot_be_ordered_are_read_from_the_api_server() {
        let (client, mut api_server) = silent_client();
        let (cache, mut writer) = kube::runtime::reflector::store::<Secret>();
        writer.apply_watcher_event(&watcher::Event::Apply(secret("opaque-a")));
        let known = Arc::new(KnownObjects::<Secret>::default());
        known.remember(&secret("opaque-b"));
        let read = {
            let known = known.clone();
            tokio::spawn(async move { version(&known.get(&client, &cache, "ns", "tls").await.unwrap()) })
        };
        let (request, send) = api_server.next_request().await.expect("a read");
        assert_eq!(request.method(), http::Method::GET);
        assert_eq!(request.uri().path(), "/api/v1/namespaces/ns/secrets/tls");
        let body = serde_json::to_vec(&secret("opaque-c")).unwrap();
        send.send_response(http::Response::builder().status(200).body(kube::client::Body::from(body)).unwrap());
        assert_eq!(read.await.unwrap(), Some("opaque-c".into()));
    }

    #[test]
    fn resource_versions_are_ordered_as_integers_of_any_size() {
        assert_eq!(newer(Some("9"), Some("10")), Some(Ordering::Less));
        assert_eq!(newer(Some("123456789012345678901234567890"), Some("99")), Some(Ordering::Greater));
        assert_eq!(newer(Some("42"), Some("42")), Some(Ordering::Equal));
        assert_eq!(newer(Some("7"), Some("007")), Some(Ordering::Equal));
        assert_eq!(newer(Some("a1"), Some("2")), None);
        assert_eq!(newer(Some(""), Some("2")), None);
        assert_eq!(newer(None, Some("2")), None);
    }

    #[test]
    fn kept_copies_are_trimmed_like_the_cache() {
        let known = KnownObjects::<Secret>::trimmed(|secret| secret.data = None);
        let mut applied = secret("3");
        applied.data = Some(Default::default());
        known.remember(&applied);
        let kept = known.lock().values().next().map(|copy| copy.object.clone()).unwrap();
        assert_eq!(kept.data, None);
    }
}
