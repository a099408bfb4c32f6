//! Server-side apply of desired objects, status, and pruning of orphans.
//!
//! Every write the operator makes goes through here, under the one field manager
//! [`FIELD_MANAGER`], with `force`: a hand edit of a field the operator owns is taken back on the
//! next reconcile, while fields others own (a `kubectl scale`, another controller's annotation) are
//! left alone. Applying an object identical to what is stored changes nothing on the server — no
//! new resourceVersion — which is what keeps a resync of an unchanged world silent.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::{ClusterResourceScope, NamespaceResourceScope, PartialObjectMeta};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::labels;
use crate::error::{Error, Result};

/// The one field manager under which govpaas writes everything.
pub const FIELD_MANAGER: &str = "govpaas.io/operator";

/// Builds the right [`Api`] for a kind from its scope: namespaced kinds need the namespace.
pub trait ScopedApi {
    fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = Self, DynamicType = ()>;
}

impl ScopedApi for NamespaceResourceScope {
    fn api<K>(client: Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = Self, DynamicType = ()>,
    {
        // An empty namespace would address the cluster-wide list; build() always sets one.
        Api::namespaced(client, namespace.unwrap_or_default())
    }
}

impl ScopedApi for ClusterResourceScope {
    fn api<K>(client: Client, _namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = Self, DynamicType = ()>,
    {
        Api::all(client)
    }
}

/// A kind the framework can apply and prune.
pub trait Applicable:
    Resource<DynamicType = (), Scope: ScopedApi> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Applicable for K where
    K: Resource<DynamicType = (), Scope: ScopedApi>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Identifies one applied object across kinds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    fn of<K: Resource<DynamicType = ()>>(namespace: Option<String>, name: String) -> Self {
        ObjectKey { kind: format!("{}/{}", K::api_version(&()), K::kind(&())), namespace, name }
    }
}

/// The annotation on every object applied through [`Applier::apply_unless_current`]: the
/// fingerprint of what the operator applied, which the metadata caches show, so that an object
/// already right is recognised without reading or rewriting it — after a restart too.
pub const APPLIED_ANNOTATION: &str = "govpaas.io/applied";

/// What the operator last applied to each object in this process, and the resourceVersion the API
/// server gave it: an object whose cache entry still has that version and carries the same
/// fingerprint is exactly as the operator left it, and applying it again would change nothing.
/// Shared by every reconcile of a controller. A deleted object's entry stays (a key and a few
/// bytes), like [`StatusWrites`]' entries.
#[derive(Default)]
pub struct AppliedObjects {
    last: std::sync::Mutex<std::collections::HashMap<ObjectKey, LastApply>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct LastApply {
    fingerprint: String,
    resource_version: String,
    /// The generation the apply left (kinds with a spec the API server counts: Deployments,
    /// Ingresses, NetworkPolicies, PodDisruptionBudgets), and a hash of the labels and owner
    /// references it left: see [`AppliedObjects::current`].
    generation: Option<i64>,
    identity: u64,
}

/// A hash of what of an object's metadata the operator applies besides annotations: its labels
/// and owner references.
fn identity(meta: &kube::api::ObjectMeta) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.labels.hash(&mut hasher);
    for owner in meta.owner_references.iter().flatten() {
        (&owner.api_version, &owner.kind, &owner.name, &owner.uid, owner.controller).hash(&mut hasher);
    }
    hasher.finish()
}

impl AppliedObjects {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ObjectKey, LastApply>> {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `cached` (the object as a cache shows it) is what the operator applies as
    /// `fingerprint`: it carries that fingerprint, and nobody wrote it since this process applied
    /// it, or this process has not applied it yet (it was applied before a restart: the
    /// fingerprint on it says what). A write by someone else changes its resourceVersion, so it is
    /// applied again — a hand edit of a field the operator owns is taken back, as before.
    ///
    /// For a kind with a generation, a new resourceVersion at the generation the apply left, with
    /// the labels and owners it left, is another writer's status (a Deployment's replicas, an
    /// Ingress's load balancer): nothing the operator applies changed, and it is not applied
    /// again. An edit of the spec raises the generation and is taken back at once.
    ///
    /// A kind without a generation whose status others write (a ResourceQuota, whose `status.used`
    /// the quota controller rewrites whenever a Pod comes or goes) is judged by its content when
    /// its version moved: `holds` says whether the cached object still says everything the apply
    /// said ([`says_all_of`]). Only a whole-object cache can say so; a metadata cache never does,
    /// and the object is applied again, as before.
    fn current(
        &self,
        key: &ObjectKey,
        fingerprint: &str,
        cached: &kube::api::ObjectMeta,
        holds: impl FnOnce() -> bool,
    ) -> bool {
        let carried = cached.annotations.as_ref().and_then(|a| a.get(APPLIED_ANNOTATION));
        let Some(version) = cached.resource_version.as_deref() else { return false };
        if carried.map(String::as_str) != Some(fingerprint) || cached.deletion_timestamp.is_some() {
            return false;
        }
        let mut last = self.lock();
        match last.get(key) {
            Some(known) => {
                if known.fingerprint != fingerprint {
                    return false;
                }
                if known.resource_version == version
                    || (known.generation.is_some()
                        && known.generation == cached.generation
                        && known.identity == identity(cached))
                {
                    return true;
                }
                let held = known.generation.is_none() && holds();
                if held {
                    // Another writer's status: the content is still the apply's.
                    last.insert(key.clone(), LastApply::of(fingerprint.to_owned(), version.to_owned(), cached));
                }
                held
            }
            None => {
                last.insert(key.clone(), LastApply::of(fingerprint.to_owned(), version.to_owned(), cached));
                true
            }
        }
    }

