//! One watch per kind, shared by every controller that reads that kind.
//!
//! The Platform, the trust ConfigMap, Tenants and the tenants' ResourceQuotas concern several
//! controllers. Each used to watch them for itself: the same objects listed and streamed up to three
//! times, each copy cached apart. A [`SharedWatch`] is the one watch of its kind: it fills one
//! cache and hands every event to each [`Subscription`] (a queue of its own, so that a slow
//! subscriber delays nobody else), and says once when it has listed. The composition root creates
//! the shared watches, subscribes the controllers and runs the watches.

use std::fmt::Debug;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use super::watch;

/// The one watch of a kind: its cache, and the subscribers it feeds.
pub struct SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    kind: &'static str,
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    subscribers: Vec<UnboundedSender<watcher::Event<K>>>,
    listed: tokio::sync::watch::Sender<bool>,
}

/// What a subscriber gets: the shared cache, every event of the watch, and whether it has listed.
pub struct Subscription<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    pub store: Store<K>,
    pub events: UnboundedReceiver<watcher::Event<K>>,
    pub listed: Listed,
}

/// Turns true once a shared watch has listed its kind (and stays true through re-lists). Any
/// number of tasks may wait on it, unlike a kube `Store`'s readiness, which wakes one waiter.
#[derive(Clone)]
pub struct Listed(tokio::sync::watch::Receiver<bool>);

impl Listed {
    /// Listed once every future of `stores` says so (each a store's `wait_until_ready`, [`Self::of`],
    /// its only waiter); never, if one says its cache stopped. For a controller's own caches: its
    /// reconciles wait for it, and then take what a cache lacks as not existing.
    pub fn when(stores: Vec<futures::future::BoxFuture<'static, bool>>) -> Self {
        let (sender, receiver) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if futures::future::join_all(stores).await.into_iter().all(|listed| listed) {
                sender.send_replace(true);
            }
        });
        Listed(receiver)
    }

    /// The future of `store` having listed, for [`Self::when`].
    pub fn of<K>(store: &Store<K>) -> futures::future::BoxFuture<'static, bool>
    where
        K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        let store = store.clone();
        Box::pin(async move { store.wait_until_ready().await.is_ok() })
    }

    /// Already listed (tests that fill the stores by hand).
    pub fn done() -> Self {
        Listed(tokio::sync::watch::channel(true).1)
    }

    /// Waits until the watch has listed; false if it stopped before.
    pub async fn wait(mut self) -> bool {
        self.0.wait_for(|listed| *listed).await.is_ok()
    }

    /// Whether the watch has listed.
    pub fn is_listed(&self) -> bool {
        *self.0.borrow()
    }
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// The watch of `K` through `api`, with `config` (a selector, for instance).
    pub fn new(kind: &'static str, api: Api<K>, config: watcher::Config) -> Self {
        let (store, writer) = reflector::store::<K>();
        let (listed, _) = tokio::sync::watch::channel(false);
        SharedWatch { kind, api, config, store, writer, subscribers: Vec::new(), listed }
    }

    /// The shared cache (filled once [`run`](Self::run) is polled).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Whether the watch has listed.
    pub fn listed(&self) -> Listed {
        Listed(self.listed.subscribe())
    }

    /// A new subscriber: every event from now on, including the initial list.
    pub fn subscribe(&mut self) -> Subscription<K> {
        let (sender, events) = unbounded();
        self.subscribers.push(sender);
        Subscription { store: self.store(), events, listed: self.listed() }
    }

    /// Runs the watch until every subscriber has gone: the cache is updated first, then each
    /// subscriber gets the event. Errors are the watch's own (it retries with backoff): logged.
    pub async fn run(self) {
        let SharedWatch { kind, api, config, writer, mut subscribers, listed, .. } = self;
        let mut events =
            std::pin::pin!(watch::watcher(api, config).default_backoff().modify(watch::strip).reflect(writer));
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        listed.send_replace(true);
                    }
                    subscribers.retain(|subscriber| subscriber.unbounded_send(event.clone()).is_ok());
                    if subscribers.is_empty() {
                        return;
                    }
                }
                Err(error) => tracing::warn!(kind, %error, "shared watch failed; retrying"),
            }
        }
    }
}

impl<K> Subscription<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + 'static,
{
    /// The objects the events touch (applied, listed or deleted), as a watch stream would yield
    /// them to a controller.
    pub fn touched(self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        self.events.flat_map(|event| futures::stream::iter(touched(event).map(Ok)))
    }
}

/// The object an event is about, if it is about one.
pub fn touched<K>(event: watcher::Event<K>) -> Option<K> {
    match event {
        watcher::Event::Apply(object) | watcher::Event::InitApply(object) | watcher::Event::Delete(object) => {
            Some(object)
        }
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::Client;

    use super::*;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() }
    }

    #[test]
    fn only_events_about_an_object_are_touched() {
        assert_eq!(touched(watcher::Event::Apply(config_map("a"))).and_then(|c| c.metadata.name), Some("a".into()));
        assert_eq!(touched(watcher::Event::InitApply(config_map("b"))).and_then(|c| c.metadata.name), Some("b".into()));
        assert_eq!(touched(watcher::Event::Delete(config_map("c"))).and_then(|c| c.metadata.name), Some("c".into()));
        assert!(touched::<ConfigMap>(watcher::Event::Init).is_none());
        assert!(touched::<ConfigMap>(watcher::Event::InitDone).is_none());
    }

    /// One list and one watch request serve every subscriber: each gets every object, the one
    /// cache holds them, and all see the watch listed.
    #[tokio::test]
    async fn one_watch_feeds_every_subscriber_and_one_cache() {
        let (service, mut api_server) =
            tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
        let client = Client::new(service, "default");
        let mut shared = SharedWatch::new("ConfigMap", Api::<ConfigMap>::all(client), watcher::Config::default());
        let (first, second) = (shared.subscribe(), shared.subscribe());
        let (store, listed) = (shared.store(), shared.listed());
        assert!(!listed.is_listed());
        let watch = tokio::spawn(shared.run());

        let (request, send) = api_server.next_request().await.expect("the list");
        assert!(!request.uri().query().unwrap_or_default().contains("watch=true"), "{}", request.uri());
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "10"},
            "items": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "9"}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "ns", "resourceVersion": "10"}}
            ]
        });
        let response = http::Response::builder()
            .status(200)
            .body(kube::client::Body::from(serde_json::to_vec(&list).unwrap()))
            .unwrap();
        send.send_response(response);

        for subscription in [first, second] {
            let listed = subscription.listed.clone();
            let names: Vec<String> =
                subscription.touched().take(2).map(|object| object.unwrap().metadata.name.unwrap()).collect().await;
            assert_eq!(names, ["a", "b"]);
            assert!(listed.wait().await);
        }
        assert_eq!(store.len(), 2, "one cache, filled once");
        assert!(listed.is_listed());
        // The next request is the one watch, for everyone.
        let (request, _send) = api_server.next_request().await.expect("the watch");
        assert!(request.uri().query().unwrap_or_default().contains("watch=true"), "{}", request.uri());
        watch.abort();
    }
}
