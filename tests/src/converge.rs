//! Support for the converge benchmark (`tests/examples/converge_bench.rs`): what the operator wrote
//! for a province, captured from the API server, and the same writes replayed by a raw writer.
//!
//! **What the operator wrote** is read back from each object's `managedFields`: the entry of the
//! operator's field manager (not a status one) lists exactly the fields its last apply set, so
//! [`owned_fields`] prunes the stored object down to them — the operator's own applied
//! configuration, as its pure builders made it, without a single field the API server or another
//! controller added. The raw writer applies those, under the operator's field manager, with the
//! operator's credentials, and nothing else.

use std::collections::BTreeMap;

use kube::api::DynamicObject;
use kube::discovery::{Discovery, verbs};
use kube::{Api, Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The operator's field managers: everything it applies, and the tenant census's.
pub const OPERATOR_MANAGERS: &[&str] = &["govpaas.io/operator", "govpaas.io/tenant-census"];

/// One object as the operator last wrote it, and what it was in the benchmark's first cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrittenObject {
    pub api_version: String,
    pub kind: String,
    /// The resource's plural, for the dynamic API.
    pub plural: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The object's uid in the first cluster (owner references name it).
    pub uid: String,
    pub resource_version: String,
    /// The fields the operator's field manager owns, as a server-side apply body (apiVersion,
    /// kind, name and namespace included).
    pub applied: Value,
}

/// The fields `fields` (a managedFields entry's `fieldsV1`) selects out of `value`: `f:<name>`
/// selects a map field, `k:{…}` a list item by its key fields, `v:<json>` a set item by value,
/// `i:<n>` a list item by index; an empty selection (`{}`) takes the whole value (a scalar, or an
/// atomic map or list).
pub fn select(value: &Value, fields: &Value) -> Value {
    let Some(selection) = fields.as_object().filter(|s| s.keys().any(|k| k != ".")) else {
        return value.clone();
    };
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, sub) in selection {
                if let Some(name) = key.strip_prefix("f:")
                    && let Some(field) = map.get(name)
                {
                    out.insert(name.to_owned(), select(field, sub));
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut picked = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let chosen = selection.iter().find(|(key, _)| item_matches(key, index, item));
                if let Some((key, sub)) = chosen {
                    let mut selected = select(item, sub);
                    // A keyed item keeps its key fields, or it could not be merged.
                    if let (Some(keys), Some(object)) = (key_fields(key), selected.as_object_mut()) {
                        for (k, v) in keys {
                            object.entry(k).or_insert(v);
                        }
                    }
                    picked.push(selected);
                }
            }
            Value::Array(picked)
        }
        scalar => scalar.clone(),
    }
}

fn key_fields(key: &str) -> Option<Map<String, Value>> {
    key.strip_prefix("k:").and_then(|json| serde_json::from_str::<Map<String, Value>>(json).ok())
}

fn item_matches(key: &str, index: usize, item: &Value) -> bool {
    if let Some(keys) = key_fields(key) {
        return keys.iter().all(|(k, v)| item.get(k) == Some(v));
    }
    if let Some(json) = key.strip_prefix("v:") {
        return serde_json::from_str::<Value>(json).is_ok_and(|v| &v == item);
    }
    key.strip_prefix("i:").and_then(|i| i.parse::<usize>().ok()) == Some(index)
}

