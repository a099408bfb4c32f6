//! Watchers whose caches hold only what a reconcile reads.
//!
//! Owned kinds are watched as metadata only (`PartialObjectMeta`), selected by the operator's
//! labels: enough to map a change back to its owner and to find orphans to prune. Managed fields
//! and kubectl's last-applied annotation, often the largest part of an object, are stripped before
//! anything is cached. Each stream yields every touched object (deletions included, so a deleted
//! child triggers its owner's repair) and retries the API with backoff on its own.

use std::fmt::Debug;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::{WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// kubectl's client-side-apply copy of the whole object: never read by the operator.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How long the API server keeps one watch request open before the watcher opens the next. kube's
/// default is 290 s; after an API server restart a watch can be accepted and then deliver nothing
/// (seen by the fault-injection test: new Tenants unseen for five minutes while the other watches
/// had recovered), so a shorter term bounds how long any watch can stay silent. A re-watch resumes
/// from the last resourceVersion: it costs one request, no re-list.
pub const WATCH_TIMEOUT_SECONDS: u32 = 60;

/// How long the operator's client waits for the next byte of any answer: a watch's term plus a
/// margin. Without it (kube's default) a request the API server accepts and never answers hangs
/// forever — seen after an API server restart: a Tenant watch sent while it was starting never got
/// its response headers, and the tenant controller saw no new Tenant again. kube-runtime's idle
/// timeout guards a watch only once it has started; this bounds the start, lists and writes too.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(WATCH_TIMEOUT_SECONDS as u64 + 15);

/// How long a new connection to the API server may take, TLS handshake included (kube's default
/// is 30 s). On loopback or a LAN a handshake takes milliseconds; after an API server restart some
/// were seen hanging, and every watch waiting on one is blind meanwhile.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Bounds a client made from `config`: every read by [`READ_TIMEOUT`], counted from the request
/// (not from when its pooled connection went idle), and every new connection by
/// [`CONNECT_TIMEOUT`].
pub fn bound_reads(config: &mut kube::Config) {
    config.read_timeout = Some(READ_TIMEOUT);
    config.reset_reader_on_write = true;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
}

/// Whether watches list by streaming (`sendInitialEvents`, Kubernetes WatchList): set once at
/// start, before any watch begins ([`use_streaming_lists`]).
static STREAMING_LISTS: AtomicBool = AtomicBool::new(false);

/// From now on, every watch [`config`] makes lists by streaming (`true`: the API server sends the
/// objects one at a time as watch events, instead of pages of 500 whole objects held at once) or
/// in pages (`false`).
pub fn use_streaming_lists(streaming: bool) {
    STREAMING_LISTS.store(streaming, AtomicOrdering::Relaxed);
}

/// How long [`serves_streaming_lists`] waits for the end of its streaming list.
pub const STREAMING_PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The annotation of the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Whether the API server serves streaming lists of `api` (narrowed by `field_selector`, so the
/// probe lists one object): a watch with `sendInitialEvents` must end its initial events with the
/// `k8s.io/initial-events-end` bookmark within [`STREAMING_PROBE_WAIT`]. An API server with
/// WatchList off refuses the parameter (422); one older than 1.27 ignores it and never sends the
/// bookmark, which would leave a streaming watcher waiting for ever.
pub async fn serves_streaming_lists<K>(api: &Api<K>, field_selector: Option<&str>) -> bool
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut params = WatchParams::default().initial_events().timeout(STREAMING_PROBE_WAIT.as_secs() as u32);
    if let Some(fields) = field_selector {
        params = params.fields(fields);
    }
    let probe = async {
        let Ok(events) = api.watch(&params, "0").await else { return false };
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(WatchEvent::Bookmark(bookmark))
                    if bookmark.metadata.annotations.get(INITIAL_EVENTS_END).is_some_and(|v| v == "true") =>
                {
                    return true;
                }
                Ok(WatchEvent::Added(_) | WatchEvent::Bookmark(_)) => continue,
                _ => return false,
            }
        }
        false
    };
    tokio::time::timeout(STREAMING_PROBE_WAIT, probe).await.unwrap_or(false)
}

/// The watcher configuration of every watch: a bounded watch term, and streaming or paged lists
/// as [`use_streaming_lists`] decided.
pub fn config() -> watcher::Config {
    config_listing(STREAMING_LISTS.load(AtomicOrdering::Relaxed))
}

fn config_listing(streaming: bool) -> watcher::Config {
    let config = watcher::Config::default().timeout(WATCH_TIMEOUT_SECONDS);
    if streaming { config.streaming_lists() } else { config }
}

