//! Drives a kube-rs [`Controller`]: bounded concurrency, per-object exponential backoff after
//! errors, a tracing line per outcome, graceful shutdown.
//!
//! Errors here are the operator's or the API server's (a timeout, a conflict), never the user's:
//! user errors end a reconcile successfully with a condition. So an error is retried after
//! 2 s, 4 s, 8 s … up to [`MAX_BACKOFF`] for that object alone, and the count resets on success.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::telemetry::Telemetry;

/// The first retry after an error.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// How long one reconcile may take before it is cancelled and retried: a reconcile is a handful of
/// API round trips, so one that hangs (a request the API server never answers, a stuck await) must
/// not silently stop its object from ever being reconciled again.
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest wait between retries of a failing object.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Consecutive failures per object.
pub struct Backoff<K: Resource>
where
    K::DynamicType: Eq + Hash,
{
    failures: Mutex<HashMap<ObjectRef<K>, u32>>,
}

impl<K: Resource> Default for Backoff<K>
where
    K::DynamicType: Eq + Hash,
{
    fn default() -> Self {
        Backoff { failures: Mutex::new(HashMap::new()) }
    }
}

impl<K: Resource> Backoff<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    /// Records a failure of `object`; returns how long to wait before retrying it.
    pub fn failed(&self, object: ObjectRef<K>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(object).or_insert(0);
        *count = count.saturating_add(1);
        delay_after(*count)
    }

    /// Forgets the failures of `object` after it reconciled.
    pub fn succeeded(&self, object: &ObjectRef<K>) {
        let mut failures = self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        failures.remove(object);
    }
}

/// When each object was first asked for since its last reconcile began: by a watch event of its
/// own or a trigger (a change to something it owns or depends on). The reconcile that starts
/// next reports how long it waited (`govpaas_reconcile_queue_wait_seconds`): the debounce, the
/// queue behind the concurrency limit, and a reconcile of the same object still running. Requeues
/// by timer are not asked for by anything, so they are not counted.
pub struct QueueClock<K: Resource>
where
    K::DynamicType: Eq + Hash,
{
    asked: Arc<Mutex<HashMap<ObjectRef<K>, std::time::Instant>>>,
}

impl<K: Resource> Clone for QueueClock<K>
where
    K::DynamicType: Eq + Hash,
{
    fn clone(&self) -> Self {
        QueueClock { asked: self.asked.clone() }
    }
}

impl<K: Resource> Default for QueueClock<K>
where
    K::DynamicType: Eq + Hash,
{
    fn default() -> Self {
        QueueClock { asked: Default::default() }
    }
}

