//! The cluster source of routes: the route table ConfigMaps the operator writes in its namespace
//! (selected by [`lgsp::ROUTE_TABLE_SELECTOR`], the table under [`lgsp::ROUTE_TABLE_KEY`]),
//! watched with kube-runtime's watcher. Every change rebuilds the merged [`RouteSet`] and swaps it
//! in atomically: new requests get the new routes, requests in flight keep theirs. After a
//! re-list (a reconnect), tables that vanished meanwhile are forgotten.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::StreamExt;
use govpaas_crds::lgsp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

use crate::routes::{Resolve, RouteSet, RouteSources, SourceKey};

/// A client from `kubeconfig`, or else the in-cluster configuration (or `KUBECONFIG`,
/// `~/.kube/config`).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    // kube waits forever by default for an answer the API server never sends (seen after an API
    // server restart): bound every read by the route watch's term plus a margin.
    config.read_timeout = Some(Duration::from_secs(u64::from(ROUTE_WATCH_TIMEOUT_SECONDS) + 15));
    config.reset_reader_on_write = true;
    Ok(Client::try_from(config)?)
}

fn source_key(config_map: &ConfigMap) -> SourceKey {
    SourceKey {
        created: config_map.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()).unwrap_or_default(),
        name: format!("{}/{}", config_map.namespace().unwrap_or_default(), config_map.name_any()),
    }
}

fn read(sources: &mut RouteSources, config_map: &ConfigMap) -> bool {
    let key = source_key(config_map);
    match config_map.data.as_ref().and_then(|d| d.get(lgsp::ROUTE_TABLE_KEY)) {
        Some(json) => sources.update(key, json.as_bytes()),
        None => {
            sources.refuse(&key.name, &format_args!("a route table ConfigMap without {}", lgsp::ROUTE_TABLE_KEY));
            false
        }
    }
}

/// How long the API server keeps one route-table watch open before the next (kube's default is
/// 290 s); the client's read timeout is a margin above it.
const ROUTE_WATCH_TIMEOUT_SECONDS: u32 = 60;

/// Watches the route tables of `namespace` into `routes` until `stop`. `synced` turns true once
/// the first listing is in force; `refused` shows how many tables are refused.
pub async fn watch_routes(
    client: Client,
    namespace: String,
    resolve: Resolve,
    routes: Arc<ArcSwap<RouteSet>>,
    refused: Gauge,
    synced: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(lgsp::ROUTE_TABLE_SELECTOR).timeout(ROUTE_WATCH_TIMEOUT_SECONDS);
    let start = move || watcher(api.clone(), config.clone()).default_backoff().boxed();
    let mut events = start();
    let mut sources = RouteSources::new(resolve);
    sources.report_refusals_to(refused);
    // The names seen in the listing under way (between Init and InitDone).
    let mut listing: Option<BTreeSet<String>> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = stop.changed() => return,
        };
        let changed = match event {
            None => return,
            Some(Err(error)) => {
                tracing::warn!(%error, "watching the route tables failed; retrying");
                // kube-runtime retries a watch whose resumption is refused with 410 Gone from the
                // same stale resourceVersion forever (after an API server restart): list again.
                if matches!(&error, watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 410) {
                    events = start();
                }
                false
            }
            Some(Ok(watcher::Event::Init)) => {
                listing = Some(BTreeSet::new());
                false
            }
            Some(Ok(watcher::Event::InitApply(config_map))) => {
                if let Some(names) = listing.as_mut() {
                    names.insert(source_key(&config_map).name);
                }
                read(&mut sources, &config_map);
                false
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if let Some(names) = listing.take() {
                    sources.retain(&names);
                }
                synced.send_replace(true);
                true
            }
            Some(Ok(watcher::Event::Apply(config_map))) => read(&mut sources, &config_map),
            Some(Ok(watcher::Event::Delete(config_map))) => sources.remove(&source_key(&config_map).name),
        };
        if changed && *synced.borrow() {
            let merged = sources.merged();
            tracing::info!(apis = merged.len(), tables = sources.sources(), "routes updated from the cluster");
            routes.store(Arc::new(merged));
        }
    }
}

/// How long the gateway waits at start-up for the first listing of the route tables.
pub const FIRST_SYNC: Duration = Duration::from_secs(60);
