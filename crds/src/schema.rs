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