/// The fields of `object` the operator's field manager set by its last apply (or update), outside
/// status, as a server-side apply body; `None` when the operator wrote none of it.
pub fn owned_fields(object: &Value) -> Option<Value> {
    let entries = object.pointer("/metadata/managedFields")?.as_array()?;
    let mut applied: Option<Value> = None;
    for entry in entries {
        let manager = entry.get("manager").and_then(Value::as_str).unwrap_or_default();
        let subresource = entry.get("subresource").and_then(Value::as_str).unwrap_or_default();
        if !OPERATOR_MANAGERS.contains(&manager) || !subresource.is_empty() {
            continue;
        }
        let Some(fields) = entry.get("fieldsV1") else { continue };
        let selected = select(object, fields);
        applied = Some(match applied {
            Some(mut merged) => {
                merge(&mut merged, selected);
                merged
            }
            None => selected,
        });
    }
    let mut applied = applied?;
    let out = applied.as_object_mut()?;
    out.remove("status");
    out.insert("apiVersion".into(), object["apiVersion"].clone());
    out.insert("kind".into(), object["kind"].clone());
    let metadata = out.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if let Some(metadata) = metadata.as_object_mut() {
        metadata.insert("name".into(), object["metadata"]["name"].clone());
        if let Some(ns) = object["metadata"].get("namespace") {
            metadata.insert("namespace".into(), ns.clone());
        }
    }
    Some(applied)
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// Every object, of every kind the API server lists (events left out), that one of the
/// operator's field managers wrote: the operator's whole output.
pub async fn written_by_operator(client: &Client) -> anyhow::Result<Vec<WrittenObject>> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if !capabilities.supports_operation(verbs::LIST) || matches!(resource.kind.as_str(), "Event") {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let Ok(list) = api.list(&Default::default()).await else { continue };
            for object in list.items {
                let value = serde_json::to_value(&object)?;
                let Some(mut applied) = owned_fields(&value) else { continue };
                applied["apiVersion"] = Value::String(resource.api_version.clone());
                applied["kind"] = Value::String(resource.kind.clone());
                out.push(WrittenObject {
                    api_version: resource.api_version.clone(),
                    kind: resource.kind.clone(),
                    plural: resource.plural.clone(),
                    namespace: object.namespace(),
                    name: object.name_any(),
                    uid: object.uid().unwrap_or_default(),
                    resource_version: object.resource_version().unwrap_or_default(),
                    applied,
                });
            }
        }
    }
    Ok(out)
}

impl WrittenObject {
    /// `Kind namespace/name`, or `Kind name` when cluster-scoped.
    pub fn key(&self) -> String {
        object_key(&self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
pub fn object_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}

/// `govpaas_api_requests_total` of a `/metrics` text: (verb, resource) → requests.
pub fn api_requests(metrics: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines().filter(|l| l.starts_with("govpaas_api_requests_total{")) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let label = |name: &str| {
            let start = series.find(&format!("{name}=\""))? + name.len() + 2;
            let len = series[start..].find('"')?;
            Some(series[start..start + len].to_owned())
        };
        if let (Some(verb), Some(resource), Ok(value)) = (label("verb"), label("resource"), value.parse::<f64>()) {
            *out.entry((verb, resource)).or_insert(0.0) += value;
        }
    }
    out
}

/// The queue wait (`govpaas_reconcile_queue_wait_seconds`) of every controller together: how
/// long objects waited from the event that asked for them to the start of their reconcile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct QueueWait {
    pub count: f64,
    pub mean_seconds: f64,
    /// The upper bound of the histogram bucket holding the median, and the 99th percentile.
    pub p50_seconds: f64,
    pub p99_seconds: f64,
}

impl QueueWait {
    pub fn of(metrics: &str) -> Self {
        let name = "govpaas_reconcile_queue_wait_seconds";
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        let (mut count, mut sum) = (0.0, 0.0);
        for line in metrics.lines().filter(|l| l.starts_with(name)) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            if series.starts_with(&format!("{name}_count")) {
                count += value;
            } else if series.starts_with(&format!("{name}_sum")) {
                sum += value;
            } else if let Some(start) = series.find("le=\"") {
                let le = &series[start + 4..];
                let le = &le[..le.find('"').unwrap_or(le.len())];
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().unwrap_or(f64::INFINITY) };
                // Keyed by the bound's bits: bounds are positive, so their order is the bits' order.
                buckets.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += value;
            }
        }
        let quantile = |q: f64| {
            buckets
                .values()
                .find(|(_, cumulative)| *cumulative >= q * count && count > 0.0)
                .map_or(0.0, |(bound, _)| *bound)
        };
        QueueWait {
            count,
            mean_seconds: if count > 0.0 { sum / count } else { 0.0 },
            p50_seconds: quantile(0.5),
            p99_seconds: quantile(0.99),
        }
    }
}