    fn record(&self, key: ObjectKey, fingerprint: String, applied: &kube::api::ObjectMeta) {
        match applied.resource_version.clone() {
            Some(resource_version) => {
                self.lock().insert(key, LastApply::of(fingerprint, resource_version, applied));
            }
            None => {
                self.lock().remove(&key);
            }
        }
    }
}

impl LastApply {
    fn of(fingerprint: String, resource_version: String, meta: &kube::api::ObjectMeta) -> Self {
        LastApply { fingerprint, resource_version, generation: meta.generation, identity: identity(meta) }
    }
}

/// What a cache of kind `K` holds: the whole objects ([`super::watch::whole_cache`]) or their
/// metadata ([`super::watch::metadata_cache`]). Applying, pruning and finding orphans need only
/// the metadata, so they work over either.
pub trait CacheOf<K>: Resource<DynamicType = ()> + Clone + Serialize + Send + Sync + 'static {}

impl<K: Resource<DynamicType = ()> + Clone + Serialize + Send + Sync + 'static> CacheOf<K> for K {}

impl<K> CacheOf<K> for PartialObjectMeta<K>
where
    K: Send + Sync + 'static,
    PartialObjectMeta<K>: Resource<DynamicType = ()> + Clone + Serialize,
{
}

/// Where [`Applier::apply_unless_current`] finds an object's cached metadata: a cache of the kind.
pub trait CachedMeta<K> {
    fn cached_meta(&self, namespace: Option<&str>, name: &str) -> Option<kube::api::ObjectMeta>;

    /// The cached object as JSON: the whole object from a whole-object cache, only its metadata
    /// from a metadata cache (which then never says that a spec holds).
    fn cached_json(&self, namespace: Option<&str>, name: &str) -> Option<serde_json::Value>;
}

impl<K, C: CacheOf<K>> CachedMeta<K> for kube::runtime::reflector::Store<C> {
    fn cached_meta(&self, namespace: Option<&str>, name: &str) -> Option<kube::api::ObjectMeta> {
        self.get(&reference(namespace, name)).map(|object| object.meta().clone())
    }