/// kube-runtime's [`watcher`](kube::runtime::watcher()), which also recovers when the API server
/// refuses to *resume* a watch with 410 Gone.
///
/// kube-runtime 5 re-lists after a 410 that arrives inside a watch, but when the request that
/// resumes a watch is itself answered 410 (the resourceVersion is older than the restarted API
/// server's window) it retries the same stale resourceVersion forever: that watch never delivers
/// another event, and a controller fed by it stops seeing its objects (found by the fault-injection
/// test: after an API server restart, new Tenants were never reconciled). Here such an error
/// drops the watcher and starts a fresh one, which lists again; the error is still yielded, so
/// backoff and logging see it.
pub fn watcher<K>(api: Api<K>, config: watcher::Config) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let start = move || kube::runtime::watcher(api.clone(), config.clone()).boxed();
    let first = start();
    futures::stream::unfold((first, start), |(mut inner, start)| async move {
        let item = inner.next().await?;
        if let Err(error) = &item
            && resume_refused_as_gone(error)
        {
            tracing::info!(%error, kind = %std::any::type_name::<K>(), "the API server no longer has this watch's resourceVersion; listing again");
            inner = start();
        }
        Some((item, (inner, start)))
    })
}

/// A watch that could not be resumed because its resourceVersion is gone (HTTP 410).
fn resume_refused_as_gone(error: &watcher::Error) -> bool {
    matches!(error, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410)
}

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
    let stream =
        watcher(api, config().labels(selector)).default_backoff().modify(strip).reflect(writer).touched_objects();
    (reader, stream)
}

