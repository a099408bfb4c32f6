//! The DocumentService controller: an agency's document management and electronic document
//! exchange, run as a Deployment with its own volume, a Service, an Ingress for the staff's web
//! host, a TLS certificate and a document-signing certificate from the tenant CA.
//!
//! [`build`] validates and builds the desired objects with no client; [`retention`] decides what
//! happens to the documents' volume; [`reconcile`] applies them and writes the status computed from
//! what it applied, as its step of the service pipeline (`crate::service::pipeline`). Alongside the controller, [`announce_retained`] watches the document volumes
//! it marked and, when one is released and retained (its service or tenant deleted), publishes an
//! Event on the volume (in the `default` namespace, where Events of cluster-scoped objects go) saying whose documents it holds and how to restore them.
//!
//! [`exchange`] decides its electronic document exchange: who may send to it, its route table for
//! the LGSP gateway (in the operator's namespace, swept by `crate::lgsp::tables` when the
//! DocumentService is gone), its sending identity and the gateway's way in to its exchange port.
//!
//! Triggers: as for Portals (spec and annotations, owned objects including the claim and the
//! NetworkPolicy, the wake-ups of [`crate::service::runtime`]), its route table changing or
//! vanishing, an exchange-enabled DocumentService of its agency and name changing its exchange
//! (the composition root wakes them: which one holds the endpoint may change), and every 10 s
//! while the volume binds.

pub mod build;
pub mod exchange;
pub mod reconcile;
pub mod retention;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::Controller;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, ObjectRef};
use kube::{Api, Resource};
use serde_json::json;

use crate::lgsp::tables;
use crate::reconcile::apply::FIELD_MANAGER;
use crate::reconcile::triggers::Triggers;
use crate::reconcile::{labels, runner, shared, watch};
use crate::service::runtime::{DocumentObject, ServiceWatch, Shared};

/// Runs the DocumentService controller, and the announcer of retained volumes, until shutdown.
pub async fn run(shared: Arc<Shared>, documents: ServiceWatch<DocumentObject>) {
    let client = shared.client.clone();
    let owned = labels::component_selector(build::COMPONENT);
    let (deployments, deployment_stream) = watch::whole_cache(client.clone(), &owned, watch::trim_deployment);
    let (services, service_stream) = watch::metadata_cache::<Service>(client.clone(), &owned);
    let (ingresses, ingress_stream) = watch::whole_cache(client.clone(), &owned, watch::trim_ingress);
    let (secrets, secret_stream) = watch::whole_cache::<Secret>(client.clone(), &owned, watch::keep_all);
    let (claims, claim_stream) = watch::whole_cache::<PersistentVolumeClaim>(client.clone(), &owned, watch::keep_all);
    let (network_policies, policy_stream) = watch::metadata_cache::<NetworkPolicy>(client.clone(), &owned);
    // Exchange route tables live in the operator's namespace, found by label and annotation.
    let operator_namespace = shared.settings.operator_namespace.clone();
    let (route_tables, route_table_stream) =
        tables::watch_tables(client.clone(), &operator_namespace, tables::DOCUMENT_TABLES);
    let source_of = |table: PartialObjectMeta<ConfigMap>| {
        tables::source_of(&table).map(|(namespace, name)| ObjectRef::<DocumentObject>::new(&name).within(&namespace))
    };

    // Owned kinds wake their DocumentService from tasks of their own (`reconcile::triggers`).
    let (mut triggers, owned_changed) = Triggers::<DocumentObject>::new("document-service");
    triggers.owned("Deployment", deployment_stream);
    triggers.owned("Service", service_stream);
    triggers.owned("Ingress", ingress_stream);
    triggers.owned("Secret", secret_stream);
    triggers.owned("PersistentVolumeClaim", claim_stream);
    triggers.owned("NetworkPolicy", policy_stream);
    triggers.watch("route table", route_table_stream, source_of);
    let clock = runner::QueueClock::default();
    let controller = Controller::for_stream(clock.watched(documents.stream), documents.store)
        .reconcile_on(clock.woken(futures::stream::select(documents.wake, owned_changed)));
    let concurrency = shared.settings.concurrency;
    // Reconciles wait for the whole-object caches too: what they lack then does not exist.
    let (marked_volumes, marked_writer) = reflector::store::<PersistentVolume>();
    let owned_listed = shared::Listed::when(vec![
        shared::Listed::of(&marked_volumes),
        shared::Listed::of(&deployments),
        shared::Listed::of(&ingresses),
        shared::Listed::of(&secrets),
        shared::Listed::of(&claims),
    ]);
    let context = Arc::new(reconcile::Context {
        shared: shared.clone(),
        caches: reconcile::Caches {
            deployments,
            services,
            ingresses,
            secrets,
            claims,
            marked_volumes,
            network_policies,
            route_tables: route_tables.clone(),
            operator_namespace: operator_namespace.clone(),
        },
        known: Default::default(),
        owned_listed,
    });
    let telemetry = shared.settings.telemetry.clone();
    let synced = {
        let shared = shared.clone();
        let owned_listed = context.owned_listed.clone();
        async move { shared.wait_until_ready().await.is_ok() && owned_listed.wait().await }
    };
    let reconcile = crate::service::pipeline::reconcile::<govpaas_crds::DocumentService>;
    let controller =
        runner::run("document-service", controller, clock, concurrency, &telemetry, synced, reconcile, context);
    let sweep = tables::Sweep {
        kind: "DocumentService",
        live: {
            let shared = shared.clone();
            move || shared.documents.state().iter().filter_map(|service| service.meta().uid.clone()).collect()
        },
        serves: {
            let shared = shared.clone();
            move |tenant: &str| shared.serves_tenant(tenant)
        },
        woken: shared.exchange_tables_orphaned.clone(),
    };
    let ready = {
        let shared = shared.clone();
        async move { shared.wait_until_ready().await.is_ok() }
    };
    let client = shared.client.clone();
    tokio::select! {
        () = controller => {}
        () = announce_retained(shared, marked_writer) => {}
        () = tables::sweep(client, &operator_namespace, route_tables, ready, sweep) => {}
    }
}

