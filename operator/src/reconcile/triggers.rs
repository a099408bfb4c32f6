//! The watches that wake a controller besides its own kind's, each run as a task of its own.
//!
//! A kube [`Controller`](kube::runtime::Controller) can take such watches inside it
//! (`owns_stream`, `watches_stream`), where they share its one task. After an API server restart
//! the tenant controller, with a dozen watches inside, was never woken again while the others went
//! on; later the Portal and DataSharingService controllers, with five each, did the same
//! (docs/resilience.md). So a controller here is fed only its own kind's watch and one queue of
//! wake-ups, and [`Triggers`] runs every other watch beside it, mapping each changed object to the
//! objects it concerns and sending them to that queue. One watch that stalls or fails can then hold
//! up neither the others nor the reconciles.

use std::fmt::Debug;

use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use futures::{Stream, StreamExt};
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use tokio::task::JoinSet;

/// The trigger tasks of one controller; they stop when this is dropped.
pub struct Triggers<K: Resource>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    controller: &'static str,
    wake: UnboundedSender<ObjectRef<K>>,
    tasks: JoinSet<()>,
}

impl<K> Triggers<K>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    /// The triggers of `controller`, and the queue to hand to its `reconcile_on`.
    pub fn new(controller: &'static str) -> (Self, UnboundedReceiver<ObjectRef<K>>) {
        let (wake, woken) = unbounded();
        (Triggers { controller, wake, tasks: JoinSet::new() }, woken)
    }

    /// Runs `stream`, waking the objects `to_objects` maps each changed object to. Errors are the
    /// watch's own (it retries with backoff): logged, never fatal.
    pub fn watch<T, I>(
        &mut self,
        watch: &'static str,
        stream: impl Stream<Item = Result<T, watcher::Error>> + Send + 'static,
        to_objects: impl Fn(T) -> I + Send + 'static,
    ) where
        T: Send + 'static,
        I: IntoIterator<Item = ObjectRef<K>>,
    {
        let (controller, wake) = (self.controller, self.wake.clone());
        self.tasks.spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(changed) = stream.next().await {
                match changed {
                    Ok(object) => {
                        for target in to_objects(object) {
                            // Fails only when the controller is shutting down.
                            let _ = wake.unbounded_send(target);
                        }
                    }
                    Err(error) => tracing::warn!(controller, watch, %error, "watch failed; retrying"),
                }
            }
        });
    }

    /// Runs `stream` of objects owned by a `K` (by owner reference, in the owned object's
    /// namespace, as kube's `owns` maps them), waking their owners.
    pub fn owned<T>(
        &mut self,
        watch: &'static str,
        stream: impl Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    ) where
        T: Resource + Debug + Send + 'static,
    {
        self.watch(watch, stream, owners_of::<K, T>);
    }
}

/// The `K`s that own `object`.
pub fn owners_of<K, T>(object: T) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()>,
    T: Resource,
{
    let namespace = object.meta().namespace.as_deref();
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter_map(|owner| ObjectRef::from_owner_ref(namespace, owner, ()))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    use super::*;

    fn owner(api_version: &str, kind: &str, name: &str) -> OwnerReference {
        OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            ..Default::default()
        }
    }

    #[test]
    fn an_owned_object_wakes_its_owner_of_the_right_kind_in_its_namespace() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("dichvucong-7d9f".into()),
                namespace: Some("so-noi-vu".into()),
                owner_references: Some(vec![
                    owner("apps/v1", "ReplicaSet", "dichvucong"),
                    owner("govpaas.io/v1alpha1", "Portal", "dichvucong"),
                    owner("apps/v1beta2", "ReplicaSet", "old"),
                ]),
                ..Default::default()
            },
            ..Default::default()
        };
        let owners = owners_of::<ReplicaSet, _>(pod);
        assert_eq!(owners, vec![ObjectRef::new("dichvucong").within("so-noi-vu")]);
    }

    #[tokio::test]
    async fn a_trigger_wakes_what_its_objects_map_to_and_survives_errors() {
        let (mut triggers, mut woken) = Triggers::<ConfigMap>::new("test");
        let events: Vec<Result<&str, watcher::Error>> = vec![Ok("a"), Err(watcher::Error::NoResourceVersion), Ok("b")];
        triggers.watch("test", futures::stream::iter(events), |name: &str| [ObjectRef::new(name).within("ns")]);
        assert_eq!(woken.next().await, Some(ObjectRef::new("a").within("ns")));
        assert_eq!(woken.next().await, Some(ObjectRef::new("b").within("ns")));
    }
}
