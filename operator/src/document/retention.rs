//! Keeping an agency's documents when their DocumentService, or the whole tenant, is deleted.
//!
//! The claim is owned by its DocumentService like every other child, so it goes with it (and with
//! the namespace). What keeps the documents is the PersistentVolume under the claim: as soon as the
//! claim binds, the operator sets the volume's `persistentVolumeReclaimPolicy` from
//! `spec.storage.deletePolicy` — `Retain` keeps the volume, and its data, when the claim is
//! deleted; `Delete` lets the provisioner remove both — and labels the volume with the agency, the
//! service and the claim, so that it can be found again (`kubectl get pv -l
//! govpaas.io/tenant=<tenant>`). The DocumentService does not start its Pods before the volume is
//! marked `Retain`, so no document is ever written to a volume that would be deleted with it.
//!
//! No finalizer is needed: the reclaim policy is set while the service runs, not at deletion, and
//! the volume controller honours it when the claim goes, whoever deletes it and whether or not the
//! operator is up. A finalizer would only make namespace deletion hang while the operator is down.
//!
//! A retained volume is re-attached by creating a DocumentService with the annotation
//! [`RESTORE_ANNOTATION`] naming the volume: the operator checks that the volume belongs to the
//! same agency and is free, points the volume's `claimRef` at the new claim (pre-binding it), and
//! creates the claim without `volumeName`: the volume controller binds the claim to the volume
//! pre-bound to it and provisions none. Tenant namespaces refuse a claim that names a volume or
//! selects volumes by label (ValidatingAdmissionPolicy `govpaas-tenant-volume-claims`), so the
//! pre-binding, which only the operator can write on the cluster-scoped volume, is the one way in.

use std::collections::BTreeMap;

use govpaas_crds::agency::normalise;
use govpaas_crds::document_service::DeletePolicy;
use govpaas_crds::metadata::{AGENCY_CODE_LABEL, TENANT_LABEL};
use govpaas_crds::quantity::{Amount, Style};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::tenancy::TenantContext;

/// Annotation on a new DocumentService: the name of a retained PersistentVolume whose documents it
/// takes over instead of getting an empty volume.
pub const RESTORE_ANNOTATION: &str = "govpaas.io/restore-from-volume";
/// Label on a document volume: the DocumentService it last served.
pub const SERVICE_LABEL: &str = "govpaas.io/document-service";
/// Label on a document volume: that DocumentService's namespace.
pub const NAMESPACE_LABEL: &str = "govpaas.io/document-namespace";
/// Selects the volumes the operator marked (with [`TENANT_LABEL`]): those that carry a service.
pub const CLAIM_LABEL_SELECTOR: &str = SERVICE_LABEL;
/// Annotation on a document volume: `<namespace>/<claim>`, the claim it last served.
pub const CLAIM_ANNOTATION: &str = "govpaas.io/claim";
/// Annotation on a document volume: the agency's name.
pub const AGENCY_NAME_ANNOTATION: &str = "govpaas.io/agency-name";
/// Annotation on a document volume: the DocumentService's `deletePolicy`.
pub const DELETE_POLICY_ANNOTATION: &str = "govpaas.io/delete-policy";

/// Annotation the operator puts on a released, retained volume once it has announced it (an Event
/// naming the volume and how to restore it): `<namespace>/<claim>` of the claim it was released by.
pub const ANNOUNCED_ANNOTATION: &str = "govpaas.io/retained-from";

/// The reclaim policy that implements a delete policy.
pub fn reclaim_policy(policy: DeletePolicy) -> &'static str {
    match policy {
        DeletePolicy::Retain => "Retain",
        DeletePolicy::Delete => "Delete",
    }
}

/// Which claim a document volume serves.
#[derive(Clone, Copy, Debug)]
pub struct VolumeOwner<'a> {
    pub tenant: &'a TenantContext,
    pub namespace: &'a str,
    pub service: &'a str,
    pub claim: &'a str,
    pub policy: DeletePolicy,
}

