//! The service pipeline's (`crate::service::pipeline`) error paths on one Portal reconcile, against a mocked API server
//! (tower-test, as kube-rs's controller-rs fixtures do): a conflict, a quota refusal, a missing
//! status subresource and a timeout. The mock answers what a real API server would for a tenant
//! whose CAs are issued (the tenant CA's Secret; the platform trust is published as the trust
//! controller publishes it), echoes applies,
//! records every write, and fails or hangs the one request a test names.

use std::sync::{Arc, Mutex};

use govpaas_crds::Portal;
use govpaas_crds::metadata::TENANT_LABEL;
use http::{Method, Request, Response};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::client::Body;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::reconcile::Caches;
use crate::certificates::ca_secrets::{issuance_policy, tenant_ca_secret_name};
use crate::certificates::published::{self, TrustSubscriber};
use crate::certificates::trust_store::PlatformTrust;
use crate::error::Error;
use crate::fixtures;
use crate::reconcile::runner;
use crate::service::pipeline;
use crate::service::runtime::{ServiceContext, Shared, all_listed};
use crate::settings::Settings;
use crate::tenancy::TenantContext;
use govpaas_pki::{PlatformCaRequest, TenantCaRequest, TrustAnchors, generate_platform_ca};

const OPERATOR_NAMESPACE: &str = "govpaas-system";

/// What the mock does with a request the test singles out.
#[derive(Clone, Copy)]
enum Fault {
    /// Answer with this status code and message.
    Status(u16, &'static str),
    /// Never answer.
    Hang,
}

/// A request the mock saw: method, path and JSON body.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    body: Value,
}

impl Seen {
    fn is_write(&self) -> bool {
        self.method != Method::GET && !self.path.contains("/events")
    }
}

/// A Secret holding a CA.
fn ca_secret(name: &str, certificate: &str, key: &str) -> Value {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(OPERATOR_NAMESPACE.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [("tls.crt", certificate), ("tls.key", key)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    serde_json::to_value(secret).unwrap()
}

/// The platform CA and the fixture tenant's CA it issued.
fn authorities() -> (govpaas_pki::CertificateAuthority, govpaas_pki::CertificateAuthority) {
    let platform = fixtures::platform();
    let context = TenantContext::of(&fixtures::tenant(), &platform);
    let policy = issuance_policy(&platform.spec).unwrap();
    let now = OffsetDateTime::now_utc();
    let issuing =
        generate_platform_ca(&PlatformCaRequest::new(&platform.spec.base_domain, "Trung tâm"), &policy, now).unwrap();
    let request = TenantCaRequest {
        base_domain: platform.spec.base_domain.clone(),
        agency_code: context.agency_code.clone(),
        display_name: context.display_name.clone(),
        domain: context.domain.clone(),
    };
    let tenant_ca = issuing.issue_tenant_ca(&request, &policy, now).unwrap();
    (issuing, tenant_ca)
}

/// The platform trust the trust controller would publish for `issuing`.
fn published(issuing: govpaas_pki::CertificateAuthority) -> TrustSubscriber {
    let bundle_pem = issuing.certificate_pem().to_owned();
    let anchors = TrustAnchors::from_pem(bundle_pem.as_bytes()).unwrap();
    let (publisher, subscriber) = published::channel();
    publisher.publish(Ok(Arc::new(PlatformTrust { issuing, retiring: None, bundle_pem, anchors })));
    // Kept open: a closed channel reads as a trust controller that stopped.
    std::mem::forget(publisher);
    subscriber
}

/// The objects the mock serves by path suffix: the tenant CA's Secret (the platform CA comes
/// from the trust controller's publication, never from the API).
fn served(tenant_ca: &govpaas_pki::CertificateAuthority) -> Vec<(String, Value)> {
    let context = TenantContext::of(&fixtures::tenant(), &fixtures::platform());
    let secret = tenant_ca_secret_name(&context.name);
    let stored = ca_secret(&secret, tenant_ca.certificate_pem(), tenant_ca.private_key_pem().expose());
    vec![(format!("/secrets/{secret}"), stored)]
}

/// `object` as the API server returns it: a status apply names no metadata, a stored object has it.
fn stored(mut object: Value) -> Value {
    if object.get("metadata").is_none() {
        object["metadata"] = json!({"name": "stored"});
    }
    object
}

fn respond(status: u16, body: &Value) -> Response<Body> {
    Response::builder().status(status).body(Body::from(serde_json::to_vec(body).unwrap())).unwrap()
}

fn failure(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": code,
           "reason": if code == 404 { "NotFound" } else { "Failure" }})
}

