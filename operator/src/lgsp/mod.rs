//! The LGSP gateway's own credentials, which the operator issues and keeps.
//!
//! The gateway serves `https://<Platform spec.lgsp.host>` (default `lgsp.<baseDomain>`) with a
//! TLS server certificate issued **directly by the issuing platform CA** (the platform root's name
//! constraint permits the base domain; no tenant owns the gateway's host). It lives in the Secret
//! [`GATEWAY_TLS_SECRET`] of the operator's namespace (`kubernetes.io/tls`: `tls.crt` the leaf and
//! the platform CA, `tls.key`, `ca.crt` the platform trust bundle — which is also the gateway's
//! trust for client certificates). Its ECDSA P-256 key also signs the audit checkpoints: the
//! certificate names the signer, and `govpaas-gateway audit verify` takes every certificate the
//! gateway held (docs/lgsp.md).
//!
//! The Secret is kept, renewed at the Platform's renewal percent, repaired when damaged and
//! re-issued from the new CA during a CA rotation, by the same [`keep_or_issue`] as every other
//! leaf. The platform-trust controller drives it (the `trust` module): it already holds
//! the Platform and the issuing CA on every pass and is woken by every change of the trust state;
//! the rotation's census counts this Secret by its [`COMPONENT`] label, so a rotation waits for it.

pub mod national;
pub mod tables;

use std::collections::BTreeMap;

use govpaas_crds::platform::PlatformSpec;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use kube::{Api, Client};
use time::OffsetDateTime;

use crate::certificates::TlsMaterial;
use crate::certificates::leaf::{Issuer, Leaf, LeafSpec, Stored, keep_or_issue};
use crate::certificates::trust_store::PlatformTrust;
use crate::error::Result;
use crate::reconcile::apply::Applier;
use crate::reconcile::labels;
use govpaas_pki::IssuancePolicy;

/// The gateway's TLS (and checkpoint-signing) Secret, in the operator's namespace.
pub const GATEWAY_TLS_SECRET: &str = "govpaas-gateway-tls";
/// The component label of that Secret: what the CA rotation's census selects.
pub const COMPONENT: &str = "lgsp-gateway";

/// The label every namespace carries with its own name: how a policy selects the operator's.
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A NetworkPolicy (`metadata`) admitting the LGSP gateway's Pods (in `operator_namespace`) to the
/// Pods `pods` selects, on `port`/`protocol` only: how a provided API's or an exchange endpoint's
/// Pods become reachable from the gateway and from nothing else the policy names.
pub fn gateway_ingress_policy(
    metadata: ObjectMeta,
    pods: BTreeMap<String, String>,
    operator_namespace: &str,
    port: IntOrString,
    protocol: &str,
) -> NetworkPolicy {
    let (gateway_key, gateway_value) = govpaas_crds::lgsp::GATEWAY_POD_LABEL;
    let selector =
        |labels: BTreeMap<String, String>| LabelSelector { match_labels: Some(labels), ..Default::default() };
    NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector(pods)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    namespace_selector: Some(selector(BTreeMap::from([(
                        NAMESPACE_NAME_LABEL.to_owned(),
                        operator_namespace.to_owned(),
                    )]))),
                    pod_selector: Some(selector(BTreeMap::from([(gateway_key.to_owned(), gateway_value.to_owned())]))),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(port),
                    protocol: Some(protocol.to_owned()),
                    ..Default::default()
                }]),
            }]),
            egress: None,
        }),
    }
}

/// The gateway's public host name: `Platform spec.lgsp.host`, or `lgsp.<baseDomain>`.
pub fn gateway_host(platform: &PlatformSpec) -> String {
    match &platform.lgsp.host {
        Some(host) => host.clone(),
        None => format!("lgsp.{}", platform.base_domain),
    }
}

/// The Secret holding `material`, applied only over the version it was decided from.
pub fn gateway_secret(namespace: &str, material: &TlsMaterial) -> Secret {
    let entry = |value: &str| k8s_openapi::ByteString(value.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta {
            name: Some(GATEWAY_TLS_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::owned_labels(COMPONENT, "gateway")),
            resource_version: material.decided_from.clone(),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), entry(&material.tls_crt)),
            ("tls.key".to_owned(), entry(&material.tls_key)),
            ("ca.crt".to_owned(), entry(&material.ca_crt)),
        ])),
        ..Default::default()
    }
}