    fn cached_json(&self, namespace: Option<&str>, name: &str) -> Option<serde_json::Value> {
        self.get(&reference(namespace, name)).and_then(|object| serde_json::to_value(&*object).ok())
    }
}

fn reference<C: Resource<DynamicType = ()>>(
    namespace: Option<&str>,
    name: &str,
) -> kube::runtime::reflector::ObjectRef<C> {
    let reference = kube::runtime::reflector::ObjectRef::new(name);
    match namespace {
        Some(ns) => reference.within(ns),
        None => reference,
    }
}

/// Whether `cached` says everything `desired` says: each field of `desired` is in `cached` with
/// the same value, objects field by field, arrays element by element and of the same length. What
/// `cached` has besides (the API server's defaults, status, metadata, other writers' fields) does
/// not matter: an apply of `desired` would not change it either. A value written differently from
/// how the API server stores it (a quantity not in canonical form) never matches, and the object
/// is applied again: the safe side.
pub fn says_all_of(cached: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (cached, desired) {
        (Value::Object(cached), Value::Object(desired)) => desired.iter().all(|(key, want)| match cached.get(key) {
            Some(have) => says_all_of(have, want),
            None => want.is_null(),
        }),
        (Value::Array(cached), Value::Array(desired)) => {
            cached.len() == desired.len() && cached.iter().zip(desired).all(|(have, want)| says_all_of(have, want))
        }
        _ => cached == desired,
    }
}

/// Applies one reconcile's desired objects and remembers them, so that [`Applier::prune`] can
/// delete what the owner created before and no longer wants.
pub struct Applier {
    client: Client,
    /// What this reconcile applied, as the API server returned it.
    applied: BTreeMap<ObjectKey, Arc<dyn Any + Send + Sync>>,
    /// What this reconcile wanted and found already right (not applied, not to be pruned).
    current: std::collections::BTreeSet<ObjectKey>,
    /// What the controller applied before, for [`Self::apply_unless_current`]; none: every
    /// object is applied.
    remembered: Option<Arc<AppliedObjects>>,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Applier { client, applied: BTreeMap::new(), current: Default::default(), remembered: None }
    }

    /// An applier that skips objects already right ([`Self::apply_unless_current`]), remembering
    /// its applies in `remembered`, the controller's.
    pub fn remembering(client: Client, remembered: Arc<AppliedObjects>) -> Self {
        Applier { client, applied: BTreeMap::new(), current: Default::default(), remembered: Some(remembered) }
    }

    /// The client it applies with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Server-side applies `object` (it must carry its name and, if namespaced, its namespace).
    pub async fn apply<K: Applicable>(&mut self, object: &K) -> Result<K> {
        let name =
            object.meta().name.clone().ok_or(Error::MissingField { kind: kind_of::<K>(), field: "metadata.name" })?;
        let namespace = object.meta().namespace.clone();
        let api = K::Scope::api::<K>(self.client.clone(), namespace.as_deref());
        let applied = api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await?;
        self.applied.insert(ObjectKey::of::<K>(namespace, name), Arc::new(applied.clone()));
        Ok(applied)
    }

    /// Applies `object` unless `cache` shows it exactly as the operator applied it (see
    /// [`AppliedObjects`]); the object applied carries its fingerprint in [`APPLIED_ANNOTATION`].
    /// Returns whether it was applied. Without a memory ([`Self::new`]) it always applies.
    pub async fn apply_unless_current<K: Applicable>(
        &mut self,
        object: &K,
        cache: &impl CachedMeta<K>,
    ) -> Result<bool> {
        let Some(remembered) = self.remembered.clone() else {
            self.apply(object).await?;
            return Ok(true);
        };
        let name =
            object.meta().name.clone().ok_or(Error::MissingField { kind: kind_of::<K>(), field: "metadata.name" })?;
        let namespace = object.meta().namespace.clone();
        let key = ObjectKey::of::<K>(namespace.clone(), name.clone());
        let fingerprint = content_fingerprint(object);
        // Built only when needed: most objects are current by their version alone.
        let marked = || {
            let mut marked = object.clone();
            marked
                .meta_mut()
                .annotations
                .get_or_insert_default()
                .insert(APPLIED_ANNOTATION.to_owned(), fingerprint.clone());
            marked
        };
        let holds = || {
            let mut content = marked();
            content.meta_mut().resource_version = None;
            let (Some(cached), Ok(desired)) =
                (cache.cached_json(namespace.as_deref(), &name), serde_json::to_value(&content))
            else {
                return false;
            };
            says_all_of(&cached, &desired)
        };
        if let Some(cached) = cache.cached_meta(namespace.as_deref(), &name)
            && remembered.current(&key, &fingerprint, &cached, holds)
        {
            self.current.insert(key);
            return Ok(false);
        }
        let applied = self.apply(&marked()).await?;
        remembered.record(key, fingerprint, applied.meta());
        Ok(true)
    }

