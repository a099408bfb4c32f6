//! What wakes a DataSharingService besides a change of its own: another DataSharingService whose
//! change concerns its grants. The composition root (`controllers.rs`) watches every
//! DataSharingService once and asks these rules which others to wake; they are pure.
//!
//! When a DataSharingService changes its spec or goes away, these look again: the services of its
//! own agency (the API names and the `lgspApis` quota they share), the providers it consumes from
//! (whose route tables list it), before and after the change, and the services that consume from
//! its agency (whose grants it decides).

use std::collections::BTreeSet;
use std::sync::Arc;

use govpaas_crds::agency::normalise;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::service::runtime::DataSharingObject;

/// The agencies (normalised) a DataSharingService's grants involve: its own (`own`) and every
/// provider it consumes from.
pub fn involved_agencies(service: &DataSharingObject, own: Option<String>) -> BTreeSet<String> {
    let mut agencies: BTreeSet<String> = own.into_iter().collect();
    if let Ok(service) = &service.0 {
        agencies.extend(service.spec.consumes.iter().filter_map(|c| c.agency_code.as_deref()).map(normalise));
    }
    agencies
}

/// The DataSharingServices to wake when `changed` (of agency `own`) changed, its grants involving
/// `agencies` now or before: those of an involved agency, and those consuming from `own`.
/// `agency_of` gives a namespace's agency (normalised).
pub fn to_wake(
    changed: &DataSharingObject,
    own: Option<&String>,
    agencies: &BTreeSet<String>,
    services: &[Arc<DataSharingObject>],
    agency_of: impl Fn(&str) -> Option<String>,
) -> Vec<ObjectRef<DataSharingObject>> {
    services
        .iter()
        .filter(|service| service.meta().uid != changed.meta().uid)
        .filter(|service| {
            let Some(namespace) = service.namespace() else { return false };
            let provider_or_sibling = agency_of(&namespace).is_some_and(|code| agencies.contains(&code));
            let consumer = own.is_some_and(|own| {
                service.0.as_ref().is_ok_and(|s| {
                    s.spec.consumes.iter().any(|c| c.agency_code.as_deref().map(normalise).as_ref() == Some(own))
                })
            });
            provider_or_sibling || consumer
        })
        .map(|service| ObjectRef::from_obj(service.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use govpaas_crds::DataSharingService;
    use kube::core::DeserializeGuard;

    fn service(namespace: &str, name: &str, uid: &str, consumes_from: &[&str]) -> Arc<DataSharingObject> {
        let consumes: Vec<String> = consumes_from
            .iter()
            .map(|code| format!("{{name: c-{code}, agencyCode: \"{code}\", api: ho-tich}}"))
            .collect();
        let yaml = format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata: {{name: {name}, namespace: {namespace}, uid: {uid}}}\nspec:\n  consumes: [{}]\n",
            consumes.join(", ")
        );
        let service: DataSharingService = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
        Arc::new(DeserializeGuard(Ok(service)))
    }

    #[test]
    fn a_change_wakes_its_providers_its_siblings_and_its_consumers_in_either_code_form() {
        let agency = |ns: &str| match ns {
            "so-tu-phap" => Some("H49.14".to_owned()),
            "xa-a" => Some("H49.40".to_owned()),
            "xa-b" => Some("H49.41".to_owned()),
            "so-y-te" => Some("H49.15".to_owned()),
            _ => None,
        };
        // A commune consumes from the Department of Justice, the legacy way of writing its code.
        let changed = service("xa-a", "mot-cua", "u1", &["000.00.14.H49"]);
        let provider = service("so-tu-phap", "ho-tich", "u2", &[]);
        let sibling = service("xa-a", "khac", "u3", &[]);
        let consumer_of_commune = service("xa-b", "lay", "u4", &["H49.40"]);
        let unrelated = service("so-y-te", "y-te", "u5", &["H49.14"]);
        let all = vec![changed.clone(), provider, sibling, consumer_of_commune, unrelated];
        let own = agency("xa-a");
        let agencies = involved_agencies(&changed, own.clone());
        assert_eq!(agencies, BTreeSet::from(["H49.14".to_owned(), "H49.40".to_owned()]));
        let woken: Vec<String> =
            to_wake(&changed, own.as_ref(), &agencies, &all, agency).into_iter().map(|r| r.name).collect();
        assert_eq!(woken, ["ho-tich", "khac", "lay"]);
    }
}