/// A cache of every whole `K` matching `selector` (cluster-wide), each trimmed by `trim` to what
/// reconciles read of it, and the stream that fills it (poll it, or the cache stays empty). For
/// the owned kinds whose content reconciles read (certificate Secrets, Deployments, Ingresses,
/// claims): one watch serves both the owner's wake-ups and the reads, so nothing is read live.
pub fn whole_cache<K>(
    client: Client,
    selector: &str,
    trim: fn(&mut K),
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<K> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config().labels(selector))
        .default_backoff()
        .modify(move |object| {
            strip(object);
            trim(object);
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// A cache of every Service in the cluster, trimmed to its selector and ports (what a provided
/// API's backend is made of), and the stream that fills it.
pub fn every_service(
    client: Client,
) -> (
    Store<k8s_openapi::api::core::v1::Service>,
    impl Stream<Item = Result<k8s_openapi::api::core::v1::Service, watcher::Error>> + Send + 'static,
) {
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::all(client);
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config())
        .default_backoff()
        .modify(|service| {
            strip(service);
            trim_service(service);
        })
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// Keeps of a Service its selector and ports, and of its metadata what identifies it.
pub fn trim_service(service: &mut k8s_openapi::api::core::v1::Service) {
    let meta = &mut service.metadata;
    meta.annotations = None;
    meta.labels = None;
    service.spec = service.spec.take().map(|spec| k8s_openapi::api::core::v1::ServiceSpec {
        selector: spec.selector,
        ports: spec.ports,
        ..Default::default()
    });
    service.status = None;
}

/// Keeps a whole object as it is.
pub fn keep_all<K>(_: &mut K) {}

/// Keeps of a Deployment what reconciles read: its replicas, its containers' names and resources
/// (what it holds of the quota), its selector (a required field) and its status.
pub fn trim_deployment(deployment: &mut k8s_openapi::api::apps::v1::Deployment) {
    let spec = &mut deployment.spec;
    spec.strategy = None;
    let template = &mut spec.template;
    template.metadata = None;
    if let Some(pod) = template.spec.as_mut() {
        let containers = std::mem::take(&mut pod.containers)
            .into_iter()
            .map(|container| k8s_openapi::api::core::v1::Container {
                name: container.name,
                resources: container.resources,
                ..Default::default()
            })
            .collect();
        *pod = k8s_openapi::api::core::v1::PodSpec { containers, ..Default::default() };
    }
}

/// Keeps of an Ingress what reconciles read: its rules' hosts.
pub fn trim_ingress(ingress: &mut k8s_openapi::api::networking::v1::Ingress) {
    let Some(spec) = ingress.spec.as_mut() else { return };
    let rules = spec.rules.take().map(|rules| {
        rules
            .into_iter()
            .map(|rule| k8s_openapi::api::networking::v1::IngressRule { host: rule.host, http: None })
            .collect()
    });
    *spec = k8s_openapi::api::networking::v1::IngressSpec { rules, ..Default::default() };
    ingress.status = None;
}

/// Every `K` in the cluster, counted by namespace: a Tenant's status counts its services with one
/// lookup per namespace instead of a scan of every service on each write (12,000 services in a
/// nation). Kept by the census watch (see [`census`]), which holds no copy of the objects: the
/// counts are all anyone reads.
pub struct Census<K> {
    tally: Arc<RwLock<Tally>>,
    listed: tokio::sync::watch::Receiver<bool>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Census<K> {
    fn clone(&self) -> Self {
        Self { tally: self.tally.clone(), listed: self.listed.clone(), kind: PhantomData }
    }
}

impl<K> Census<K> {
    /// How many `K` in `namespace` are not being deleted.
    pub fn in_namespace(&self, namespace: &str) -> i32 {
        self.tally.read().unwrap_or_else(std::sync::PoisonError::into_inner).in_namespace(namespace)
    }

    /// Waits until the watch has listed once; false if it stopped before.
    pub async fn wait_until_ready(&self) -> bool {
        self.listed.clone().wait_for(|listed| *listed).await.is_ok()
    }
}

/// Who is in a census: each object (by uid) with its namespace and whether it counts (is not being
/// deleted), and the counts per namespace kept with them. A re-list builds the members afresh and
/// replaces them at its end, as a reflector replaces its store.
#[derive(Debug, Default)]
struct Tally {
    members: HashMap<String, Member>,
    counts: HashMap<String, i32>,
    relisting: Option<HashMap<String, Member>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    namespace: String,
    counted: bool,
}

impl Tally {
    fn in_namespace(&self, namespace: &str) -> i32 {
        self.counts.get(namespace).copied().unwrap_or(0)
    }

    fn member<K>(object: &PartialObjectMeta<K>) -> (String, Member) {
        let meta = &object.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let key =
            meta.uid.clone().unwrap_or_else(|| format!("{namespace}/{}", meta.name.as_deref().unwrap_or_default()));
        (key, Member { namespace, counted: meta.deletion_timestamp.is_none() })
    }

    fn count(counts: &mut HashMap<String, i32>, member: &Member, by: i32) {
        if member.counted {
            let count = counts.entry(member.namespace.clone()).or_default();
            *count += by;
            if *count <= 0 {
                counts.remove(&member.namespace);
            }
        }
    }

    /// Takes one watch event in; true when a count changed (an object came, went, or began to be
    /// deleted), which is what the census stream reports.
    fn observe<K>(&mut self, event: &watcher::Event<PartialObjectMeta<K>>) -> bool {
        match event {
            watcher::Event::Init => {
                self.relisting = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(object) => {
                let (key, member) = Self::member(object);
                self.relisting.get_or_insert_with(HashMap::new).insert(key, member);
                false
            }
            watcher::Event::InitDone => {
                self.members = self.relisting.take().unwrap_or_default();
                self.counts.clear();
                for member in self.members.values() {
                    Self::count(&mut self.counts, member, 1);
                }
                // A list wakes nobody: the first comes before any reconcile, and a count changed
                // in a watch gap shows at the Tenant's next reconcile (its hourly resync at the latest).
                false
            }
            watcher::Event::Apply(object) => {
                let (key, member) = Self::member(object);
                let before = self.members.insert(key, member.clone());
                if before.as_ref() == Some(&member) {
                    return false;
                }
                if let Some(before) = &before {
                    Self::count(&mut self.counts, before, -1);
                }
                Self::count(&mut self.counts, &member, 1);
                before.is_none_or(|b| b.counted != member.counted)
            }
            watcher::Event::Delete(object) => {
                let (key, _) = Self::member(object);
                if let Some(before) = self.members.remove(&key) {
                    Self::count(&mut self.counts, &before, -1);
                }
                true
            }
        }
    }
}

/// A census of every `K` in the cluster (metadata only), and a stream of the objects whose coming,
/// going or deletion changed a count — not of their other updates.
pub fn census<K>(
    client: Client,
) -> (Census<K>, impl Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let tally: Arc<RwLock<Tally>> = Default::default();
    let (listed_sender, listed) = tokio::sync::watch::channel(false);
    let census = Census { tally: tally.clone(), listed, kind: PhantomData };
    let stream = watcher(api, config()).default_backoff().try_filter_map(move |event| {
        let changed = tally.write().unwrap_or_else(std::sync::PoisonError::into_inner).observe(&event);
        let object = match event {
            watcher::Event::Apply(object) | watcher::Event::Delete(object) if changed => Some(object),
            watcher::Event::InitDone => {
                listed_sender.send_replace(true);
                None
            }
            _ => None,
        };
        futures::future::ready(Ok(object))
    });
    (census, stream)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    use super::*;

    #[test]
    fn a_census_counts_by_namespace_what_is_not_being_deleted() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        type Meta = PartialObjectMeta<Namespace>;
        let object = |uid: &str, namespace: &str, deleting: bool| {
            let mut meta = Meta::default();
            meta.metadata.uid = Some(uid.into());
            meta.metadata.namespace = Some(namespace.into());
            meta.metadata.deletion_timestamp = deleting.then(|| Time(Default::default()));
            meta
        };
        let mut tally = Tally::default();
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(object("a", "x", false)),
            watcher::Event::InitApply(object("b", "x", false)),
            watcher::Event::InitApply(object("c", "y", true)),
        ] {
            assert!(!tally.observe(&event));
        }
        assert_eq!(tally.in_namespace("x"), 0, "nothing counts before the list ends");
        assert!(!tally.observe(&watcher::Event::<Meta>::InitDone));
        assert_eq!((tally.in_namespace("x"), tally.in_namespace("y")), (2, 0));
        // An update that changes no count is not reported; a new object, a deletion begun and
        // a deletion are.
        assert!(!tally.observe(&watcher::Event::Apply(object("a", "x", false))));
        assert!(tally.observe(&watcher::Event::Apply(object("d", "y", false))));
        assert!(tally.observe(&watcher::Event::Apply(object("a", "x", true))));
        assert_eq!((tally.in_namespace("x"), tally.in_namespace("y")), (1, 1));
        assert!(tally.observe(&watcher::Event::Delete(object("a", "x", true))));
        assert!(tally.observe(&watcher::Event::Delete(object("b", "x", false))));
        assert_eq!(tally.in_namespace("x"), 0);
        // A re-list replaces the members: what it no longer shows is gone.
        tally.observe(&watcher::Event::<Meta>::Init);
        tally.observe(&watcher::Event::InitApply(object("e", "z", false)));
        assert_eq!(tally.in_namespace("y"), 1, "counts hold until the re-list ends");
        tally.observe(&watcher::Event::<Meta>::InitDone);
        assert_eq!((tally.in_namespace("y"), tally.in_namespace("z")), (0, 1));
    }

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

    #[test]
    fn trimmed_deployments_and_ingresses_keep_what_reconciles_read() {
        let deployment: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mot-cua", "namespace": "hoi-an", "generation": 3},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "mot-cua"}},
                     "template": {"metadata": {"labels": {"app": "mot-cua"}},
                                  "spec": {"containers": [{"name": "web", "image": "portal:1",
                                           "env": [{"name": "A", "value": "b"}],
                                           "resources": {"requests": {"cpu": "100m"}}}],
                                           "volumes": [{"name": "tls", "secret": {"secretName": "tls"}}]}}},
            "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 3}
        }))
        .unwrap();
        let mut trimmed = deployment.clone();
        trim_deployment(&mut trimmed);
        let spec = &trimmed.spec;
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.containers.len(), 1);
        assert_eq!(pod.containers[0].name, "web");
        assert_eq!(
            pod.containers[0].resources,
            deployment.spec.template.spec.as_ref().unwrap().containers[0].resources
        );
        assert!(pod.containers[0].env.is_none() && pod.volumes.is_none() && spec.template.metadata.is_none());
        assert_eq!(trimmed.status, deployment.status);
        assert_eq!(trimmed.metadata, deployment.metadata);

        let mut ingress: k8s_openapi::api::networking::v1::Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mot-cua", "namespace": "hoi-an"},
            "spec": {"tls": [{"hosts": ["mot-cua.hoi-an.danang.gov.vn"], "secretName": "tls"}],
                     "rules": [{"host": "mot-cua.hoi-an.danang.gov.vn", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                                "backend": {"service": {"name": "mot-cua", "port": {"number": 80}}}}]}}]}
        }))
        .unwrap();
        trim_ingress(&mut ingress);
        let spec = ingress.spec.unwrap();
        assert!(spec.tls.is_none());
        let rules = spec.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].host.as_deref(), Some("mot-cua.hoi-an.danang.gov.vn"));
        assert!(rules[0].http.is_none());
    }

    /// Answers a request of the mocked API server with `status` and `body`.
    fn answer(
        send: tower_test::mock::SendResponse<http::Response<kube::client::Body>>,
        status: u16,
        body: serde_json::Value,
    ) {
        let response = http::Response::builder()
            .status(status)
            .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(response);
    }

    fn config_map_list(resource_version: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": resource_version},
            "items": [{"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "govpaas-trust", "namespace": "govpaas-system", "resourceVersion": resource_version}}]
        })
    }

    /// The probe against a mocked API server answering `status` with `body`; its answer and the
    /// query it sent.
    async fn streaming_probe(status: u16, body: String) -> (bool, String) {
        let (service, mut api_server) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let client = Client::new(service, "default");
        let api = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, "govpaas-system");
        let probe =
            tokio::spawn(async move { serves_streaming_lists(&api, Some("metadata.name=govpaas-trust")).await });
        let (request, send) = api_server.next_request().await.expect("the probe's request");
        let query = request.uri().query().unwrap_or_default().to_owned();
        let response =
            http::Response::builder().status(status).body(kube::client::Body::from(body.into_bytes())).unwrap();
        send.send_response(response);
        (probe.await.expect("the probe"), query)
    }

    #[tokio::test]
    async fn streaming_lists_are_used_only_where_the_api_server_ends_them() {
        let added = r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"govpaas-trust","namespace":"govpaas-system","resourceVersion":"7"}}}"#;
        let end = r#"{"type":"BOOKMARK","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"true"}}}}"#;
        let (served, query) = streaming_probe(200, format!("{added}\n{end}\n")).await;
        assert!(served, "the list ended with its bookmark");
        for part in
            ["watch=true", "sendInitialEvents=true", "resourceVersionMatch=NotOlderThan", "allowWatchBookmarks=true"]
        {
            assert!(query.contains(part), "{part} in {query}");
        }
        assert!(query.contains("fieldSelector=metadata.name%3Dgovpaas-trust"), "{query}");
        // WatchList off: the parameter is refused.
        let refused = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
            "reason": "Invalid", "message": "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled"});
        assert!(!streaming_probe(422, refused.to_string()).await.0);
        // Older than 1.27: the parameter is ignored, events come, the end never does.
        assert!(!streaming_probe(200, format!("{added}\n")).await.0);
    }

    #[test]
    fn the_watch_configuration_lists_as_decided() {
        assert_eq!(config_listing(true).initial_list_strategy, watcher::InitialListStrategy::StreamingList);
        assert_eq!(config_listing(false).initial_list_strategy, watcher::InitialListStrategy::ListWatch);
        assert_eq!(config_listing(true).timeout, Some(WATCH_TIMEOUT_SECONDS));
    }

    /// A watch whose resumption the API server answers 410 Gone lists again, instead of retrying
    /// the stale resourceVersion forever (kube-runtime's own watcher does the latter).
    #[tokio::test]
    async fn a_watch_refused_as_gone_lists_again() {
        let (service, mut api_server) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let client = Client::new(service, "default");
        let events = watcher(Api::<k8s_openapi::api::core::v1::ConfigMap>::all(client), watcher::Config::default());
        let consumer = tokio::spawn(events.take(6).collect::<Vec<_>>());

        let (request, send) = api_server.next_request().await.expect("the first list");
        assert!(!request.uri().query().unwrap_or_default().contains("watch=true"), "{}", request.uri());
        answer(send, 200, config_map_list("10"));

        let (request, send) = api_server.next_request().await.expect("the watch");
        let query = request.uri().query().unwrap_or_default().to_owned();
        assert!(query.contains("watch=true") && query.contains("resourceVersion=10"), "{query}");
        answer(
            send,
            410,
            serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                               "message": "too old resource version: 10 (25)", "reason": "Expired", "code": 410}),
        );

        // The next request lists again rather than resuming from 10.
        let (request, send) = api_server.next_request().await.expect("a new list");
        let query = request.uri().query().unwrap_or_default().to_owned();
        assert!(!query.contains("watch=true"), "the watcher resumed a gone resourceVersion: {query}");
        answer(send, 200, config_map_list("30"));

        let events = consumer.await.unwrap();
        let kinds: Vec<String> = events
            .iter()
            .map(|event| match event {
                Ok(watcher::Event::Init) => "Init".to_owned(),
                Ok(watcher::Event::InitApply(_)) => "InitApply".to_owned(),
                Ok(watcher::Event::InitDone) => "InitDone".to_owned(),
                Ok(_) => "other".to_owned(),
                Err(error) => format!("Err({})", if resume_refused_as_gone(error) { "gone" } else { "other" }),
            })
            .collect();
        assert_eq!(kinds, ["Init", "InitApply", "InitDone", "Err(gone)", "Init", "InitApply"]);
    }
}
