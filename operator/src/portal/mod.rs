//! The Portal controller: an agency's public-service portal, run as a Deployment behind a Service
//! and an Ingress with a TLS certificate from the tenant CA, with a PodDisruptionBudget when it has
//! replicas to spare.
//!
//! [`build`] validates and builds the desired objects with no client; [`reconcile`] is the
//! Portal's step of the service pipeline (`crate::service::pipeline`): it applies them by
//! server-side apply and prunes what is no longer wanted, from one typed set; the pipeline writes
//! the status computed from what it applied.
//!
//! Triggers: a Portal's spec or annotations changing (a generation predicate: its own status
//! writes do not retrigger it); any owned object changing or vanishing (metadata watchers, so a
//! deleted Ingress or an edited Deployment is repaired at once, and a Deployment's progress
//! reaches status); and the wake-ups of [`crate::service::runtime`] (its tenant, namespace,
//! quota, the Platform, a service that freed a host or quota). Everything is resynced hourly, and
//! at each certificate's renewal time.

pub mod build;
pub mod reconcile;

#[cfg(test)]
mod error_paths;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Controller;

use crate::reconcile::triggers::Triggers;
use crate::reconcile::{labels, runner, shared, watch};
use crate::service::runtime::{PortalObject, ServiceWatch, Shared};

/// Runs the Portal controller until shutdown.
pub async fn run(shared: Arc<Shared>, portals: ServiceWatch<PortalObject>) {
    let client = shared.client.clone();
    let owned = labels::component_selector(build::COMPONENT);
    let (deployments, deployment_stream) = watch::whole_cache(client.clone(), &owned, watch::trim_deployment);
    let (services, service_stream) = watch::metadata_cache::<Service>(client.clone(), &owned);
    let (ingresses, ingress_stream) = watch::whole_cache(client.clone(), &owned, watch::trim_ingress);
    let (pod_disruption_budgets, budget_stream) = watch::metadata_cache::<PodDisruptionBudget>(client.clone(), &owned);
    let (secrets, secret_stream) = watch::whole_cache::<Secret>(client.clone(), &owned, watch::keep_all);

    // Owned kinds wake their Portal from tasks of their own (`reconcile::triggers`).
    let (mut triggers, owned_changed) = Triggers::<PortalObject>::new("portal");
    triggers.owned("Deployment", deployment_stream);
    triggers.owned("Service", service_stream);
    triggers.owned("Ingress", ingress_stream);
    triggers.owned("PodDisruptionBudget", budget_stream);
    triggers.owned("Secret", secret_stream);
    let clock = runner::QueueClock::default();
    let controller = Controller::for_stream(clock.watched(portals.stream), portals.store)
        .reconcile_on(clock.woken(futures::stream::select(portals.wake, owned_changed)));
    let concurrency = shared.settings.concurrency;
    let telemetry = shared.settings.telemetry.clone();
    // Reconciles wait for the whole-object caches too: what they lack then does not exist.
    let owned_listed = shared::Listed::when(vec![
        shared::Listed::of(&deployments),
        shared::Listed::of(&ingresses),
        shared::Listed::of(&secrets),
    ]);
    let context = Arc::new(reconcile::Context {
        shared,
        caches: reconcile::Caches { deployments, services, ingresses, pod_disruption_budgets, secrets },
        known: Default::default(),
        owned_listed,
    });
    let synced = {
        let shared = context.shared.clone();
        let owned_listed = context.owned_listed.clone();
        async move { shared.wait_until_ready().await.is_ok() && owned_listed.wait().await }
    };
    let reconcile = crate::service::pipeline::reconcile::<govpaas_crds::Portal>;
    runner::run("portal", controller, clock, concurrency, &telemetry, synced, reconcile, context).await;
}