    /// [`Self::apply_unless_current`] for each object in turn, stopping at the first failure.
    pub async fn apply_all_unless_current<K: Applicable>(
        &mut self,
        objects: &[K],
        cache: &impl CachedMeta<K>,
    ) -> Result<()> {
        for object in objects {
            self.apply_unless_current(object, cache).await?;
        }
        Ok(())
    }

    /// Applies each object in turn, stopping at the first failure.
    pub async fn apply_all<K: Applicable>(&mut self, objects: &[K]) -> Result<Vec<K>> {
        let mut applied = Vec::with_capacity(objects.len());
        for object in objects {
            applied.push(self.apply(object).await?);
        }
        Ok(applied)
    }

    /// Whether this reconcile applied the object, or found it already right.
    pub fn was_applied<K: Resource<DynamicType = ()>>(&self, namespace: Option<&str>, name: &str) -> bool {
        let key = ObjectKey::of::<K>(namespace.map(str::to_owned), name.to_owned());
        self.applied.contains_key(&key) || self.current.contains(&key)
    }

    /// The object this reconcile applied, as the API server returned it (with its status).
    pub fn applied<K: Applicable>(&self, namespace: Option<&str>, name: &str) -> Option<&K> {
        self.applied.get(&ObjectKey::of::<K>(namespace.map(str::to_owned), name.to_owned()))?.downcast_ref::<K>()
    }

    /// Every `K` this reconcile applied, as the API server returned it.
    pub fn all_applied<K: Any>(&self) -> impl Iterator<Item = &K> {
        self.applied.values().filter_map(|object| object.downcast_ref::<K>())
    }

    /// Deletes the objects of kind `K` in `cached` (a cache's state) that controller `component` created for the owner
    /// (`instance`, with uid `owner_uid`) and that this reconcile did not apply. Both the labels and
    /// the owner reference must match, so a look-alike object made by hand is never deleted; the
    /// delete is conditional on the cached uid, so an object re-created meanwhile survives.
    /// Returns the `namespace/name`s deleted.
    pub async fn prune<K: Applicable, C: CacheOf<K>>(
        &self,
        cached: &[Arc<C>],
        component: &str,
        instance: &str,
        owner_uid: &str,
    ) -> Result<Vec<String>> {
        let mut pruned = Vec::new();
        for orphan in orphans(cached, component, instance, owner_uid, |ns, name| self.was_applied::<K>(ns, name)) {
            let api = K::Scope::api::<K>(self.client.clone(), orphan.namespace.as_deref());
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: Some(orphan.uid.clone()), resource_version: None }),
                ..DeleteParams::background()
            };
            match api.delete(&orphan.name, &params).await {
                Ok(_) => {}
                // Already gone, or replaced by a newer object of the same name: nothing to prune.
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => continue,
                Err(err) => return Err(err.into()),
            }
            pruned.push(match &orphan.namespace {
                Some(ns) => format!("{ns}/{}", orphan.name),
                None => orphan.name.clone(),
            });
        }
        Ok(pruned)
    }
}

/// An object found in a cache that its owner no longer wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