/// Runs the mock API server: `fault` applies to the first request whose method and path it
/// matches; every request is recorded in `seen`.
fn api_server(
    fault: Option<(Method, &'static str, Fault)>,
    served: Vec<(String, Value)>,
) -> (kube::Client, Arc<Mutex<Vec<Seen>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = seen.clone();
    tokio::spawn(async move {
        let mut hung = Vec::new();
        let mut fault = fault;
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            recorded.lock().unwrap().push(Seen { method: method.clone(), path: path.clone(), body: body.clone() });
            if let Some((_, _, injected)) = fault.take_if(|(m, suffix, _)| *m == method && path.ends_with(*suffix)) {
                match injected {
                    Fault::Status(code, message) => send.send_response(respond(code, &failure(code, message))),
                    Fault::Hang => hung.push(send),
                }
                continue;
            }
            let response = match method {
                Method::GET => match served.iter().find(|(suffix, _)| path.ends_with(suffix.as_str())) {
                    Some((_, object)) => respond(200, object),
                    None => respond(404, &failure(404, "not found")),
                },
                Method::POST => respond(201, &stored(body)),
                // A status apply returns the whole object.
                _ if path.ends_with("/status") => {
                    let mut portal = serde_json::to_value(fixtures::portal()).unwrap();
                    portal["status"] = body["status"].clone();
                    respond(200, &portal)
                }
                // An apply: the object as stored is the object applied.
                _ => respond(200, &stored(body)),
            };
            send.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), seen)
}

fn store_of<K: kube::Resource<DynamicType = ()> + Clone>(objects: Vec<K>) -> Store<K> {
    let (store, mut writer) = reflector::store();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    store
}

/// The pipeline's context for the fixture Portal's tenant, on `client`.
fn context(client: kube::Client, platform_trust: TrustSubscriber) -> Arc<ServiceContext<Caches>> {
    let tenant = fixtures::tenant();
    let namespace = PartialObjectMeta::<Namespace> {
        types: None,
        metadata: ObjectMeta {
            name: Some("so-noi-vu".into()),
            labels: Some([(TENANT_LABEL.to_owned(), "so-noi-vu".to_owned())].into()),
            ..Default::default()
        },
        _phantom: Default::default(),
    };
    let settings = Settings {
        tenant_selector: None,
        operator_namespace: OPERATOR_NAMESPACE.into(),
        concurrency: 1,
        instance: None,
        telemetry: Default::default(),
    };
    let shared = Arc::new(Shared {
        publisher: crate::reconcile::events::Publisher::new(client.clone(), None),
        status_writes: Default::default(),
        applied: Default::default(),
        tenant_cas: Default::default(),
        client,
        settings,
        platforms: store_of(vec![fixtures::platform()]),
        tenants: store_of(vec![DeserializeGuard(Ok(tenant))]),
        namespaces: store_of(vec![namespace]),
        quotas: store_of(vec![]),
        tenant_ca_secrets: store_of(vec![]),
        portals: store_of(vec![DeserializeGuard(Ok(fixtures::portal()))]),
        documents: store_of(vec![]),
        data_sharing: store_of(vec![]),
        route_tables_orphaned: Default::default(),
        exchange_tables_orphaned: Default::default(),
        known_tenants: Default::default(),
        listed: all_listed(),
        platform_trust,
    });
    let caches = Caches {
        deployments: store_of(vec![]),
        services: store_of(vec![]),
        ingresses: store_of(vec![]),
        pod_disruption_budgets: store_of(vec![]),
        secrets: store_of(vec![]),
    };
    Arc::new(ServiceContext {
        shared,
        caches,
        known: Default::default(),
        owned_listed: crate::reconcile::shared::Listed::done(),
    })
}

async fn reconcile_portal(fault: Option<(Method, &'static str, Fault)>) -> (crate::error::Result<Action>, Vec<Seen>) {
    let (issuing, tenant_ca) = authorities();
    let (client, seen) = api_server(fault, served(&tenant_ca));
    let portal = Arc::new(DeserializeGuard(Ok::<Portal, _>(fixtures::portal())));
    let result = runner::bounded(pipeline::reconcile(portal, context(client, published(issuing)))).await;
    let seen = seen.lock().unwrap().clone();
    (result, seen)
}

fn status_writes(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter().filter(|s| s.path.ends_with("/portals/dichvucong/status")).collect()
}

fn ready_of(status_write: &Seen) -> &Value {
    let conditions = status_write.body["status"]["conditions"].as_array().expect("conditions");
    conditions.iter().find(|c| c["type"] == "Ready").expect("a Ready condition")
}

#[tokio::test]
async fn the_world_the_mock_serves_reconciles_to_a_written_status() {
    // The baseline the error paths depart from: everything applied, the status written once.
    let (result, seen) = reconcile_portal(None).await;
    assert!(result.is_ok(), "{result:?}");
    let applied: Vec<&str> = seen.iter().filter(|s| s.method == Method::PATCH).map(|s| s.path.as_str()).collect();
    for kind in
        ["/secrets/dichvucong-portal-tls", "/services/", "/deployments/", "/ingresses/", "/poddisruptionbudgets/"]
    {
        assert!(applied.iter().any(|p| p.contains(kind)), "{kind} not applied: {applied:?}");
    }
    let writes = status_writes(&seen);
    assert_eq!(writes.len(), 1, "{seen:?}");
    assert_eq!(ready_of(writes[0])["reason"], "Progressing", "the echoed Deployment has no ready replica");
    // The platform CA and the trust state are the trust controller's to read: a service reconcile
    // issues with what it published.
    let reads: Vec<&str> = seen.iter().filter(|s| s.method == Method::GET).map(|s| s.path.as_str()).collect();
    assert!(reads.iter().all(|path| !path.contains("/configmaps/") && !path.contains("platform-ca")), "{reads:?}");
}

#[tokio::test]
async fn a_conflict_reconciles_again_at_once_and_writes_no_status() {
    let conflict = Fault::Status(409, "the object has been modified; please apply your changes to the latest version");
    let (result, seen) = reconcile_portal(Some((Method::PATCH, "/secrets/dichvucong-portal-tls", conflict))).await;
    assert_eq!(result.expect("a conflict is not an error"), Action::requeue(std::time::Duration::ZERO));
    assert!(status_writes(&seen).is_empty(), "no status from a decision on stale data: {seen:?}");
    assert!(
        !seen.iter().any(|s| s.path.contains("/deployments/") && s.method == Method::PATCH),
        "stopped at the conflict"
    );
}

#[tokio::test]
async fn a_quota_refusal_is_a_condition_and_an_event_not_an_error() {
    let refused = Fault::Status(
        403,
        "deployments.apps \"dichvucong-portal\" is forbidden: exceeded quota: govpaas-quota, requested: pods=2, used: pods=4, limited: pods=4",
    );
    let (result, seen) = reconcile_portal(Some((Method::PATCH, "/deployments/dichvucong-portal", refused))).await;
    assert_eq!(result.expect("the user's to fix, not retried hot"), Action::requeue(pipeline::RESYNC));
    let writes = status_writes(&seen);
    assert_eq!(writes.len(), 1, "{seen:?}");
    let ready = ready_of(writes[0]);
    assert_eq!((ready["status"].as_str(), ready["reason"].as_str()), (Some("False"), Some("QuotaExceeded")));
    assert!(ready["message"].as_str().unwrap().contains("limited: pods=4"), "{ready}");
    let events: Vec<&Seen> = seen.iter().filter(|s| s.path.contains("/events")).collect();
    assert!(events.iter().any(|e| e.body["reason"] == "QuotaExceeded" && e.body["type"] == "Warning"), "{events:?}");
}

#[tokio::test]
async fn a_missing_status_subresource_is_the_operators_error_and_retried() {
    let missing = Fault::Status(404, "the server could not find the requested resource");
    let (result, seen) = reconcile_portal(Some((Method::PATCH, "/portals/dichvucong/status", missing))).await;
    let error = result.expect_err("a status that cannot be written is an error");
    assert!(matches!(&error, Error::Kube(kube::Error::Api(status)) if status.code == 404), "{error:?}");
    assert_eq!(error.metric_label(), "Kube");
    assert_eq!(status_writes(&seen).len(), 1, "tried once, then left to the runner's backoff");
}

#[tokio::test(start_paused = true)]
async fn a_hung_request_times_out_and_writes_nothing() {
    // The one read left is the tenant CA's Secret (not loaded in this process yet): the Portal's
    // own objects come from its caches.
    let hung = "/secrets/govpaas-tenant-ca-so-noi-vu";
    assert!(hung.ends_with(&tenant_ca_secret_name("so-noi-vu")), "the fixture tenant's CA Secret");
    let (result, seen) = reconcile_portal(Some((Method::GET, hung, Fault::Hang))).await;
    let error = result.expect_err("cancelled");
    assert!(matches!(error, Error::Timeout(after) if after == runner::RECONCILE_TIMEOUT), "{error:?}");
    assert_eq!(error.metric_label(), "Timeout");
    assert!(!seen.iter().any(Seen::is_write), "nothing half-done: {seen:?}");
}
