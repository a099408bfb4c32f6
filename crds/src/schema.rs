//! Schema pieces the derives cannot express on their own.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Longest quantity string accepted (`1.5Gi` is 5); bounds CEL's cost estimate.
pub const QUANTITY_MAX_LEN: u32 = 32;

/// A Kubernetes quantity: an integer or a string such as `500m` or `4Gi`, bounded in length.
/// Whether it parses, and its sign, are CEL rules on the field (`isQuantity`, `quantity(…)`).
pub fn quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "x-kubernetes-int-or-string": true,
        "anyOf": [{ "type": "integer" }, { "type": "string" }],
        "maxLength": QUANTITY_MAX_LEN,
    })
}

/// Standard `metav1.Condition`s, one per type (a list-map keyed by `type`, as the API conventions
/// ask, so server-side apply merges them by type).
pub fn conditions(generator: &mut SchemaGenerator) -> Schema {
    let condition = generator.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>();
    json_schema!({
        "type": "array",
        "items": condition,
        "maxItems": 32,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// `spec.admins.users` of a Tenant.
pub fn admin_users(_: &mut SchemaGenerator) -> Schema {
    admin_names(crate::tenant::SYSTEM_USER_MESSAGE)
}

/// `spec.admins.groups` of a Tenant.
pub fn admin_groups(_: &mut SchemaGenerator) -> Schema {
    admin_names(crate::tenant::SYSTEM_GROUP_MESSAGE)
}

/// A set of at most 32 user or group names, each 1–253 characters, never blank, never padded
/// with whitespace, never a `system:` identity (`system` says why), never with invisible
/// characters. The rules sit on the items, so a refusal names the item (`spec.admins.groups[1]`).
fn admin_names(system: &str) -> Schema {
    let visible = crate::common::visible_text();
    json_schema!({
        "type": "array",
        "maxItems": 32,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "x-kubernetes-validations": [
                { "rule": "self.trim() == self", "message": crate::tenant::ADMIN_WHITESPACE_MESSAGE },
                { "rule": format!("!self.startsWith('{}')", crate::tenant::SYSTEM_PREFIX), "message": system },
                serde_json::to_value(&visible).expect("a rule serialises"),
            ],
        },
    })
}
