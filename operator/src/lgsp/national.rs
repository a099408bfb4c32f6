//! The gateway's side of the national platform (NDXP): one Secret, [`NDXP_SECRET`] in the
//! operator's namespace, which the chart mounts into the gateway (`gateway::national` reads it):
//!
//! - `url`: `Platform spec.lgsp.ndxp.url`;
//! - `ca.crt`: the `ca.crt` of the ConfigMap `lgsp.ndxp.caConfigMap` — the only CAs the gateway
//!   accepts for the NDXP's server certificate;
//! - `tls.crt`, `tls.key`: the province's client identity toward the NDXP. Either **provided**:
//!   copied from the Secret `lgsp.ndxp.clientSecretName`, which the national platform's CA issued
//!   to the province (the operator checks it and reports its expiry; the platform engineer renews
//!   it); or, when none is named, **issued here** for test environments: a client certificate for
//!   `spiffe://<base domain>/agency/<lgsp.ndxp.agencyCode>/lgsp/ndxp` from the tenant CA of the
//!   province's own Tenant (the one whose agency code is `lgsp.ndxp.agencyCode`; only a tenant CA
//!   issues agency identities), chaining to the platform CA — kept and renewed like every leaf.
//!
//! The trust controller drives it on every pass (it holds the Platform and the platform trust);
//! the Platform's condition `NationalPlatformReady` and `status.ndxp` say what is in force. With
//! no `lgsp.ndxp`, the Secret is deleted and the gateway stops national routes.

use std::collections::BTreeMap;

use govpaas_crds::platform::{NdxpStatus, NdxpUpstream, Platform};
use govpaas_crds::status::CertificateStatus;
use govpaas_pki::{IssuancePolicy, TrustAnchors, WorkloadIdentity};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ObjectMeta;
use time::OffsetDateTime;

use crate::certificates::leaf::{Issuer, Leaf, LeafSpec, Stored, keep_or_issue};
use crate::reconcile::Problem;
use crate::reconcile::conditions::time_of;
use crate::reconcile::labels;

/// The Secret the gateway mounts.
pub const NDXP_SECRET: &str = "govpaas-lgsp-ndxp";
/// Its component label.
pub const COMPONENT: &str = "lgsp-ndxp";
/// `status.ndxp.clientIdentity` when the Secret `clientSecretName` is in force.
pub const PROVIDED: &str = "Provided";
/// `status.ndxp.clientIdentity` when the operator issued the identity.
pub const ISSUED_BY_PLATFORM_CA: &str = "IssuedByPlatformCa";
/// The workload kind and name of the issued identity.
const IDENTITY: (&str, &str) = ("lgsp", "ndxp");

/// Why the national platform cannot be used: the reasons of `NationalPlatformReady`.
pub mod reasons {
    /// `lgsp.ndxp.caConfigMap` is missing or holds no usable `ca.crt`.
    pub const NDXP_CA_INVALID: &str = "NdxpCaInvalid";
    /// `lgsp.ndxp.clientSecretName` is missing, incomplete, expired or not a certificate and key.
    pub const CLIENT_IDENTITY_INVALID: &str = "ClientIdentityInvalid";
    /// No Tenant has the agency code `lgsp.ndxp.agencyCode`, so no tenant CA can issue the
    /// province's identity (and none was provided).
    pub const PROVINCE_TENANT_MISSING: &str = "ProvinceTenantMissing";
    /// Waiting for the province's tenant CA, or the platform CA.
    pub const PENDING: &str = "Pending";
    /// In force.
    pub const CONFIGURED: &str = "Configured";
}

/// The province's identity, as decided.
#[derive(Debug)]
pub struct ClientIdentity {
    /// [`PROVIDED`] or [`ISSUED_BY_PLATFORM_CA`].
    pub source: &'static str,
    pub tls_crt: String,
    pub tls_key: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub serial: String,
    /// The leaf, when issued here (for its Event and the resourceVersion it was decided from).
    pub issued: Option<Leaf>,
}