/// How `requests` ([`api_requests`]) add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RequestTotals {
    pub all: f64,
    pub reads: f64,
    pub watches: f64,
    /// Every write: applies, patches, creates, updates and deletes.
    pub writes: f64,
    /// Writes to status subresources.
    pub status_writes: f64,
    /// Events recorded.
    pub event_writes: f64,
    /// Leader election's Lease renewals.
    pub lease_writes: f64,
    pub secret_reads: f64,
    pub applies: f64,
}

impl RequestTotals {
    pub fn of(requests: &BTreeMap<(String, String), f64>) -> Self {
        let mut t = RequestTotals::default();
        for ((verb, resource), n) in requests {
            t.all += n;
            match verb.as_str() {
                "watch" => t.watches += n,
                "get" | "list" => {
                    t.reads += n;
                    if resource == "secrets" {
                        t.secret_reads += n;
                    }
                }
                "other" => {}
                _ => {
                    t.writes += n;
                    if verb == "apply" {
                        t.applies += n;
                    }
                    if resource.ends_with("/status") {
                        t.status_writes += n;
                    } else if resource == "events" || resource.starts_with("events.") {
                        t.event_writes += n;
                    } else if resource.starts_with("leases.") {
                        t.lease_writes += n;
                    }
                }
            }
        }
        t
    }

    /// Writes of the objects themselves: not status, events or the leader Lease.
    pub fn object_writes(&self) -> f64 {
        self.writes - self.status_writes - self.event_writes - self.lease_writes
    }