/// The cached objects labelled for `component`/`instance`, owned by `owner_uid`, not being deleted
/// already, and not `wanted`.
pub fn orphans<C: Resource>(
    cached: &[Arc<C>],
    component: &str,
    instance: &str,
    owner_uid: &str,
    wanted: impl Fn(Option<&str>, &str) -> bool,
) -> Vec<Orphan> {
    let mut found: Vec<Orphan> = cached
        .iter()
        .map(|object| object.meta())
        .filter(|meta| meta.deletion_timestamp.is_none())
        .filter(|meta| meta.labels.as_ref().is_some_and(|l| labels::is_owned_by(l, component, instance)))
        .filter(|meta| meta.owner_references.iter().flatten().any(|owner| owner.uid == owner_uid))
        .filter_map(|meta| {
            let name = meta.name.clone()?;
            let uid = meta.uid.clone()?;
            (!wanted(meta.namespace.as_deref(), &name)).then(|| Orphan { namespace: meta.namespace.clone(), name, uid })
        })
        .collect();
    found.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    found
}

/// Whether `error` is the API server's 409 Conflict. A forced apply gets one when its object carries
/// a resourceVersion (a precondition: see `TlsMaterial::decided_from`) and the stored object has
/// changed since that version was read, or, rarely, when another writer created it at the same time.
pub fn is_conflict(error: &Error) -> bool {
    matches!(error, Error::Kube(kube::Error::Api(status)) if status.code == 409)
}

/// Server-side applies `status` as the status subresource of `name`.
///
/// Only the fields in `status` are owned afterwards; an unchanged status is a no-op on the server.
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    apply_status_as(api, name, status, FIELD_MANAGER).await
}

/// [`apply_status`] under another field manager: for status fields one writer owns apart from
/// the controller that writes the rest (whose applies, omitting them, then leave them alone).
pub async fn apply_status_as<K>(api: &Api<K>, name: &str, status: &impl Serialize, manager: &str) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let status = serde_json::to_value(status).map_err(|source| Error::Serialize {
        kind: kind_of::<K>(),
        name: name.to_owned(),
        source,
    })?;
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(manager).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// The status writes of one controller: a status is written unless the cached object already
/// holds it *and* it is what this controller last wrote there.
///
/// Comparing with the cache alone is not enough: a reconcile that writes status X is often
/// followed by another before the cache has seen X; if that one computes the status the cache
/// still shows, it would skip its write and leave the stale X on the server, with nothing to wake
/// the object again (status writes do not change its generation). Seen with two operators sharing
/// the Platform: an aborted CA rotation stayed `RotationInProgress` for good. So the writer keeps a
/// fingerprint of the last status it wrote per object and writes again when it differs. A deleted
/// object's entry stays (a uid and 8 bytes): uids are never reused.
#[derive(Default)]
pub struct StatusWrites {
    last: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// The field manager of the writes; unset: [`FIELD_MANAGER`].
    manager: Option<&'static str>,
}

impl StatusWrites {
    /// Status writes under their own field manager ([`apply_status_as`]).
    pub fn as_manager(manager: &'static str) -> Self {
        StatusWrites { last: Default::default(), manager: Some(manager) }
    }

    /// Writes `status` for `object` unless `cached` (its status as the cache shows it) already
    /// equals it and it is what was last written. Returns whether it wrote.
    pub async fn write<K, S>(&self, api: &Api<K>, object: &K, cached: Option<&S>, status: &S) -> Result<bool>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
        S: Serialize + PartialEq,
    {
        let name = object.meta().name.clone().unwrap_or_default();
        let key = object.meta().uid.clone().unwrap_or_else(|| name.clone());
        let fingerprint = fingerprint(status);
        if cached == Some(status) && self.last_written(&key).is_none_or(|last| last == fingerprint) {
            return Ok(false);
        }
        apply_status_as(api, &name, status, self.manager.unwrap_or(FIELD_MANAGER)).await?;
        self.lock().insert(key, fingerprint);
        Ok(true)
    }