/// The NDXP's CAs from the ConfigMap `name` (as read, if it exists).
pub fn ndxp_ca(config_map: Option<&ConfigMap>, name: &str) -> Result<String, Problem> {
    let invalid = |message: String| Problem::new(reasons::NDXP_CA_INVALID, message);
    let config_map = config_map.ok_or_else(|| {
        invalid(format!(
            "the ConfigMap {name} (lgsp.ndxp.caConfigMap) does not exist in the operator's namespace: put the CAs that sign the national platform's server certificate in its ca.crt"
        ))
    })?;
    let pem = config_map
        .data
        .as_ref()
        .and_then(|data| data.get("ca.crt"))
        .ok_or_else(|| invalid(format!("the ConfigMap {name} (lgsp.ndxp.caConfigMap) has no key ca.crt")))?;
    TrustAnchors::from_pem(pem.as_bytes()).map_err(|err| {
        invalid(format!("the ca.crt of ConfigMap {name} (lgsp.ndxp.caConfigMap) cannot anchor trust: {err}"))
    })?;
    Ok(pem.clone())
}

/// Validity and serial of the first certificate of `pem`.
fn validity(pem: &[u8]) -> Result<(OffsetDateTime, OffsetDateTime, String), String> {
    let chain = govpaas_pki::verify::chain_from_pem("tls.crt", pem).map_err(|e| e.to_string())?;
    let first = chain.first().ok_or("tls.crt holds no certificate")?;
    let (_, certificate) = x509_parser::parse_x509_certificate(first).map_err(|e| format!("tls.crt: {e}"))?;
    let validity = certificate.validity();
    Ok((validity.not_before.to_datetime(), validity.not_after.to_datetime(), certificate.raw_serial_as_string()))
}

/// The province's identity from the Secret `name` (as read, if it exists): a certificate and the
/// key it certifies, valid now.
pub fn provided_identity(secret: Option<&Secret>, name: &str, now: OffsetDateTime) -> Result<ClientIdentity, Problem> {
    let invalid = |message: String| Problem::new(reasons::CLIENT_IDENTITY_INVALID, message);
    let secret = secret.ok_or_else(|| {
        invalid(format!(
            "the Secret {name} (lgsp.ndxp.clientSecretName) does not exist in the operator's namespace: put the client certificate the national platform issued to the province, and its key, in its tls.crt and tls.key"
        ))
    })?;
    let data = |key: &str| secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone());
    let (Some(crt), Some(key)) = (data("tls.crt"), data("tls.key")) else {
        return Err(invalid(format!("the Secret {name} (lgsp.ndxp.clientSecretName) lacks tls.crt or tls.key")));
    };
    let (not_before, not_after, serial) =
        validity(&crt).map_err(|err| invalid(format!("the Secret {name} (lgsp.ndxp.clientSecretName): {err}")))?;
    if now >= not_after {
        return Err(invalid(format!(
            "the province's client certificate in Secret {name} expired at {}: ask the national platform for a new one",
            time_of(not_after).0
        )));
    }
    // The key must be one rustls accepts for the certificate: what the gateway will present.
    let anchors = TrustAnchors::from_pem(&crt).ok();
    if let Some(anchors) = anchors
        && let Err(err) = govpaas_pki::tls::client_config(&anchors, Some((&crt, &key)))
    {
        return Err(invalid(format!(
            "the Secret {name} (lgsp.ndxp.clientSecretName) holds no usable certificate and key: {err}"
        )));
    }
    let text = |bytes: Vec<u8>, what: &str| {
        String::from_utf8(bytes).map_err(|_| invalid(format!("the {what} of Secret {name} is not PEM text")))
    };
    Ok(ClientIdentity {
        source: PROVIDED,
        tls_crt: text(crt, "tls.crt")?,
        tls_key: text(key, "tls.key")?,
        not_before,
        not_after,
        serial,
        issued: None,
    })
}