/// The fields the operator owns on a bound document volume (a server-side apply body): the
/// reclaim policy, and the labels and annotations that say whose documents it holds.
pub fn volume_marking(volume_name: &str, owner: &VolumeOwner<'_>) -> PersistentVolume {
    let labels = BTreeMap::from([
        (TENANT_LABEL.to_owned(), owner.tenant.name.clone()),
        (AGENCY_CODE_LABEL.to_owned(), owner.tenant.agency_code.clone()),
        (SERVICE_LABEL.to_owned(), owner.service.to_owned()),
        (NAMESPACE_LABEL.to_owned(), owner.namespace.to_owned()),
    ]);
    let annotations = BTreeMap::from([
        (CLAIM_ANNOTATION.to_owned(), format!("{}/{}", owner.namespace, owner.claim)),
        (AGENCY_NAME_ANNOTATION.to_owned(), owner.tenant.display_name.clone()),
        (DELETE_POLICY_ANNOTATION.to_owned(), reclaim_policy(owner.policy).to_owned()),
    ]);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume_name.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            persistent_volume_reclaim_policy: Some(reclaim_policy(owner.policy).to_owned()),
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether the volume already carries the reclaim policy and marking of `owner`.
pub fn is_marked(volume: &PersistentVolume, owner: &VolumeOwner<'_>) -> bool {
    let want = volume_marking(volume.metadata.name.as_deref().unwrap_or_default(), owner);
    let has_all = |have: &Option<BTreeMap<String, String>>, want: &Option<BTreeMap<String, String>>| {
        want.iter().flatten().all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some(reclaim_policy(owner.policy))
        && has_all(&volume.metadata.labels, &want.metadata.labels)
        && has_all(&volume.metadata.annotations, &want.metadata.annotations)
}

/// What a restore needs to know about the new claim.
#[derive(Clone, Copy, Debug)]
pub struct RestoreTarget<'a> {
    pub tenant: &'a TenantContext,
    pub namespace: &'a str,
    pub claim: &'a str,
    /// The storage the DocumentService asks for.
    pub size: Amount,
}

/// Checks that `volume` may be re-attached to the claim of `target`: it holds the documents of the
/// same agency, it is free (released by its old claim, or already promised to this one), it is not
/// being deleted, and it is large enough. The message says what is wrong and what to do.
pub fn check_restorable(volume: &PersistentVolume, target: &RestoreTarget<'_>) -> Result<(), String> {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let labels = volume.metadata.labels.clone().unwrap_or_default();
    if volume.metadata.deletion_timestamp.is_some() {
        return Err(format!("PersistentVolume {name} is being deleted"));
    }
    let tenant = labels.get(TENANT_LABEL);
    let agency = labels.get(AGENCY_CODE_LABEL);
    // Agency codes are compared normalised: `H49.12` and `000.00.12.H49` are one agency.
    let same_agency = agency.is_some_and(|code| normalise(code) == normalise(&target.tenant.agency_code));
    if tenant != Some(&target.tenant.name) || !same_agency {
        return Err(format!(
            "PersistentVolume {name} does not hold documents of tenant {} (agency {}): only a volume labelled {TENANT_LABEL}={} and {AGENCY_CODE_LABEL}={} by govpaas can be restored here",
            target.tenant.name, target.tenant.agency_code, target.tenant.name, target.tenant.agency_code
        ));
    }
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let promised_here = claim_ref
        .is_some_and(|c| c.namespace.as_deref() == Some(target.namespace) && c.name.as_deref() == Some(target.claim));
    match phase {
        "Released" | "Available" => {}
        "Bound" if promised_here => {}
        other => {
            let holder = claim_ref
                .map(|c| format!("{}/{}", c.namespace.as_deref().unwrap_or("?"), c.name.as_deref().unwrap_or("?")))
                .unwrap_or_else(|| "another claim".to_owned());
            return Err(format!(
                "PersistentVolume {name} is {other} (claim {holder}): only a Released or Available volume can be restored; delete the DocumentService that uses it first"
            ));
        }
    }
    let capacity = volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Amount::of(q).ok());
    if let Some(capacity) = capacity
        && target.size > capacity
    {
        return Err(format!(
            "PersistentVolume {name} holds {}, less than spec.storage.size {}: set storage.size to at most {}",
            capacity.format(Style::Binary),
            target.size.format(Style::Binary),
            capacity.format(Style::Binary)
        ));
    }
    Ok(())
}