    fn last_written(&self, key: &str) -> Option<u64> {
        self.lock().get(key).copied()
    }

    /// Never held across an `.await`; a panic elsewhere leaves at worst one write too many.
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A fingerprint of a status (of its JSON form), kept instead of the status itself: a few bytes
/// per object at 12,000 services.
fn fingerprint(status: &impl Serialize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(status).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// The fingerprint [`APPLIED_ANNOTATION`] records: of the object's content only — a certificate
/// Secret carries the resourceVersion its content was decided from (a precondition of its apply),
/// which is not part of what it says, and would make every apply look new.
fn content_fingerprint<K: Resource + Clone + Serialize>(object: &K) -> String {
    let mut content = object.clone();
    content.meta_mut().resource_version = None;
    format!("{:016x}", fingerprint(&content))
}

/// A `'static` name of the kind, for errors (kinds are few and fixed).
fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()) {
        std::borrow::Cow::Borrowed(kind) => kind,
        std::borrow::Cow::Owned(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    use super::*;

    fn cached(name: &str, instance: &str, owner_uid: &str, deleting: bool) -> Arc<PartialObjectMeta<NetworkPolicy>> {
        Arc::new(PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("so-noi-vu".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels::owned_labels("tenant", instance)),
                owner_references: Some(vec![OwnerReference {
                    api_version: "govpaas.io/v1alpha1".into(),
                    kind: "Tenant".into(),
                    name: instance.into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                deletion_timestamp: deleting.then(|| Time(Default::default())),
                ..Default::default()
            },
            _phantom: Default::default(),
        })
    }

    #[test]
    fn orphans_are_owned_unwanted_and_not_deleting() {
        let cache = vec![
            cached("govpaas-default-deny", "so-noi-vu", "u1", false),
            cached("govpaas-allow-old", "so-noi-vu", "u1", false),
            cached("govpaas-allow-gone", "so-noi-vu", "u1", true),
            cached("other-tenant", "so-tai-chinh", "u2", false),
            cached("lookalike", "so-noi-vu", "someone-else", false),
        ];
        let wanted = |_: Option<&str>, name: &str| name == "govpaas-default-deny";
        let found = orphans(&cache, "tenant", "so-noi-vu", "u1", wanted);
        assert_eq!(
            found,
            vec![Orphan {
                namespace: Some("so-noi-vu".into()),
                name: "govpaas-allow-old".into(),
                uid: "uid-govpaas-allow-old".into()
            }]
        );
    }

    #[test]
    fn only_a_409_is_a_conflict() {
        let api = |code: u16| {
            Error::Kube(kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: "the object has been modified".into(),
                ..Default::default()
            })))
        };
        assert!(is_conflict(&api(409)));
        assert!(!is_conflict(&api(422)));
        assert!(!is_conflict(&Error::Config("409".into())));
    }

    #[test]
    fn an_object_is_current_while_it_carries_the_fingerprint_and_nobody_wrote_it_since() {
        let applied = AppliedObjects::default();
        let key = ObjectKey::of::<NetworkPolicy>(Some("ns".into()), "deny".into());
        let meta = |fingerprint: Option<&str>, version: &str| ObjectMeta {
            resource_version: Some(version.into()),
            annotations: fingerprint.map(|f| [(APPLIED_ANNOTATION.to_owned(), f.to_owned())].into()),
            ..Default::default()
        };
        assert!(!applied.current(&key, "f1", &meta(None, "1"), || false), "never applied by the operator");
        assert!(!applied.current(&key, "f2", &meta(Some("f1"), "1"), || false), "applied as something else");
        // Applied before this process started, and it says what: trusted, and remembered.
        assert!(applied.current(&key, "f1", &meta(Some("f1"), "1"), || false));
        assert!(applied.current(&key, "f1", &meta(Some("f1"), "1"), || false));
        // Someone wrote it since (a hand edit of a field the operator owns): applied again.
        assert!(!applied.current(&key, "f1", &meta(Some("f1"), "2"), || false));
        applied.record(key.clone(), "f1".into(), &meta(Some("f1"), "3"));
        assert!(applied.current(&key, "f1", &meta(Some("f1"), "3"), || false));
        let mut deleting = meta(Some("f1"), "3");
        deleting.deletion_timestamp = Some(Time(Default::default()));
        assert!(
            !applied.current(&key, "f1", &deleting, || false),
            "being deleted: applied (and refused) rather than trusted"
        );
    }