/// The identity the province's tenant CA issues it: `spiffe://<base>/agency/<code>/lgsp/ndxp`.
pub fn issued_identity_name(base_domain: &str, agency_code: &str) -> Result<WorkloadIdentity, govpaas_pki::Error> {
    govpaas_pki::AgencyIdentity::new(base_domain, agency_code)?.workload(IDENTITY.0, IDENTITY.1)
}

/// Keeps the issued identity in `stored` (the gateway's Secret, as read) or issues it from the
/// province's tenant CA (`issuer`): pure ([`keep_or_issue`]).
pub fn issued_identity(
    stored: Option<&Secret>,
    identity: WorkloadIdentity,
    issuer: &Issuer<'_>,
    now: OffsetDateTime,
) -> Result<ClientIdentity, govpaas_pki::Error> {
    // A provided identity in the stored Secret is not ours to keep: issue ours instead.
    let ours = stored.filter(|secret| source_of(secret) == Some(ISSUED_BY_PLATFORM_CA));
    let leaf = keep_or_issue(Stored::of(ours), &LeafSpec::Client { identity }, issuer, now)?;
    Ok(ClientIdentity {
        source: ISSUED_BY_PLATFORM_CA,
        tls_crt: leaf.material.tls_crt.clone(),
        tls_key: leaf.material.tls_key.clone(),
        not_before: leaf.not_before,
        not_after: leaf.not_after,
        serial: leaf.serial.clone(),
        issued: Some(leaf),
    })
}

/// The annotation saying which identity a stored Secret holds.
const SOURCE_ANNOTATION: &str = "govpaas.io/ndxp-client-identity";

fn source_of(secret: &Secret) -> Option<&str> {
    secret.metadata.annotations.as_ref()?.get(SOURCE_ANNOTATION).map(String::as_str)
}

/// The Secret the gateway mounts.
pub fn secret(namespace: &str, ndxp: &NdxpUpstream, ca_pem: &str, identity: &ClientIdentity) -> Secret {
    let entry = |value: &str| ByteString(value.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta {
            name: Some(NDXP_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::owned_labels(COMPONENT, "gateway")),
            annotations: Some(BTreeMap::from([(SOURCE_ANNOTATION.to_owned(), identity.source.to_owned())])),
            // An issued identity is applied only over the version it was decided from.
            resource_version: identity.issued.as_ref().and_then(|leaf| leaf.material.decided_from.clone()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            ("url".to_owned(), entry(&ndxp.url)),
            ("ca.crt".to_owned(), entry(ca_pem)),
            ("tls.crt".to_owned(), entry(&identity.tls_crt)),
            ("tls.key".to_owned(), entry(&identity.tls_key)),
        ])),
        ..Default::default()
    }
}

/// What `status.ndxp` says of `identity`.
pub fn status(identity: &ClientIdentity, policy: &IssuancePolicy) -> NdxpStatus {
    let renewal = govpaas_pki::renewal::renewal_time(identity.not_before, identity.not_after, policy.renewal);
    NdxpStatus {
        client_identity: identity.source.to_owned(),
        secret_name: NDXP_SECRET.to_owned(),
        certificate: Some(CertificateStatus {
            secret_name: Some(NDXP_SECRET.to_owned()),
            not_after: Some(time_of(identity.not_after)),
            serial: Some(identity.serial.clone()),
            renewal_time: Some(time_of(renewal)),
        }),
    }
}

/// The province's Tenant: the one whose agency code is `code` (either form).
pub fn province_tenant<'a>(
    tenants: impl IntoIterator<Item = &'a govpaas_crds::Tenant>,
    code: &str,
) -> Option<&'a govpaas_crds::Tenant> {
    let wanted = govpaas_crds::agency::normalise(code);
    tenants.into_iter().find(|tenant| govpaas_crds::agency::normalise(&tenant.spec.agency.code) == wanted)
}

