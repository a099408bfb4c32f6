//! Counting, during a rotation, where the cluster's trust bundles and certificates stand. Pure:
//! the controller lists the objects and hands them over.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;

use crate::certificates::trust_state::Census;
use crate::lgsp;
use crate::reconcile::labels;
use govpaas_pki::verify::chain_from_pem;
use govpaas_pki::{ChainAnchor, TrustRotation};

/// How many waited-for objects status names.
pub const WAITING_FOR_SHOWN: usize = 10;

/// The bundle key of trust bundle ConfigMaps and certificate Secrets.
const BUNDLE_KEY: &str = "ca.crt";

/// Where the cluster stands in `rotation`: `bundles` are the tenants' trust bundle ConfigMaps,
/// `tenant_cas` the tenant CA Secrets and `leaves` the certificate Secrets of services. A leaf or
/// tenant CA that cannot be parsed counts as chaining to neither CA: its controller re-issues it
/// anyway, and it must not hold the rotation up.
pub fn census(rotation: &TrustRotation, bundles: &[ConfigMap], tenant_cas: &[Secret], leaves: &[Secret]) -> Census {
    let bundle = rotation.bundle_pem();
    let mut census = Census::default();
    let mut waiting = Vec::new();
    let distributing = matches!(rotation, TrustRotation::Distributing { .. });
    let classifier = rotation.classifier();

    for config_map in bundles {
        let current = config_map.data.as_ref().and_then(|d| d.get(BUNDLE_KEY)).is_some_and(|pem| *pem == bundle);
        if !current {
            census.bundles_pending += 1;
            if distributing {
                waiting.push(format!("{} (trust bundle)", path(config_map)));
            }
        }
    }
    for secret in leaves {
        let current = data(secret, BUNDLE_KEY).is_some_and(|pem| pem == bundle.as_bytes());
        if !current {
            census.bundles_pending += 1;
            if distributing {
                waiting.push(format!("{} (ca.crt)", path(secret)));
            }
        }
    }
    // Leaves of one tenant share its CA at the top of their chain: check each CA once.
    let mut known: HashMap<Vec<u8>, ChainAnchor> = HashMap::new();
    for secret in tenant_cas.iter().chain(leaves) {
        let chain = data(secret, "tls.crt").and_then(|pem| chain_from_pem("tls.crt", pem).ok()).unwrap_or_default();
        let anchor = match chain.last() {
            None => ChainAnchor::Unknown,
            Some(top) => {
                *known.entry(top.as_ref().to_vec()).or_insert_with(|| classifier.anchor_of(std::slice::from_ref(top)))
            }
        };
        match anchor {
            ChainAnchor::Old => {
                census.progress.on_old += 1;
                if !distributing {
                    waiting.push(path(secret));
                }
            }
            ChainAnchor::New => census.progress.on_new += 1,
            ChainAnchor::Unknown => census.progress.unknown += 1,
        }
    }
    waiting.sort();
    waiting.truncate(WAITING_FOR_SHOWN);
    census.waiting_for = waiting;
    census
}

/// Whether a managed Secret is a leaf the rotation waits for: a service's certificate in an agency's
/// namespace, or the LGSP gateway's in the operator's (the CA Secrets there are counted apart).
pub fn counted_leaf(secret: &Secret, operator_namespace: &str) -> bool {
    let gateway = secret.labels().get(labels::COMPONENT).map(String::as_str) == Some(lgsp::COMPONENT);
    secret.type_.as_deref() == Some("kubernetes.io/tls")
        && (gateway || secret.namespace().as_deref() != Some(operator_namespace))
}

fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret.data.as_ref()?.get(key).map(|value| value.0.as_slice())
}