/// The volume's storage class, which the new claim must name to bind it.
pub fn storage_class_of(volume: &PersistentVolume) -> Option<String> {
    volume.spec.as_ref().and_then(|s| s.storage_class_name.clone())
}

/// Whether the volume's `claimRef` already promises it to a claim of this name that does not
/// exist yet (no uid). A reference with a uid is the old claim's, even under the same name: a
/// DocumentService re-created with its old name, or a tenant re-created with its old namespace.
pub fn is_promised_to(volume: &PersistentVolume, namespace: &str, claim: &str) -> bool {
    volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some_and(|c| {
        c.namespace.as_deref() == Some(namespace) && c.name.as_deref() == Some(claim) && c.uid.is_none()
    })
}

/// A server-side apply body that promises the volume to the claim `namespace/claim`. `claimRef` is
/// atomic, so applying it replaces the old claim's reference (and its uid) whole; the volume
/// controller then binds the volume to the new claim when it appears, and to no other.
pub fn promise_to_claim(volume_name: &str, namespace: &str, claim: &str) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta { name: Some(volume_name.to_owned()), ..Default::default() },
        spec: Some(PersistentVolumeSpec {
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace.to_owned()),
                name: Some(claim.to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Where a volume's data is: its name, size, and the storage behind it when the volume says
/// (`hostPath /tmp/hostpath_pv/…`, a CSI driver's volume handle).
pub fn where_stored(volume: &PersistentVolume) -> String {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let spec = volume.spec.as_ref();
    let mut details = Vec::new();
    if let Some(size) = spec.and_then(|s| s.capacity.as_ref()).and_then(|c| c.get("storage")) {
        details.push(size.0.clone());
    }
    if let Some(host_path) = spec.and_then(|s| s.host_path.as_ref()) {
        details.push(format!("hostPath {}", host_path.path));
    }
    if let Some(csi) = spec.and_then(|s| s.csi.as_ref()) {
        details.push(format!("CSI {} volume {}", csi.driver, csi.volume_handle));
    }
    if details.is_empty() {
        format!("PersistentVolume {name}")
    } else {
        format!("PersistentVolume {name} ({})", details.join(", "))
    }
}

/// The `StorageBound` condition's reason and message once the claim is bound to `volume` and the
/// volume carries the service's reclaim policy.
pub fn bound_message(claim: &str, volume: &PersistentVolume, policy: DeletePolicy) -> (&'static str, String) {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    match policy {
        DeletePolicy::Retain => (
            "VolumeRetained",
            format!(
                "claim {claim} is bound to {}; reclaimPolicy Retain keeps it, with the documents, when this DocumentService or its tenant is deleted; a new DocumentService takes it over with the annotation {RESTORE_ANNOTATION}: {name}",
                where_stored(volume)
            ),
        ),
        DeletePolicy::Delete => (
            "VolumeBound",
            format!(
                "claim {claim} is bound to {}; deletePolicy Delete: the volume and the documents are deleted with this DocumentService",
                where_stored(volume)
            ),
        ),
    }
}

/// For a volume the operator marked, now released by its claim and retained, and not announced
/// yet: the Event's note saying whose documents it holds and how to restore them, with the value
/// of [`ANNOUNCED_ANNOTATION`] that records the announcement.
pub fn retained_announcement(volume: &PersistentVolume) -> Option<(String, String)> {
    let labels = volume.metadata.labels.as_ref()?;
    let annotations = volume.metadata.annotations.clone().unwrap_or_default();
    let tenant = labels.get(TENANT_LABEL)?;
    let claim = annotations.get(CLAIM_ANNOTATION)?;
    let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    let retained = volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Retain");
    if !released || !retained || annotations.get(ANNOUNCED_ANNOTATION) == Some(claim) {
        return None;
    }
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let service = match (labels.get(NAMESPACE_LABEL), labels.get(SERVICE_LABEL)) {
        (Some(namespace), Some(service)) => format!("DocumentService {namespace}/{service}"),
        _ => format!("claim {claim}"),
    };
    let agency = annotations.get(AGENCY_NAME_ANNOTATION).map(|a| format!(", {a}")).unwrap_or_default();
    Some((
        format!(
            "the documents of {service} (tenant {tenant}{agency}) are retained in {} after its claim {claim} was deleted; restore them by creating a DocumentService in a namespace of tenant {tenant} with the annotation {RESTORE_ANNOTATION}: {name}",
            where_stored(volume)
        ),
        claim.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PersistentVolumeStatus;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::fixtures;

    fn tenant() -> TenantContext {
        TenantContext::of(&fixtures::tenant(), &fixtures::platform())
    }

    fn owner(tenant: &TenantContext, policy: DeletePolicy) -> VolumeOwner<'_> {
        VolumeOwner { tenant, namespace: "so-noi-vu", service: "van-ban", claim: "van-ban-docs-data", policy }
    }

    fn released(name: &str, marking: &PersistentVolume, phase: &str, capacity: &str) -> PersistentVolume {
        let mut volume = marking.clone();
        volume.metadata.name = Some(name.into());
        let spec = volume.spec.get_or_insert_with(Default::default);
        spec.capacity = Some(BTreeMap::from([("storage".to_owned(), Quantity(capacity.into()))]));
        spec.storage_class_name = Some("standard".into());
        spec.claim_ref = Some(ObjectReference {
            namespace: Some("so-noi-vu".into()),
            name: Some("van-ban-docs-data".into()),
            uid: Some("old-claim".into()),
            ..Default::default()
        });
        volume.status = Some(PersistentVolumeStatus { phase: Some(phase.into()), ..Default::default() });
        volume
    }

    #[test]
    fn marking_says_whose_documents_and_keeps_them() {
        let tenant = tenant();
        let marking = volume_marking("pvc-1", &owner(&tenant, DeletePolicy::Retain));
        assert_eq!(marking.spec.as_ref().unwrap().persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
        let labels = marking.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[TENANT_LABEL], "so-noi-vu");
        assert_eq!(labels[AGENCY_CODE_LABEL], "H49.12");
        assert_eq!(labels[SERVICE_LABEL], "van-ban");
        assert_eq!(marking.metadata.annotations.as_ref().unwrap()[CLAIM_ANNOTATION], "so-noi-vu/van-ban-docs-data");
        let json = serde_json::to_value(&marking).unwrap();
        // Nothing else of the volume is claimed by the apply.
        assert_eq!(json["spec"], serde_json::json!({"persistentVolumeReclaimPolicy": "Retain"}));

        let volume = released("pvc-1", &marking, "Bound", "10Gi");
        assert!(is_marked(&volume, &owner(&tenant, DeletePolicy::Retain)));
        assert!(!is_marked(&volume, &owner(&tenant, DeletePolicy::Delete)));
    }

    #[test]
    fn only_a_free_volume_of_the_same_agency_large_enough_is_restorable() {
        let tenant = tenant();
        let marking = volume_marking("pvc-1", &owner(&tenant, DeletePolicy::Retain));
        let target = RestoreTarget {
            tenant: &tenant,
            namespace: "so-noi-vu",
            claim: "van-ban-moi-docs-data",
            size: Amount::parse("10Gi").unwrap(),
        };
        assert_eq!(check_restorable(&released("pvc-1", &marking, "Released", "10Gi"), &target), Ok(()));

        let bound = check_restorable(&released("pvc-1", &marking, "Bound", "10Gi"), &target).unwrap_err();
        assert!(bound.contains("is Bound (claim so-noi-vu/van-ban-docs-data)"), "{bound}");

        let small = check_restorable(&released("pvc-1", &marking, "Released", "5Gi"), &target).unwrap_err();
        assert!(small.contains("set storage.size to at most 5Gi"), "{small}");

        let mut other_agency = tenant.clone();
        other_agency.agency_code = "H49.13".into();
        let foreign = RestoreTarget { tenant: &other_agency, ..target };
        let err = check_restorable(&released("pvc-1", &marking, "Released", "10Gi"), &foreign).unwrap_err();
        assert!(err.contains("does not hold documents of tenant so-noi-vu (agency H49.13)"), "{err}");

        let mut unmarked = released("pvc-2", &marking, "Released", "10Gi");
        unmarked.metadata.labels = None;
        assert!(check_restorable(&unmarked, &target).is_err());
    }

    #[test]
    fn a_released_retained_volume_is_announced_once() {
        let tenant = tenant();
        let marking = volume_marking("pvc-1", &owner(&tenant, DeletePolicy::Retain));
        let mut volume = released("pvc-1", &marking, "Released", "10Gi");
        volume.spec.as_mut().unwrap().host_path =
            Some(k8s_openapi::api::core::v1::HostPathVolumeSource { path: "/tmp/hostpath_pv/abc".into(), type_: None });
        let (note, claim) = retained_announcement(&volume).unwrap();
        assert!(note.starts_with("the documents of DocumentService so-noi-vu/van-ban (tenant so-noi-vu, Sở Nội vụ tỉnh Quảng Nam) are retained in PersistentVolume pvc-1 (10Gi, hostPath /tmp/hostpath_pv/abc)"), "{note}");
        assert!(note.ends_with("govpaas.io/restore-from-volume: pvc-1"), "{note}");
        assert_eq!(claim, "so-noi-vu/van-ban-docs-data");
        volume.metadata.annotations.as_mut().unwrap().insert(ANNOUNCED_ANNOTATION.into(), claim);
        assert!(retained_announcement(&volume).is_none(), "announced already");

        let bound = released("pvc-1", &marking, "Bound", "10Gi");
        assert!(retained_announcement(&bound).is_none());
        let deleting =
            released("pvc-2", &volume_marking("pvc-2", &owner(&tenant, DeletePolicy::Delete)), "Released", "1Gi");
        assert!(retained_announcement(&deleting).is_none(), "a Delete volume is going away");
    }

    #[test]
    fn bound_messages_say_where_and_what_happens_on_delete() {
        let tenant = tenant();
        let marking = volume_marking("pvc-1", &owner(&tenant, DeletePolicy::Retain));
        let volume = released("pvc-1", &marking, "Bound", "10Gi");
        let (reason, message) = bound_message("van-ban-docs-data", &volume, DeletePolicy::Retain);
        assert_eq!(reason, "VolumeRetained");
        assert!(message.contains("bound to PersistentVolume pvc-1 (10Gi)"), "{message}");
        assert!(message.contains("restore-from-volume: pvc-1"), "{message}");
        let (reason, message) = bound_message("van-ban-docs-data", &volume, DeletePolicy::Delete);
        assert_eq!(reason, "VolumeBound");
        assert!(message.contains("deleted with this DocumentService"), "{message}");
    }

    #[test]
    fn a_volume_promised_to_the_new_claim_stays_restorable_once_bound() {
        let tenant = tenant();
        let marking = volume_marking("pvc-1", &owner(&tenant, DeletePolicy::Retain));
        let mut volume = released("pvc-1", &marking, "Bound", "10Gi");
        let promise = promise_to_claim("pvc-1", "so-noi-vu", "moi-docs-data");
        volume.spec.as_mut().unwrap().claim_ref = promise.spec.unwrap().claim_ref;
        assert!(is_promised_to(&volume, "so-noi-vu", "moi-docs-data"));
        // The old claim's reference, under the very name the new claim will have, is no promise.
        let old = released("pvc-1", &marking, "Released", "10Gi");
        assert!(!is_promised_to(&old, "so-noi-vu", "van-ban-docs-data"));
        let target = RestoreTarget {
            tenant: &tenant,
            namespace: "so-noi-vu",
            claim: "moi-docs-data",
            size: Amount::parse("1Gi").unwrap(),
        };
        assert_eq!(check_restorable(&volume, &target), Ok(()));
        assert_eq!(storage_class_of(&volume).as_deref(), Some("standard"));
    }
}
