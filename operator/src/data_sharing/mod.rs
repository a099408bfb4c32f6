//! The DataSharingService controller: the operator's side of the LGSP wiring.
//!
//! - [`grants`] decides, from every DataSharingService and Tenant, which consumptions are
//!   Granted, Pending or Denied (both sides must declare a grant, as in X-Road);
//! - [`build`] builds, with no client, what one DataSharingService needs: a NetworkPolicy per
//!   provided API letting the LGSP gateway reach the API's Pods, the client certificate Secret of
//!   a consumer, and its route table, a ConfigMap in the operator's namespace that the gateway
//!   will read (schema in [`govpaas_crds::lgsp`]);
//! - [`reconcile`] applies them, prunes, and writes the status computed from what it applied;
//! - `crate::lgsp::tables` names, applies and sweeps the route tables (of DataSharingServices that
//!   are gone).
//!
//! Triggers: a DataSharingService's spec changing (a generation predicate); its NetworkPolicies
//! and client Secret changing (metadata watchers); its route table changing or vanishing; a
//! Service of its namespace changing (it may be the one behind an API); the wake-ups of
//! [`crate::service::runtime`]: its tenant, namespace, the Platform, the trust state, and the
//! DataSharingServices on the other side of its grants. Everything is resynced hourly, and at the
//! client certificate's renewal time.

pub mod build;
pub mod grants;
pub mod reconcile;
pub mod triggers;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::lgsp::tables;
use crate::reconcile::triggers::Triggers;
use crate::reconcile::{labels, runner, shared, watch};
use crate::service::runtime::{DataSharingObject, ServiceWatch, Shared};

/// Runs the DataSharingService controller, and the sweep of orphaned route tables, until shutdown.
pub async fn run(shared: Arc<Shared>, services: ServiceWatch<DataSharingObject>) {
    let client = shared.client.clone();
    let owned = labels::component_selector(build::COMPONENT);
    let (network_policies, policy_stream) = watch::metadata_cache::<NetworkPolicy>(client.clone(), &owned);
    let (secrets, secret_stream) = watch::whole_cache::<Secret>(client.clone(), &owned, watch::keep_all);

    // Route tables live in the operator's namespace and carry no owner reference: they map back to
    // their DataSharingService by label and annotation.
    let (route_tables, route_table_stream) =
        tables::watch_tables(client.clone(), &shared.settings.operator_namespace, tables::DATA_SHARING_TABLES);
    let source_of = |table: PartialObjectMeta<ConfigMap>| {
        tables::source_of(&table).map(|(namespace, name)| ObjectRef::<DataSharingObject>::new(&name).within(&namespace))
    };

    // A Service appearing, changing or going may be the one behind a provided API; reconciles
    // read the provided APIs' Services (their selector and ports) from this cache.
    let (kubernetes_services, service_stream) = watch::every_service(client.clone());
    let store = services.store.clone();
    let providers_of = move |service: Service| {
        let namespace = service.namespace().unwrap_or_default();
        let name = service.name_any();
        store
            .state()
            .into_iter()
            .filter(|dss| dss.namespace().as_deref() == Some(namespace.as_str()))
            .filter(|dss| dss.0.as_ref().is_ok_and(|s| s.spec.provides.iter().any(|api| api.service == name)))
            .map(|dss| ObjectRef::from_obj(dss.as_ref()))
            .collect::<Vec<_>>()
    };

    // Every other watch wakes DataSharingServices from a task of its own (`reconcile::triggers`).
    let (mut triggers, changed) = Triggers::<DataSharingObject>::new("data-sharing");
    triggers.owned("NetworkPolicy", policy_stream);
    triggers.owned("Secret", secret_stream);
    triggers.watch("route table", route_table_stream, source_of);
    triggers.watch("Service", service_stream, providers_of);
    let clock = runner::QueueClock::default();
    let controller = Controller::for_stream(clock.watched(services.stream), services.store)
        .reconcile_on(clock.woken(futures::stream::select(services.wake, changed)));
    let concurrency = shared.settings.concurrency;
    let telemetry = shared.settings.telemetry.clone();
    // Reconciles wait for the client Secrets' cache too: what it lacks then does not exist.
    let secrets_listed = shared::Listed::of(&secrets);
    let services_listed = shared::Listed::of(&kubernetes_services);
    let context = Arc::new(reconcile::Context {
        shared: shared.clone(),
        caches: reconcile::Caches {
            network_policies,
            secrets,
            kubernetes_services,
            route_tables: route_tables.clone(),
            operator_namespace: shared.settings.operator_namespace.clone(),
        },
        known: Default::default(),
        owned_listed: shared::Listed::when(vec![secrets_listed, services_listed]),
    });
    let synced = {
        let shared = shared.clone();
        let owned_listed = context.owned_listed.clone();
        async move { shared.wait_until_ready().await.is_ok() && owned_listed.wait().await }
    };
    let reconcile = crate::service::pipeline::reconcile::<govpaas_crds::DataSharingService>;
    let controller =
        runner::run("data-sharing", controller, clock, concurrency, &telemetry, synced, reconcile, context);
    let sweep = tables::Sweep {
        kind: "DataSharingService",
        live: {
            let shared = shared.clone();
            move || shared.data_sharing.state().iter().filter_map(|service| service.meta().uid.clone()).collect()
        },
        serves: {
            let shared = shared.clone();
            move |tenant: &str| shared.serves_tenant(tenant)
        },
        woken: shared.route_tables_orphaned.clone(),
    };
    let ready = {
        let shared = shared.clone();
        async move { shared.wait_until_ready().await.is_ok() }
    };
    let namespace = shared.settings.operator_namespace.clone();
    tokio::select! {
        () = controller => {}
        () = tables::sweep(shared.client.clone(), &namespace, route_tables, ready, sweep) => {}
    }
}