fn path<K: kube::Resource>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;
    use time::OffsetDateTime;

    use super::*;
    use govpaas_pki::{
        BundleCa, CertificateAuthority, IssuancePolicy, PlatformCaRequest, ServerCertificateRequest, TenantCaRequest,
        generate_platform_ca,
    };

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn root() -> CertificateAuthority {
        generate_platform_ca(&PlatformCaRequest::new("danang.gov.vn", "govpaas"), &IssuancePolicy::default(), now())
            .unwrap()
    }

    fn tenant_ca(root: &CertificateAuthority) -> CertificateAuthority {
        let request = TenantCaRequest {
            base_domain: "danang.gov.vn".into(),
            agency_code: "H17.12".into(),
            display_name: "Sở Nội vụ".into(),
            domain: "sonoivu.danang.gov.vn".into(),
        };
        root.issue_tenant_ca(&request, &IssuancePolicy::default(), now()).unwrap()
    }

    fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..Default::default() },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    fn leaf(namespace: &str, ca: &CertificateAuthority, bundle: &str) -> Secret {
        let issued = ca
            .issue_server_certificate(
                &ServerCertificateRequest::new(["portal.sonoivu.danang.gov.vn".to_owned()]),
                &IssuancePolicy::default(),
                now(),
            )
            .unwrap();
        let data = issued.into_tls_secret(bundle);
        secret(namespace, "portal-tls", &[("tls.crt", &data.tls_crt), ("ca.crt", &data.ca_crt)])
    }

    fn bundle_map(namespace: &str, pem: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("govpaas-trust-bundle".into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(BUNDLE_KEY.to_owned(), pem.to_owned())])),
            ..Default::default()
        }
    }

    #[test]
    fn counts_bundles_behind_and_leaves_by_the_ca_they_chain_to() {
        let (old, new) = (root(), root());
        let rotation = TrustRotation::new(BundleCa::of(&old)).begin(BundleCa::of(&new), now()).unwrap();
        let both = rotation.bundle_pem();
        let (old_tenant, new_tenant) = (tenant_ca(&old), tenant_ca(&new));
        let ca_secret = |name: &str, ca: &CertificateAuthority| {
            secret("govpaas-system", name, &[("tls.crt", ca.certificate_pem())])
        };

        let bundles = [bundle_map("a", &both), bundle_map("b", old.certificate_pem())];
        let tenant_cas = [ca_secret("govpaas-tenant-ca-a", &old_tenant), ca_secret("govpaas-tenant-ca-b", &new_tenant)];
        // The LGSP gateway's certificate, issued by the platform CA itself, in the operator's namespace.
        let mut gateway = leaf("govpaas-system", &old, old.certificate_pem());
        gateway.metadata.name = Some(lgsp::GATEWAY_TLS_SECRET.into());
        gateway.metadata.labels = Some(labels::owned_labels(lgsp::COMPONENT, "gateway"));
        gateway.type_ = Some("kubernetes.io/tls".into());
        let mut platform_ca_secret = secret("govpaas-system", "govpaas-platform-ca", &[("tls.crt", "x")]);
        platform_ca_secret.type_ = Some("kubernetes.io/tls".into());
        let mut portal = leaf("a", &old_tenant, &both);
        portal.type_ = Some("kubernetes.io/tls".into());
        assert!(counted_leaf(&gateway, "govpaas-system"), "the gateway's certificate is counted");
        assert!(counted_leaf(&portal, "govpaas-system"));
        assert!(!counted_leaf(&platform_ca_secret, "govpaas-system"), "CA Secrets are counted apart");

        let leaves = [
            leaf("a", &old_tenant, &both),
            leaf("b", &new_tenant, old.certificate_pem()),
            secret("c", "garbage-tls", &[("tls.crt", "not a certificate"), ("ca.crt", &both)]),
            gateway,
        ];
        let distributing = census(&rotation, &bundles, &tenant_cas, &leaves);
        assert_eq!(distributing.bundles_pending, 3, "{distributing:?}");
        assert_eq!(
            distributing.waiting_for,
            vec![
                "b/govpaas-trust-bundle (trust bundle)",
                "b/portal-tls (ca.crt)",
                "govpaas-system/govpaas-gateway-tls (ca.crt)"
            ]
        );
        assert_eq!(distributing.progress.on_old, 3, "the gateway's certificate chains to the old CA");
        assert_eq!(distributing.progress.on_new, 2);
        assert_eq!(distributing.progress.unknown, 1, "garbage chains to neither CA");

        let reissuing = rotation.bundle_distributed(now() + time::Duration::hours(1), time::Duration::ZERO).unwrap();
        let counted = census(&reissuing, &bundles, &tenant_cas, &leaves);
        assert_eq!(
            counted.waiting_for,
            vec!["a/portal-tls", "govpaas-system/govpaas-gateway-tls", "govpaas-system/govpaas-tenant-ca-a"]
        );
    }
}