impl<K> QueueClock<K>
where
    K: Resource + 'static,
    K::DynamicType: Eq + Hash + Clone + Default,
{
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<K>, std::time::Instant>> {
        self.asked.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `object` was asked for now (the earliest ask since its last reconcile counts).
    pub fn asked(&self, object: ObjectRef<K>) {
        self.lock().entry(object).or_insert_with(std::time::Instant::now);
    }

    /// How long `object` waited, if anything asked for it since its last reconcile began.
    pub fn started(&self, object: &ObjectRef<K>) -> Option<Duration> {
        self.lock().remove(object).map(|asked| asked.elapsed())
    }

    /// The objects of a watch stream, each timed as asked for.
    pub fn watched<E, S>(&self, stream: S) -> impl futures::Stream<Item = Result<K, E>> + Send + use<K, E, S>
    where
        S: futures::Stream<Item = Result<K, E>> + Send,
    {
        let clock = self.clone();
        stream.inspect(move |item| {
            if let Ok(object) = item {
                clock.asked(ObjectRef::from_obj_with(object, Default::default()));
            }
        })
    }

    /// A stream of reconcile requests, each timed as asked for.
    pub fn woken<S>(&self, stream: S) -> impl futures::Stream<Item = ObjectRef<K>> + Send + use<K, S>
    where
        S: futures::Stream<Item = ObjectRef<K>> + Send,
    {
        let clock = self.clone();
        stream.inspect(move |object| clock.asked(object.clone()))
    }
}

/// 2 s doubled for each further consecutive failure, capped at [`MAX_BACKOFF`].
pub fn delay_after(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// Runs `controller` until shutdown (SIGTERM or Ctrl-C: reconciles in flight finish, no new ones
/// start), at most `concurrency` reconciles at once (never two of one object). Each reconcile is
/// cancelled after [`RECONCILE_TIMEOUT`] and retried with backoff, and measured in `telemetry`
/// (outcome, error variant, duration); the cache's size is reported as
/// managed objects, and readiness waits for the cache to sync.
#[allow(clippy::too_many_arguments)]
pub async fn run<K, Ctx, Fut>(
    name: &'static str,
    controller: Controller<K>,
    clock: QueueClock<K>,
    concurrency: u16,
    telemetry: &Telemetry,
    synced: impl Future<Output = bool> + Send + 'static,
    mut reconcile: impl FnMut(Arc<K>, Arc<Ctx>) -> Fut,
    context: Arc<Ctx>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Debug + Default + Eq + Hash + Clone + Unpin,
    Ctx: Send + Sync + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let backoff = Arc::new(Backoff::<K>::default());
    let on_error = backoff.clone();
    let store = controller.store();
    // Ready once `synced` says the controller's caches have listed. Not by awaiting the main
    // store's `wait_until_ready`: the controller itself waits on it, and a store wakes only one
    // waiter (kube-runtime's `DelayedInit` keeps a single waker), so one of the two would sleep on.
    telemetry.health.expect(name);
    let health = telemetry.health.clone();
    tokio::spawn(async move {
        if synced.await {
            health.synced(name);
        }
    });
    let metrics = telemetry.metrics.clone();
    let managed = telemetry.metrics.clone();
    // The timer records when the reconcile's future ends, however it ends.
    let measured = move |object: Arc<K>, ctx: Arc<Ctx>| {
        if let Some(waited) = clock.started(&object_ref_of(object.as_ref())) {
            metrics.queue_wait(name, waited);
        }
        let mut timer = metrics.reconcile(name);
        let reconciled = reconcile(object, ctx);
        async move {
            let result = bounded(reconciled).await;
            if let Err(error) = &result {
                timer.failed(error.metric_label());
            }
            result
        }
    };
    controller
        .with_config(controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(
            measured,
            move |object: Arc<K>, error: &Error, _ctx| {
                let object_ref = object_ref_of(object.as_ref());
                let delay = on_error.failed(object_ref);
                tracing::warn!(
                    controller = name,
                    error = %error,
                    error_kind = error.metric_label(),
                    retry_in_s = delay.as_secs(),
                    "reconcile failed"
                );
                Action::requeue(delay)
            },
            context,
        )
        .for_each(|result| {
            managed.set_managed(name, store.state().len());
            match result {
                Ok((object, _)) => {
                    tracing::debug!(controller = name, object = %object, "reconciled");
                    backoff.succeeded(&object);
                }
                Err(controller::Error::ObjectNotFound(object)) => {
                    // A child or related object pointed at something outside this operator's scope
                    // or already deleted: nothing to do.
                    tracing::debug!(controller = name, object = %object, "reconcile request for an object not in the cache");
                }
                // Already logged by the error policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(err) => tracing::warn!(controller = name, error = %err, "controller queue error"),
            }
            futures::future::ready(())
        })
        .await;
    tracing::info!(controller = name, "controller stopped");
}

fn object_ref_of<K: Resource>(object: &K) -> ObjectRef<K>
where
    K::DynamicType: Default + Eq + Hash + Clone,
{
    ObjectRef::from_obj_with(object, K::DynamicType::default())
}

/// A reconcile, cancelled after [`RECONCILE_TIMEOUT`] with [`Error::Timeout`]: a hung request never
/// stalls its object (it is retried with backoff, and every step is an idempotent apply).
pub async fn bounded<T>(reconciled: impl Future<Output = crate::error::Result<T>>) -> crate::error::Result<T> {
    tokio::time::timeout(RECONCILE_TIMEOUT, reconciled).await.unwrap_or(Err(Error::Timeout(RECONCILE_TIMEOUT)))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;

    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        assert_eq!(delay_after(1), Duration::from_secs(2));
        assert_eq!(delay_after(2), Duration::from_secs(4));
        assert_eq!(delay_after(5), Duration::from_secs(32));
        assert_eq!(delay_after(40), MAX_BACKOFF);

        let backoff = Backoff::<Namespace>::default();
        let ns = ObjectRef::new("so-noi-vu");
        assert_eq!(backoff.failed(ns.clone()), Duration::from_secs(2));
        assert_eq!(backoff.failed(ns.clone()), Duration::from_secs(4));
        assert_eq!(backoff.failed(ObjectRef::new("other")), Duration::from_secs(2));
        backoff.succeeded(&ns);
        assert_eq!(backoff.failed(ns), Duration::from_secs(2));
    }
}