    #[test]
    fn another_writers_status_at_the_applied_generation_is_not_a_reason_to_apply() {
        let applied = AppliedObjects::default();
        let key = ObjectKey::of::<NetworkPolicy>(Some("ns".into()), "web".into());
        let meta = |version: &str, generation: Option<i64>, label: &str| ObjectMeta {
            resource_version: Some(version.into()),
            generation,
            labels: Some([("app".to_owned(), label.to_owned())].into()),
            annotations: Some([(APPLIED_ANNOTATION.to_owned(), "f1".to_owned())].into()),
            ..Default::default()
        };
        applied.record(key.clone(), "f1".into(), &meta("3", Some(1), "web"));
        // The status moved (a new version), the spec did not (the same generation): current.
        assert!(applied.current(&key, "f1", &meta("4", Some(1), "web"), || false));
        // The spec was edited (a new generation), or a label was: applied again.
        assert!(!applied.current(&key, "f1", &meta("5", Some(2), "web"), || false));
        assert!(!applied.current(&key, "f1", &meta("5", Some(1), "edited"), || false));
        // A kind without a generation (a Secret, a ConfigMap, a ResourceQuota): a new version is
        // applied again unless the cached content still says what was applied.
        applied.record(key.clone(), "f1".into(), &meta("6", None, "web"));
        assert!(!applied.current(&key, "f1", &meta("7", None, "web"), || false));
        assert!(applied.current(&key, "f1", &meta("8", None, "web"), || true), "another writer's status");
        assert!(applied.current(&key, "f1", &meta("8", None, "web"), || false), "remembered at its new version");
        // A kind with a generation is never judged by content: its generation says it.
        applied.record(key.clone(), "f1".into(), &meta("9", Some(3), "web"));
        assert!(!applied.current(&key, "f1", &meta("10", Some(4), "web"), || true));
    }

    #[test]
    fn a_cached_object_holds_when_it_says_everything_the_apply_said() {
        let desired = json!({
            "metadata": {"name": "govpaas-quota", "labels": {"app.kubernetes.io/managed-by": "govpaas"},
                "annotations": {"govpaas.io/applied": "f1"}, "ownerReferences": [{"uid": "u1", "name": "t"}]},
            "spec": {"hard": {"pods": "10", "requests.cpu": "2"}},
        });
        let mut cached = desired.clone();
        // The API server's additions and the quota controller's status change nothing.
        cached["metadata"]["resourceVersion"] = json!("7");
        cached["metadata"]["ownerReferences"][0]["controller"] = json!(true);
        cached["status"] = json!({"used": {"pods": "3"}, "hard": {"pods": "10"}});
        cached["metadata"]["labels"]["team"] = json!("theirs");
        assert!(says_all_of(&cached, &desired));
        // A hand edit of what the operator applies does.
        let mut edited = cached.clone();
        edited["spec"]["hard"]["pods"] = json!("1000");
        assert!(!says_all_of(&edited, &desired));
        let mut unlabelled = cached.clone();
        unlabelled["metadata"]["labels"].as_object_mut().unwrap().remove("app.kubernetes.io/managed-by");
        assert!(!says_all_of(&unlabelled, &desired));
        let mut removed = cached.clone();
        removed["spec"]["hard"].as_object_mut().unwrap().remove("requests.cpu");
        assert!(!says_all_of(&removed, &desired));
        let mut other_owner = cached.clone();
        other_owner["metadata"]["ownerReferences"].as_array_mut().unwrap().push(json!({"uid": "u2"}));
        assert!(!says_all_of(&other_owner, &desired), "arrays compare element by element, of the same length");
        // A quantity the API server would write another way never matches: applied, the safe side.
        let mut canonical = cached.clone();
        canonical["spec"]["hard"]["requests.cpu"] = json!("2000m");
        assert!(!says_all_of(&canonical, &desired));
        // A metadata cache's copy lacks the spec: never holds.
        let metadata_only = json!({"metadata": cached["metadata"].clone()});
        assert!(!says_all_of(&metadata_only, &desired));
    }

