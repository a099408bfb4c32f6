//! A service's desired objects as one typed set per kind: each owned kind is a field of the
//! kind's `Desired` struct and of its `Caches` struct, and [`DesiredSet::owned`] pairs them by an
//! exhaustive destructuring of both — so an owned kind added to one and forgotten in the other
//! does not compile, and what is applied is exactly what pruning keeps.

use std::borrow::Cow;
use std::sync::Arc;

use futures::future::BoxFuture;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::Store;

use crate::error::Result;
use crate::reconcile::apply::{Applicable, Applier, CacheOf};

/// Who the owned objects belong to: the controller and the one object of its kind.
pub struct OwnedKey<'a> {
    /// The controller's component label.
    pub component: &'a str,
    /// The owner's name (the instance label).
    pub name: &'a str,
    /// The owner's uid (its owner references).
    pub uid: &'a str,
}

/// One owned kind of a service: what the service wants of it, and how what is no longer wanted
/// goes.
pub trait OwnedKind: Send + Sync {
    /// Applies every wanted object of this kind, in order.
    fn apply<'a>(&'a self, applier: &'a mut Applier) -> BoxFuture<'a, Result<()>>;
    /// Deletes the objects of this kind that the owner made before and this reconcile did not
    /// apply; returns their `namespace/name`s.
    fn prune<'a>(&'a self, applier: &'a Applier, owner: &'a OwnedKey<'a>) -> BoxFuture<'a, Result<Vec<String>>>;
}

/// An owned kind with owner references, pruned by label and owner from the cache of that kind
/// (of whole objects or of their metadata, `C`); an object the cache shows already right is not
/// applied again.
pub struct Owned<'a, K: Applicable, C: CacheOf<K> = PartialObjectMeta<K>> {
    pub wanted: Cow<'a, [K]>,
    pub cached: &'a Store<C>,
}

impl<'a, K: Applicable, C: CacheOf<K>> Owned<'a, K, C> {
    /// `wanted`: a slice of the desired set (or a list gathered from several of its fields).
    pub fn boxed(wanted: impl Into<Cow<'a, [K]>>, cached: &'a Store<C>) -> Box<dyn OwnedKind + 'a> {
        Box::new(Owned { wanted: wanted.into(), cached })
    }
}

impl<K: Applicable, C: CacheOf<K>> OwnedKind for Owned<'_, K, C> {
    fn apply<'a>(&'a self, applier: &'a mut Applier) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move { applier.apply_all_unless_current(&self.wanted, self.cached).await })
    }

    fn prune<'a>(&'a self, applier: &'a Applier, owner: &'a OwnedKey<'a>) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let cached: Vec<Arc<C>> = self.cached.state();
            applier.prune::<K, C>(&cached, owner.component, owner.name, owner.uid).await
        })
    }
}

/// A kind's desired objects, with the caches of what exists of each owned kind.
pub trait DesiredSet {
    /// The caches of the kind's owned objects, one field per owned kind.
    type Caches;

    /// Every owned kind, wanted objects paired with their cache, in the order they are applied
    /// (what is named is applied before what names it: a Secret before the Ingress that uses it).
    fn owned<'a>(&'a self, caches: &'a Self::Caches) -> Vec<Box<dyn OwnedKind + 'a>>;
}

/// Applies the set in order, then prunes, in reverse order, what the owner no longer wants.
/// Returns what was pruned.
pub async fn apply_and_prune<D: DesiredSet>(
    applier: &mut Applier,
    desired: &D,
    caches: &D::Caches,
    owner: &OwnedKey<'_>,
) -> Result<Vec<String>> {
    let kinds = desired.owned(caches);
    for kind in &kinds {
        kind.apply(applier).await?;
    }
    let mut pruned = Vec::new();
    for kind in kinds.iter().rev() {
        pruned.extend(kind.prune(applier, owner).await?);
    }
    Ok(pruned)
}