    /// The change from `before` to `self`.
    pub fn since(&self, before: &RequestTotals) -> RequestTotals {
        RequestTotals {
            all: self.all - before.all,
            reads: self.reads - before.reads,
            watches: self.watches - before.watches,
            writes: self.writes - before.writes,
            status_writes: self.status_writes - before.status_writes,
            event_writes: self.event_writes - before.event_writes,
            lease_writes: self.lease_writes - before.lease_writes,
            secret_reads: self.secret_reads - before.secret_reads,
            applies: self.applies - before.applies,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_operators_fields_are_selected_out_of_the_stored_object() {
        let stored = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "namespace": "ns", "uid": "u1", "resourceVersion": "7", "generation": 2,
                "labels": {"app": "web", "added-by-someone": "x"},
                "annotations": {"deployment.kubernetes.io/revision": "1"},
                "ownerReferences": [{"apiVersion": "govpaas.io/v1alpha1", "kind": "Portal", "name": "p", "uid": "o1", "controller": true}],
                "managedFields": [
                    {"manager": "govpaas.io/operator", "operation": "Apply", "fieldsV1": {
                        "f:metadata": {"f:labels": {"f:app": {}}, "f:ownerReferences": {"k:{\"uid\":\"o1\"}": {}}},
                        "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                            "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:args": {}}
                        }}}}
                    }},
                    {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}},
                    {"manager": "govpaas.io/operator", "operation": "Apply", "subresource": "status", "fieldsV1": {"f:status": {"f:x": {}}}}
                ]
            },
            "spec": {
                "replicas": 1, "revisionHistoryLimit": 10,
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "args": ["a", "b"], "terminationMessagePath": "/dev/termination-log"},
                    {"name": "sidecar", "image": "other"}
                ]}}
            },
            "status": {"x": 1, "replicas": 1}
        });
        let applied = owned_fields(&stored).unwrap();
        assert_eq!(
            applied,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {
                    "name": "web", "namespace": "ns", "labels": {"app": "web"},
                    "ownerReferences": [{"apiVersion": "govpaas.io/v1alpha1", "kind": "Portal", "name": "p", "uid": "o1", "controller": true}]
                },
                "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "nginx", "args": ["a", "b"]}]}}}
            })
        );
    }

    #[test]
    fn set_items_and_objects_the_operator_never_wrote() {
        let stored = json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "finalizers": ["x", "y"],
                "managedFields": [{"manager": "govpaas.io/operator", "operation": "Apply",
                    "fieldsV1": {"f:metadata": {"f:finalizers": {".": {}, "v:\"y\"": {}}}}}]},
        });
        assert_eq!(owned_fields(&stored).unwrap()["metadata"]["finalizers"], json!(["y"]));
        let foreign = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s",
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:data": {}}}]}});
        assert_eq!(owned_fields(&foreign), None);
        let status_only = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s",
            "managedFields": [{"manager": "govpaas.io/operator", "subresource": "status", "fieldsV1": {"f:status": {}}}]}});
        assert_eq!(owned_fields(&status_only), None);
    }

    #[test]
    fn the_queue_wait_of_every_controller_adds_up() {
        let metrics = "govpaas_reconcile_queue_wait_seconds_sum{controller=\"tenant\"} 3.0\n\
            govpaas_reconcile_queue_wait_seconds_count{controller=\"tenant\"} 4\n\
            govpaas_reconcile_queue_wait_seconds_bucket{le=\"0.5\",controller=\"tenant\"} 2\n\
            govpaas_reconcile_queue_wait_seconds_bucket{le=\"1.0\",controller=\"tenant\"} 3\n\
            govpaas_reconcile_queue_wait_seconds_bucket{le=\"+Inf\",controller=\"tenant\"} 4\n\
            govpaas_reconcile_queue_wait_seconds_sum{controller=\"portal\"} 1.0\n\
            govpaas_reconcile_queue_wait_seconds_count{controller=\"portal\"} 4\n\
            govpaas_reconcile_queue_wait_seconds_bucket{le=\"0.5\",controller=\"portal\"} 4\n\
            govpaas_reconcile_queue_wait_seconds_bucket{le=\"1.0\",controller=\"portal\"} 4\n\
            govpaas_reconcile_queue_wait_seconds_bucket{le=\"+Inf\",controller=\"portal\"} 4\n";
        let wait = QueueWait::of(metrics);
        assert_eq!((wait.count, wait.mean_seconds, wait.p50_seconds), (8.0, 0.5, 0.5));
        assert_eq!(wait.p99_seconds, f64::INFINITY);
        assert_eq!(QueueWait::of(""), QueueWait::default());
    }

    #[test]
    fn request_totals_sort_writes_from_reads() {
        let metrics = "# HELP govpaas_api_requests Requests\n\
            govpaas_api_requests_total{verb=\"apply\",resource=\"deployments.apps\"} 10\n\
            govpaas_api_requests_total{verb=\"apply\",resource=\"tenants.govpaas.io/status\"} 4\n\
            govpaas_api_requests_total{verb=\"create\",resource=\"events.events.k8s.io\"} 3\n\
            govpaas_api_requests_total{verb=\"update\",resource=\"leases.coordination.k8s.io\"} 2\n\
            govpaas_api_requests_total{verb=\"get\",resource=\"secrets\"} 5\n\
            govpaas_api_requests_total{verb=\"list\",resource=\"tenants.govpaas.io\"} 1\n\
            govpaas_api_requests_total{verb=\"watch\",resource=\"tenants.govpaas.io\"} 1\n\
            govpaas_reconciles_total{controller=\"tenant\"} 9\n";
        let totals = RequestTotals::of(&api_requests(metrics));
        assert_eq!(totals.all, 26.0);
        assert_eq!(totals.writes, 19.0);
        assert_eq!(totals.object_writes(), 10.0);
        assert_eq!((totals.reads, totals.secret_reads, totals.watches, totals.applies), (6.0, 5.0, 1.0, 14.0));
        assert_eq!(totals.since(&totals).all, 0.0);
    }
}