/// Publishes, once per release, an Event on each document volume that its claim released and that
/// is retained: where the documents are and how to restore them. Volumes of tenants another
/// operator serves (`--tenant-selector`) are left to that operator.
///
/// The watch also fills `marked`, the cache of every marked document volume: a reconcile finds its
/// bound volume there already marked, without reading it.
pub async fn announce_retained(shared: Arc<Shared>, marked: reflector::store::Writer<PersistentVolume>) {
    // The Tenants this operator serves are known once the caches have listed.
    if shared.wait_until_ready().await.is_err() {
        return;
    }
    let api: Api<PersistentVolume> = Api::all(shared.client.clone());
    let selector = format!("{},{}", govpaas_crds::metadata::TENANT_LABEL, retention::CLAIM_LABEL_SELECTOR);
    watch::watcher(api.clone(), crate::reconcile::watch::config().labels(&selector))
        .default_backoff()
        .modify(watch::strip)
        .reflect(marked)
        .applied_objects()
        .for_each(|volume| {
            let shared = shared.clone();
            let api = api.clone();
            async move {
                let volume = match volume {
                    Ok(volume) => volume,
                    Err(err) => {
                        tracing::warn!(error = %err, "watching document volumes failed; retrying");
                        return;
                    }
                };
                let Some((note, claim)) = retention::retained_announcement(&volume) else { return };
                let in_scope = volume
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(govpaas_crds::metadata::TENANT_LABEL))
                    .is_some_and(|tenant| shared.serves_tenant(tenant));
                if !in_scope {
                    return;
                }
                let name = volume.metadata.name.clone().unwrap_or_default();
                let reference = volume.object_ref(&());
                shared.publisher.publish(&reference, EventType::Normal, "DocumentsRetained", "Retain", &note, None).await;
                tracing::info!(volume = name, claim, "announced a retained document volume");
                let mark = json!({"metadata": {"annotations": {retention::ANNOUNCED_ANNOTATION: claim}}});
                let params = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
                if let Err(err) = api.patch(&name, &params, &Patch::Merge(&mark)).await {
                    tracing::warn!(volume = name, error = %err, "could not record the announcement; it may be repeated");
                }
            }
        })
        .await;
}