/// Keeps the gateway's certificate for `platform`'s gateway host, or issues it from the issuing
/// platform CA: pure ([`keep_or_issue`]).
pub fn decide(
    stored: Option<&Secret>,
    platform: &PlatformSpec,
    trust: &PlatformTrust,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> std::result::Result<Leaf, govpaas_pki::Error> {
    let issuer = Issuer { ca: &trust.issuing, trust: &trust.anchors, trust_pem: &trust.bundle_pem, policy };
    let spec = LeafSpec::Server { dns_names: vec![gateway_host(platform)] };
    keep_or_issue(Stored::of(stored), &spec, &issuer, now)
}

/// Reads the gateway's Secret in `namespace`, keeps or re-issues it, and applies it.
/// `Ok(Err(message))` when the certificate cannot be issued (a host outside the platform CA's
/// domain…); a conflict (the Secret changed since it was read) is an `Err` retried at once.
pub async fn ensure_certificate(
    client: &Client,
    namespace: &str,
    platform: &PlatformSpec,
    trust: &PlatformTrust,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> Result<std::result::Result<Leaf, String>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let stored = secrets.get_opt(GATEWAY_TLS_SECRET).await?;
    let leaf = match decide(stored.as_ref(), platform, trust, policy, now) {
        Ok(leaf) => leaf,
        Err(err) => {
            return Ok(Err(format!(
                "cannot issue the LGSP gateway's certificate for {}: {err}",
                gateway_host(platform)
            )));
        }
    };
    let desired = gateway_secret(namespace, &leaf.material);
    if !holds(stored.as_ref(), &desired) {
        Applier::new(client.clone()).apply(&desired).await?;
    }
    Ok(Ok(leaf))
}

/// Whether `stored` already says what `desired` says (its keys, type and the operator's labels;
/// what others added beside them is theirs, and an apply would not remove it): a kept certificate
/// is not applied again, so a restart over a converged platform writes nothing.
fn holds(stored: Option<&Secret>, desired: &Secret) -> bool {
    let mut content = desired.clone();
    // The version it was decided from is the apply's precondition, not what it says.
    content.metadata.resource_version = None;
    match (stored.map(serde_json::to_value), serde_json::to_value(&content)) {
        (Some(Ok(stored)), Ok(desired)) => crate::reconcile::apply::says_all_of(&stored, &desired),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::certificates::leaf::Issued;
    use govpaas_pki::{PlatformCaRequest, TrustAnchors, generate_platform_ca};

    fn platform_spec(host: Option<&str>) -> PlatformSpec {
        let mut spec: PlatformSpec =
            serde_json::from_value(serde_json::json!({"baseDomain": "danang.gov.vn"})).unwrap();
        spec.lgsp.host = host.map(str::to_owned);
        spec
    }

    fn trust(now: OffsetDateTime) -> PlatformTrust {
        let ca =
            generate_platform_ca(&PlatformCaRequest::new("danang.gov.vn", "govpaas"), &IssuancePolicy::default(), now)
                .unwrap();
        let bundle_pem = ca.certificate_pem().to_owned();
        let anchors = TrustAnchors::from_pem(bundle_pem.as_bytes()).unwrap();
        PlatformTrust { issuing: ca, retiring: None, bundle_pem, anchors }
    }

    fn secret_of(leaf: &Leaf) -> Secret {
        let mut secret = gateway_secret("govpaas-system", &leaf.material);
        secret.metadata.resource_version = Some("7".into());
        secret
    }

    #[test]
    fn a_kept_certificate_is_not_applied_again() {
        let now = OffsetDateTime::now_utc();
        let trust = trust(now);
        let policy = IssuancePolicy::default();
        let leaf = decide(None, &platform_spec(None), &trust, &policy, now).unwrap();
        let stored = secret_of(&leaf);
        let kept = decide(Some(&stored), &platform_spec(None), &trust, &policy, now).unwrap();
        assert!(holds(Some(&stored), &gateway_secret("govpaas-system", &kept.material)));
        assert!(!holds(None, &gateway_secret("govpaas-system", &kept.material)));
        // A label taken off by hand, or other data, is put right.
        let mut unlabelled = stored.clone();
        unlabelled.metadata.labels = None;
        assert!(!holds(Some(&unlabelled), &gateway_secret("govpaas-system", &kept.material)));
        // A key someone added beside the operator's is theirs: no reason to apply again.
        let mut annotated = stored.clone();
        annotated.data.as_mut().unwrap().insert("note".into(), k8s_openapi::ByteString(b"x".to_vec()));
        assert!(holds(Some(&annotated), &gateway_secret("govpaas-system", &kept.material)));
        let other = decide(None, &platform_spec(Some("lgsp.other.danang.gov.vn")), &trust, &policy, now).unwrap();
        assert!(!holds(Some(&stored), &gateway_secret("govpaas-system", &other.material)));
    }

    #[test]
    fn the_gateway_certificate_is_a_server_certificate_of_the_platform_ca_for_the_lgsp_host() {
        let now = OffsetDateTime::now_utc();
        let trust = trust(now);
        let policy = IssuancePolicy::default();
        assert_eq!(gateway_host(&platform_spec(None)), "lgsp.danang.gov.vn");
        let leaf = decide(None, &platform_spec(None), &trust, &policy, now).unwrap();
        assert_eq!(leaf.issued, Some(Issued::New));
        let chain = govpaas_pki::verify::chain_from_pem("tls.crt", leaf.material.tls_crt.as_bytes()).unwrap();
        assert_eq!(chain.len(), 2, "the leaf and the platform CA");
        govpaas_pki::verify::verify_server_chain(&chain, &trust.anchors, "lgsp.danang.gov.vn", now).unwrap();
        assert_eq!(leaf.material.ca_crt, trust.bundle_pem);

        let secret = secret_of(&leaf);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(secret.metadata.labels.as_ref().unwrap()[labels::COMPONENT], COMPONENT);
        // Kept while healthy; renewed when due; re-issued for another host or when damaged.
        let kept = decide(Some(&secret), &platform_spec(None), &trust, &policy, now + Duration::days(1)).unwrap();
        assert_eq!((kept.issued, kept.material.decided_from.as_deref()), (None, Some("7")));
        let renewed = decide(Some(&secret), &platform_spec(None), &trust, &policy, now + Duration::days(61)).unwrap();
        assert_eq!(renewed.issued, Some(Issued::Renewal));
        let moved =
            decide(Some(&secret), &platform_spec(Some("lienthong.danang.gov.vn")), &trust, &policy, now).unwrap();
        assert!(matches!(moved.issued, Some(Issued::Replaced(_))), "{moved:?}");
        // A new platform CA (a rotation's re-issue phase): re-issued from it.
        let rotated = decide(Some(&secret), &platform_spec(None), &self::trust(now), &policy, now).unwrap();
        assert!(matches!(rotated.issued, Some(Issued::Replaced(_))), "{rotated:?}");
        // A host outside the platform's domain cannot be issued.
        assert!(decide(None, &platform_spec(Some("lgsp.example.org")), &trust, &policy, now).is_err());
    }
}
