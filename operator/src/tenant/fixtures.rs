//! YAML fixtures for the tenant controller's pure unit tests (`operator/tests/fixtures/`).

use std::path::PathBuf;

use govpaas_crds::{Platform, Tenant};
use serde::Deserialize;
use serde::de::DeserializeOwned;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(path(name)).unwrap_or_else(|err| panic!("fixture {name}: {err}"))
}

/// Every document of a multi-document YAML fixture, as `T`s, skipping those of other kinds.
pub fn documents<T: DeserializeOwned>(name: &str, kind: &str) -> Vec<T> {
    serde_yaml::Deserializer::from_str(&read(name))
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap_or_else(|err| panic!("fixture {name}: {err}")))
        .filter(|value| value.get("kind").and_then(|k| k.as_str()) == Some(kind))
        .map(|value| serde_yaml::from_value(value).unwrap_or_else(|err| panic!("fixture {name}: {kind}: {err}")))
        .collect()
}

/// One YAML document as `T`.
pub fn objects<T: DeserializeOwned>(name: &str) -> T {
    serde_yaml::from_str(&read(name)).unwrap_or_else(|err| panic!("fixture {name}: {err}"))
}

/// The Tenants of `province.yaml`, oldest first.
pub fn province() -> Vec<Tenant> {
    documents("province.yaml", "Tenant")
}

/// The Platform of `province.yaml`.
pub fn platform() -> Platform {
    documents("province.yaml", "Platform").pop().expect("a Platform in province.yaml")
}

/// References to each Tenant, as validation takes them.
pub fn refs(tenants: &[Tenant]) -> Vec<&Tenant> {
    tenants.iter().collect()
}
