//! The labels on every object govpaas creates.
//!
//! They follow Kubernetes' recommended `app.kubernetes.io/*` labels, so `kubectl get -l` and
//! dashboards find govpaas objects, and they are how the operator finds its own objects again:
//! its watchers select `managed-by`, and pruning selects `component` + `instance` within that.

use std::collections::BTreeMap;

pub const NAME: &str = "app.kubernetes.io/name";
pub const INSTANCE: &str = "app.kubernetes.io/instance";
pub const COMPONENT: &str = "app.kubernetes.io/component";
pub const PART_OF: &str = "app.kubernetes.io/part-of";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// `app.kubernetes.io/managed-by` on everything the operator creates.
pub const MANAGED_BY_OPERATOR: &str = "govpaas-operator";
/// `app.kubernetes.io/part-of` on everything the operator creates.
pub const PART_OF_GOVPAAS: &str = "govpaas";

/// Selects every object the operator manages: what its watchers cache.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY}={MANAGED_BY_OPERATOR}")
}

/// Selects the objects one controller (`component`) manages: what one controller's watchers cache.
pub fn component_selector(component: &str) -> String {
    format!("{MANAGED_BY}={MANAGED_BY_OPERATOR},{COMPONENT}={component}")
}

/// The labels of an object that controller `component` creates for the govpaas object `instance`.
pub fn owned_labels(component: &str, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME.to_owned(), format!("govpaas-{component}")),
        (INSTANCE.to_owned(), instance.to_owned()),
        (COMPONENT.to_owned(), component.to_owned()),
        (PART_OF.to_owned(), PART_OF_GOVPAAS.to_owned()),
        (MANAGED_BY.to_owned(), MANAGED_BY_OPERATOR.to_owned()),
    ])
}

/// Whether `labels` mark an object that controller `component` created for `instance`.
pub fn is_owned_by(labels: &BTreeMap<String, String>, component: &str, instance: &str) -> bool {
    labels.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_OPERATOR)
        && labels.get(COMPONENT).map(String::as_str) == Some(component)
        && labels.get(INSTANCE).map(String::as_str) == Some(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_labels_are_recognised() {
        let labels = owned_labels("tenant", "so-noi-vu");
        assert!(is_owned_by(&labels, "tenant", "so-noi-vu"));
        assert!(!is_owned_by(&labels, "tenant", "so-tai-chinh"));
        assert!(!is_owned_by(&labels, "portal", "so-noi-vu"));
        assert_eq!(labels[NAME], "govpaas-tenant");
        assert_eq!(
            component_selector("tenant"),
            "app.kubernetes.io/managed-by=govpaas-operator,app.kubernetes.io/component=tenant"
        );
    }
}