/// Whether the Platform configures the national platform.
pub fn configured(platform: &Platform) -> Option<&NdxpUpstream> {
    platform.spec.lgsp.ndxp.as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use govpaas_pki::{ClientCertificateRequest, PlatformCaRequest, TenantCaRequest, generate_platform_ca};

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn config_map(data: Option<(&str, &str)>) -> ConfigMap {
        ConfigMap { data: data.map(|(k, v)| BTreeMap::from([(k.to_owned(), v.to_owned())])), ..Default::default() }
    }

    fn tls_secret(crt: &str, key: &str) -> Secret {
        Secret {
            data: Some(BTreeMap::from([
                ("tls.crt".to_owned(), ByteString(crt.as_bytes().to_vec())),
                ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
            ])),
            ..Default::default()
        }
    }

    /// A national CA and the client certificate it issued to the province H48.
    fn national() -> (govpaas_pki::CertificateAuthority, String, String) {
        let policy = IssuancePolicy::default();
        let national = generate_platform_ca(&PlatformCaRequest::new("ndxp.gov.vn", "NDXP"), &policy, now()).unwrap();
        let request = TenantCaRequest {
            base_domain: "ndxp.gov.vn".into(),
            agency_code: "H48".into(),
            display_name: "UBND thành phố Đà Nẵng".into(),
            domain: "danang.ndxp.gov.vn".into(),
        };
        let province = national.issue_tenant_ca(&request, &policy, now()).unwrap();
        let identity = province.agency().unwrap().workload("lgsp", "ndxp").unwrap();
        let leaf = province.issue_client_certificate(&ClientCertificateRequest { identity }, &policy, now()).unwrap();
        (national, leaf.chain_pem().to_owned(), leaf.private_key_pem().expose().to_owned())
    }

    #[test]
    fn the_ndxp_ca_must_exist_and_anchor_trust() {
        let (national, _, _) = national();
        let missing = ndxp_ca(None, "ndxp-ca").unwrap_err();
        assert_eq!(missing.reason, reasons::NDXP_CA_INVALID);
        assert!(
            missing.message.contains("ndxp-ca") && missing.message.contains("does not exist"),
            "{}",
            missing.message
        );
        let no_key =
            ndxp_ca(Some(&config_map(Some(("bundle.pem", national.certificate_pem())))), "ndxp-ca").unwrap_err();
        assert!(no_key.message.contains("no key ca.crt"), "{}", no_key.message);
        let garbage = ndxp_ca(Some(&config_map(Some(("ca.crt", "not a certificate")))), "ndxp-ca").unwrap_err();
        assert!(garbage.message.contains("cannot anchor trust"), "{}", garbage.message);
        assert_eq!(
            ndxp_ca(Some(&config_map(Some(("ca.crt", national.certificate_pem())))), "ndxp-ca").unwrap(),
            national.certificate_pem()
        );
    }

    #[test]
    fn a_provided_identity_is_a_current_certificate_with_its_key() {
        let (_, crt, key) = national();
        let identity = provided_identity(Some(&tls_secret(&crt, &key)), "ndxp-client", now()).unwrap();
        assert_eq!(identity.source, PROVIDED);
        assert!(identity.not_after > now() && !identity.serial.is_empty());
        assert!(identity.issued.is_none());

        let missing = provided_identity(None, "ndxp-client", now()).unwrap_err();
        assert_eq!(missing.reason, reasons::CLIENT_IDENTITY_INVALID);
        assert!(missing.message.contains("ndxp-client"), "{}", missing.message);
        let (_, _, other_key) = national();
        let mismatched = provided_identity(Some(&tls_secret(&crt, &other_key)), "ndxp-client", now()).unwrap_err();
        assert_eq!(mismatched.reason, reasons::CLIENT_IDENTITY_INVALID, "{}", mismatched.message);
        let later = now() + time::Duration::days(3650);
        let expired = provided_identity(Some(&tls_secret(&crt, &key)), "ndxp-client", later).unwrap_err();
        assert!(expired.message.contains("expired"), "{}", expired.message);
        let half = Secret { data: Some(BTreeMap::new()), ..Default::default() };
        assert!(provided_identity(Some(&half), "ndxp-client", now()).unwrap_err().message.contains("lacks tls.crt"));
    }

    #[test]
    fn an_issued_identity_is_kept_until_due_and_never_replaces_a_provided_one_in_place() {
        let policy = IssuancePolicy::default();
        let platform =
            generate_platform_ca(&PlatformCaRequest::new("danang.gov.vn", "govpaas"), &policy, now()).unwrap();
        let request = TenantCaRequest {
            base_domain: "danang.gov.vn".into(),
            agency_code: "H48".into(),
            display_name: "UBND thành phố Đà Nẵng".into(),
            domain: "ubnd.danang.gov.vn".into(),
        };
        let province = platform.issue_tenant_ca(&request, &policy, now()).unwrap();
        let trust_pem = platform.certificate_pem().to_owned();
        let trust = TrustAnchors::from_pem(trust_pem.as_bytes()).unwrap();
        let issuer = Issuer { ca: &province, trust: &trust, trust_pem: &trust_pem, policy: &policy };
        let name = issued_identity_name("danang.gov.vn", "H48").unwrap();
        assert_eq!(name.uri(), "spiffe://danang.gov.vn/agency/H48/lgsp/ndxp");

        let first = issued_identity(None, name.clone(), &issuer, now()).unwrap();
        assert_eq!(first.source, ISSUED_BY_PLATFORM_CA);
        assert!(first.issued.as_ref().unwrap().issued.is_some(), "issued");
        let ndxp = super::tests_support::ndxp();
        let stored = secret("govpaas-system", &ndxp, "ndxp ca", &first);
        assert_eq!(source_of(&stored), Some(ISSUED_BY_PLATFORM_CA));
        let data = stored.data.as_ref().unwrap();
        assert_eq!(data["url"].0, ndxp.url.as_bytes());
        assert_eq!(data["ca.crt"].0, b"ndxp ca", "the NDXP's CAs, not the platform's");

        let kept = issued_identity(Some(&stored), name.clone(), &issuer, now()).unwrap();
        assert!(kept.issued.as_ref().unwrap().issued.is_none(), "kept while current");
        assert_eq!(kept.serial, first.serial);

        // A Secret holding a provided identity (the platform engineer's) is never kept as ours.
        let (_, crt, key) = national();
        let provided = provided_identity(Some(&tls_secret(&crt, &key)), "x", now()).unwrap();
        let theirs = secret("govpaas-system", &ndxp, "ndxp ca", &provided);
        let replaced = issued_identity(Some(&theirs), name, &issuer, now()).unwrap();
        assert!(replaced.issued.as_ref().unwrap().issued.is_some());
        assert_ne!(replaced.serial, provided.serial);
    }

    #[test]
    fn the_province_is_the_tenant_with_the_national_agency_code_in_either_form() {
        let mut tenant = crate::fixtures::tenant();
        tenant.spec.agency.code = "000.00.00.H48".into();
        assert!(province_tenant([&tenant], "H48").is_some());
        assert!(province_tenant([&tenant], "H49").is_none());
    }
}

/// Shared by the tests of this module and the trust controller's.
#[cfg(test)]
pub(crate) mod tests_support {
    pub fn ndxp() -> govpaas_crds::platform::NdxpUpstream {
        govpaas_crds::platform::NdxpUpstream {
            url: "https://ndxp.gov.vn/api".into(),
            agency_code: "H48".into(),
            ca_config_map: "ndxp-ca".into(),
            client_secret_name: None,
            apis: Vec::new(),
        }
    }
}