    #[test]
    fn the_fingerprint_is_of_the_content_not_the_version_it_was_decided_from() {
        let policy = |version: Option<&str>, name: &str| NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(name.into()),
                resource_version: version.map(str::to_owned),
                ..Default::default()
            },
            ..Default::default()
        };
        let fingerprint = content_fingerprint(&policy(Some("1"), "a"));
        assert_eq!(fingerprint, content_fingerprint(&policy(Some("2"), "a")));
        assert_eq!(fingerprint, content_fingerprint(&policy(None, "a")));
        assert_ne!(fingerprint, content_fingerprint(&policy(Some("1"), "b")));
    }

    #[test]
    fn object_keys_name_the_kind() {
        let key = ObjectKey::of::<NetworkPolicy>(Some("ns".into()), "n".into());
        assert_eq!(key.kind, "networking.k8s.io/v1/NetworkPolicy");
        assert_eq!(kind_of::<NetworkPolicy>(), "NetworkPolicy");
    }
}

#[cfg(test)]
mod status_write_tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::Value;

    use super::*;

    type ApiServer = tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

    /// Answers the next request, which must be a status patch, and returns it.
    async fn answer_status_patch(api_server: &mut ApiServer) -> Value {
        let (request, send) = api_server.next_request().await.expect("a request");
        assert_eq!(request.method(), http::Method::PATCH);
        assert!(request.uri().path().ends_with("/status"), "{}", request.uri());
        let body = request.into_body().collect_bytes().await.expect("the body");
        let object =
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns"}});
        let response =
            http::Response::builder().status(200).body(kube::client::Body::from(serde_json::to_vec(&object).unwrap()));
        send.send_response(response.unwrap());
        serde_json::from_slice::<Value>(&body).expect("JSON")["status"].clone()
    }

    /// A status the cache already shows is written again when this controller last wrote another
    /// one there (its write may not have reached the cache yet).
    #[tokio::test]
    async fn a_status_the_stale_cache_shows_is_still_written_after_another_write() {
        let (service, mut api_server) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let api: Api<ConfigMap> = Api::namespaced(kube::Client::new(service, "ns"), "ns");
        let object = ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (stable, rotating) = (serde_json::json!({"phase": "Stable"}), serde_json::json!({"phase": "Rotating"}));
        let writes = Arc::new(StatusWrites::default());

        // Nothing written yet and the cache shows it: no request.
        assert!(!writes.write(&api, &object, Some(&stable), &stable).await.unwrap());

        let write = {
            let (writes, api, object, stable, rotating) =
                (writes.clone(), api.clone(), object.clone(), stable.clone(), rotating.clone());
            tokio::spawn(async move {
                let first = writes.write(&api, &object, Some(&stable), &rotating).await.unwrap();
                // The cache still shows Stable, but Rotating was written last: Stable goes again.
                let second = writes.write(&api, &object, Some(&stable), &stable).await.unwrap();
                // Now the cache and the last write agree: nothing to do.
                let third = writes.write(&api, &object, Some(&stable), &stable).await.unwrap();
                (first, second, third)
            })
        };
        assert_eq!(answer_status_patch(&mut api_server).await, rotating);
        assert_eq!(answer_status_patch(&mut api_server).await, stable);
        assert_eq!(write.await.unwrap(), (true, true, false));
    }
}
