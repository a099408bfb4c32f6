//! Loading the platform CA and a tenant's CA from their Secrets in the operator's namespace, and
//! creating them the first time they are needed.
//!
//! Creation is create-only (a POST, never an apply): when two reconciles, or two controllers, race
//! to create the same CA, one wins and the other reads the winner's, so a tenant never ends up with
//! two CAs. An existing Secret that does not hold a usable CA is never overwritten (that would cut
//! every certificate below it loose): it is reported, and replacing it is a CA rotation.
//!
//! - the platform CA: `Platform.spec.ca.secretName` (`tls.crt`, `tls.key`). In `Generate` mode it
//!   is generated here if missing; in `Import` mode the platform engineer creates it.
//! - a tenant CA: `govpaas-tenant-ca-<tenant>`, issued by the platform CA, name-constrained to the
//!   tenant's domain, owned by the Tenant (it goes when the Tenant goes).

use std::collections::BTreeMap;
use std::sync::Arc;

use govpaas_crds::platform::{CaKeyAlgorithm, CaMode, PlatformSpec};
use govpaas_crds::status::CertificateStatus;
use govpaas_crds::{Platform, Tenant};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use time::{Duration, OffsetDateTime};

use crate::certificates::tenant_cas::TenantCas;
use crate::certificates::trust_store::PlatformTrust;
use govpaas_crds::agency::normalise;

use crate::error::Result;
use crate::reconcile::known::KnownObjects;
use crate::reconcile::labels;
use crate::reconcile::outcome::{Step, Stop};
use crate::telemetry::CertificateKey;
use crate::tenancy::TenantContext;
use govpaas_crds::conditions::reasons;
use govpaas_pki::renewal::{is_due, renewal_time};
use govpaas_pki::{
    BundleCa, CertificateAuthority, IssuancePolicy, KeyAlgorithm, Lifetimes, PlatformCaRequest, RenewalFraction,
    TenantCaRequest, generate_platform_ca,
};

/// The component label of CA Secrets this module creates.
pub const COMPONENT: &str = "certificate-authority";
/// The label naming the tenant of a tenant CA Secret.
pub const TENANT_LABEL: &str = govpaas_crds::metadata::TENANT_LABEL;

/// The gauge series of a CA held in the Secret `secret` of the operator's namespace; `kind` is
/// `platform-ca` or `tenant-ca`.
pub fn ca_gauge_key(operator_namespace: &str, secret: &str, kind: &'static str) -> CertificateKey {
    CertificateKey { namespace: operator_namespace.to_owned(), secret: secret.to_owned(), kind }
}

/// The Secret of `tenant`'s CA in the operator's namespace.
pub fn tenant_ca_secret_name(tenant: &str) -> String {
    format!("govpaas-tenant-ca-{tenant}")
}

/// A Go duration of hours, minutes and seconds (`2160h`, `1h30m`, `90s`), as the Platform's
/// schema admits them: the API's one parser (`govpaas_crds::common::parse_duration`, fuzzed against
/// the schema), as a `time::Duration`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let parsed = govpaas_crds::common::parse_duration(text).ok()?;
    Duration::try_from(parsed).ok()
}

/// The issuance policy the Platform sets: its CA key type, certificate lifetimes and renewal
/// point; the library's defaults for the rest (leaves keep ECDSA P-256, which browsers accept).
pub fn issuance_policy(platform: &PlatformSpec) -> std::result::Result<IssuancePolicy, String> {
    let lifetimes = &platform.certificates;
    let parse = |field: &str, value: &str| {
        parse_duration(value).ok_or_else(|| format!("Platform spec.certificates.{field} {value:?} is not a duration"))
    };
    let policy = IssuancePolicy {
        lifetimes: Lifetimes {
            platform_ca: parse("rootCa", &lifetimes.root_ca)?,
            tenant_ca: parse("tenantCa", &lifetimes.tenant_ca)?,
            server: parse("server", &lifetimes.server)?,
            client: parse("client", &lifetimes.client)?,
            signing: parse("signing", &lifetimes.signing)?,
        },
        ca_key_algorithm: match platform.ca.key_algorithm {
            CaKeyAlgorithm::EcdsaP256 => KeyAlgorithm::EcdsaP256,
            CaKeyAlgorithm::EcdsaP384 => KeyAlgorithm::EcdsaP384,
            CaKeyAlgorithm::Ed25519 => KeyAlgorithm::Ed25519,
        },
        renewal: u32::try_from(lifetimes.renewal_percent)
            .map_err(|_| lifetimes.renewal_percent.to_string())
            .and_then(|percent| RenewalFraction::from_percent(percent).map_err(|err| err.to_string()))
            .map_err(|err| format!("Platform spec.certificates.renewalPercent: {err}"))?,
        ..IssuancePolicy::default()
    };
    policy.validate().map_err(|err| format!("the Platform's certificate settings: {err}"))?;
    Ok(policy)
}

/// What a status says of the CA held in `secret_name`: the Platform's `status.ca` (its renewal
/// time is when the platform engineer should rotate it) or a Tenant's (when the operator renews it).
pub fn ca_status(secret_name: &str, ca: &CertificateAuthority, policy: &IssuancePolicy) -> CertificateStatus {
    let serial = x509_parser::parse_x509_certificate(ca.certificate_der())
        .ok()
        .map(|(_, certificate)| certificate.raw_serial().iter().map(|b| format!("{b:02x}")).collect());
    CertificateStatus {
        secret_name: Some(secret_name.to_owned()),
        not_after: Some(crate::reconcile::conditions::time_of(ca.not_after())),
        serial,
        renewal_time: Some(crate::reconcile::conditions::time_of(renewal_time(
            ca.not_before(),
            ca.not_after(),
            policy.renewal,
        ))),
    }
}

fn secret_data(secret: &Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|v| v.0.clone())
}

fn ca_secret(meta: ObjectMeta, ca: &CertificateAuthority) -> Secret {
    Secret {
        metadata: meta,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(ca.certificate_pem().as_bytes().to_vec())),
            ("tls.key".to_owned(), ByteString(ca.private_key_pem().expose().as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

/// Creates `secret` unless one of its name exists; returns the stored one either way.
async fn create_once(api: &Api<Secret>, secret: &Secret) -> Result<Secret> {
    match api.create(&PostParams::default(), secret).await {
        Ok(created) => Ok(created),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(api.get(secret.metadata.name.as_deref().unwrap_or_default()).await?)
        }
        Err(err) => Err(err.into()),
    }
}

/// The platform CA, or why it cannot be used (a message for a condition).
pub async fn platform_ca(
    api: &Api<Secret>,
    platform: &Platform,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> Result<std::result::Result<CertificateAuthority, String>> {
    let settings = &platform.spec.ca;
    let name = &settings.secret_name;
    let stored = match (api.get_opt(name).await?, settings.mode) {
        (Some(secret), _) => secret,
        (None, CaMode::Import) => {
            return Ok(Err(format!(
                "the platform CA Secret {name} does not exist yet in the operator's namespace (Platform spec.ca.mode is Import: the platform engineer creates it)"
            )));
        }
        (None, CaMode::Generate) => {
            let request = PlatformCaRequest::new(&platform.spec.base_domain, &settings.organization);
            let ca = match generate_platform_ca(&request, policy, now) {
                Ok(ca) => ca,
                Err(err) => return Ok(Err(format!("cannot generate the platform CA: {err}"))),
            };
            let meta = ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels::owned_labels(COMPONENT, "platform")),
                ..Default::default()
            };
            create_once(api, &ca_secret(meta, &ca)).await?
        }
    };
    let (Some(crt), Some(key)) = (secret_data(&stored, "tls.crt"), secret_data(&stored, "tls.key")) else {
        return Ok(Err(format!("the platform CA Secret {name} lacks tls.crt or tls.key")));
    };
    Ok(CertificateAuthority::import_platform_ca(&crt, &key, now)
        .map_err(|err| format!("the platform CA Secret {name} does not hold a usable CA: {err}")))
}

/// `tenant`'s CA, issued by the issuing platform CA of `trust` if it does not exist yet, renewed
/// once it is due (or has expired) or once a platform CA rotation retires the CA that issued it,
/// or why it cannot be used. `stored` is its Secret as the tenant controller's cache (or its own
/// last write) shows it; what is written is kept in `known`, so the next reconcile does not decide
/// from the version before. A decision from a stale copy cannot do harm: a create of what exists
/// and a renewal of a version since replaced both fail (409), and the stored CA is read instead.
#[allow(clippy::too_many_arguments)]
pub async fn tenant_ca(
    api: &Api<Secret>,
    stored: Option<Arc<Secret>>,
    known: &KnownObjects<Secret>,
    tenant: &Tenant,
    context: &TenantContext,
    base_domain: &str,
    trust: &PlatformTrust,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> Result<std::result::Result<CertificateAuthority, String>> {
    let platform_ca = &trust.issuing;
    let name = tenant_ca_secret_name(&context.name);
    let request = TenantCaRequest {
        base_domain: base_domain.to_owned(),
        agency_code: context.agency_code.clone(),
        display_name: context.display_name.clone(),
        domain: context.domain.clone(),
    };
    let issue = || {
        platform_ca
            .issue_tenant_ca(&request, policy, now)
            .map_err(|err| format!("cannot issue the CA of tenant {}: {err}", context.name))
    };
    let stored = match stored {
        Some(secret) => secret,
        None => {
            let ca = match issue() {
                Ok(ca) => ca,
                Err(message) => return Ok(Err(message)),
            };
            let mut secret_labels = labels::owned_labels(COMPONENT, &context.name);
            secret_labels.insert(TENANT_LABEL.to_owned(), context.name.clone());
            let meta = ObjectMeta {
                name: Some(name.clone()),
                labels: Some(secret_labels),
                owner_references: tenant.controller_owner_ref(&()).map(|owner| vec![owner]),
                ..Default::default()
            };
            let created = create_once(api, &ca_secret(meta, &ca)).await?;
            known.remember(&created);
            Arc::new(created)
        }
    };
    let (Some(crt), Some(key)) = (secret_data(&stored, "tls.crt"), secret_data(&stored, "tls.key")) else {
        return Ok(Err(format!("the tenant CA Secret {name} lacks tls.crt or tls.key")));
    };
    let ca = match CertificateAuthority::load_tenant_ca(&crt, &key, platform_ca, now) {
        Ok(ca) => ca,
        // An expired tenant CA certifies nothing any more: replacing it loses nothing.
        Err(govpaas_pki::Error::Expired { .. }) => {
            return renew_tenant_ca(api, known, &stored, issue(), platform_ca, now).await;
        }
        // A platform CA rotation is re-issuing: a tenant CA of the retiring CA moves to the new one.
        Err(govpaas_pki::Error::IssuerMismatch { .. }) if issued_by(trust.retiring.as_ref(), &crt) => {
            return renew_tenant_ca(api, known, &stored, issue(), platform_ca, now).await;
        }
        Err(err) => return Ok(Err(format!("the tenant CA Secret {name} does not hold a usable CA: {err}"))),
    };
    // A CA issued for another domain or agency (the Tenant's domain changed) cannot certify this
    // tenant's hosts; replacing it is a CA rotation, not something to do silently.
    let agency_matches = ca.agency().is_some_and(|a| normalise(a.agency_code()) == normalise(&context.agency_code));
    if !agency_matches || ca.permitted_domains() != [context.domain.clone()] {
        return Ok(Err(format!(
            "the tenant CA in Secret {name} is for {:?} in {:?}, but tenant {} is agency {} with domain {}: rotate the tenant CA",
            ca.agency().map(|a| a.agency_code().to_owned()),
            ca.permitted_domains(),
            context.name,
            context.agency_code,
            context.domain
        )));
    }
    if is_due(now, ca.not_before(), ca.not_after(), policy.renewal) {
        return renew_tenant_ca(api, known, &stored, issue(), platform_ca, now).await;
    }
    Ok(Ok(ca))
}

/// `tenant`'s CA as the tenant controller — its one writer — last issued it, for the service
/// controllers: never created nor renewed here, so two controllers never race to write a CA. A CA
/// not issued yet, expired, or from a platform CA that a rotation retires is waited for (the
/// tenant controller issues it, and its new `status.ca` wakes the services); one that is merely
/// due for renewal still certifies until then.
///
/// A CA loaded in this process already ([`TenantCas`]) under the same issuing platform CA and not
/// expired is used as it is, without reading its Secret or parsing its key again. Else its Secret
/// is `cached` (the shared cache's copy; only before the tenant controller has loaded it, just
/// after a start, so it is fresh), or read from the API server when the cache lacks it (the tenant
/// controller may have issued it a moment ago).
pub async fn issued_tenant_ca(
    api: &Api<Secret>,
    cached: Option<Arc<Secret>>,
    context: &TenantContext,
    trust: &PlatformTrust,
    now: OffsetDateTime,
    loaded: &TenantCas,
) -> Step<Arc<CertificateAuthority>> {
    if let Some(ca) = loaded.get(&context.name, &trust.issuing, now)
        && mismatch(&ca, context).is_none()
    {
        return Ok(ca);
    }
    let name = tenant_ca_secret_name(&context.name);
    let waiting = |what: &str| {
        Err(Stop::waiting(
            reasons::TENANT_CA_PENDING,
            format!("waiting for the tenant controller to {what} the CA of tenant {}", context.name),
        ))
    };
    let stored = match cached {
        Some(stored) => stored,
        None => match api.get_opt(&name).await? {
            Some(stored) => Arc::new(stored),
            None => return waiting("issue"),
        },
    };
    let (Some(crt), Some(key)) = (secret_data(&stored, "tls.crt"), secret_data(&stored, "tls.key")) else {
        let message = format!("the tenant CA Secret {name} lacks tls.crt or tls.key");
        return Err(Stop::waiting(reasons::TENANT_CA_INVALID, message));
    };
    let ca = match CertificateAuthority::load_tenant_ca(&crt, &key, &trust.issuing, now) {
        Ok(ca) => ca,
        Err(govpaas_pki::Error::Expired { .. }) => return waiting("renew"),
        Err(govpaas_pki::Error::IssuerMismatch { .. }) if issued_by(trust.retiring.as_ref(), &crt) => {
            return waiting("re-issue (a platform CA rotation is under way)");
        }
        Err(err) => {
            let message = format!("the tenant CA Secret {name} does not hold a usable CA: {err}");
            return Err(Stop::waiting(reasons::TENANT_CA_INVALID, message));
        }
    };
    if let Some(found) = mismatch(&ca, context) {
        let message = format!(
            "the tenant CA in Secret {name} is for {found}, but tenant {} is agency {} with domain {}: the tenant controller re-issues it",
            context.name, context.agency_code, context.domain
        );
        return Err(Stop::waiting(reasons::TENANT_CA_MISMATCH, message));
    }
    let ca = Arc::new(ca);
    loaded.publish(&context.name, &trust.issuing, ca.clone());
    Ok(ca)
}

/// What `ca` is for, when it is not for `context`'s agency and domain.
fn mismatch(ca: &CertificateAuthority, context: &TenantContext) -> Option<String> {
    let agency_matches = ca.agency().is_some_and(|a| normalise(a.agency_code()) == normalise(&context.agency_code));
    (!agency_matches || ca.permitted_domains() != [context.domain.clone()])
        .then(|| format!("{:?} in {:?}", ca.agency().map(|a| a.agency_code().to_owned()), ca.permitted_domains()))
}

/// Whether the CA certificate in `certificate_pem` was issued by `ca`.
fn issued_by(ca: Option<&BundleCa>, certificate_pem: &[u8]) -> bool {
    let Some(ca) = ca else { return false };
    govpaas_pki::verify::chain_from_pem("tls.crt", certificate_pem)
        .ok()
        .and_then(|chain| chain.into_iter().next())
        .is_some_and(|certificate| ca.anchors(&certificate))
}

/// When `ca` (a tenant CA) is due for renewal.
pub fn tenant_ca_renewal_time(ca: &CertificateAuthority, policy: &IssuancePolicy) -> OffsetDateTime {
    renewal_time(ca.not_before(), ca.not_after(), policy.renewal)
}

/// Puts the newly `issued` CA into the tenant CA Secret `stored`, unless another reconcile renewed
/// it first: the patch carries the resourceVersion that was read, so of two racing reconciles one
/// writes and the other loads the winner's CA. Leaves of the old CA stay valid (their `tls.crt`
/// carries it) until their controllers see another issuer and re-issue them.
async fn renew_tenant_ca(
    api: &Api<Secret>,
    known: &KnownObjects<Secret>,
    stored: &Secret,
    issued: std::result::Result<CertificateAuthority, String>,
    platform_ca: &CertificateAuthority,
    now: OffsetDateTime,
) -> Result<std::result::Result<CertificateAuthority, String>> {
    let ca = match issued {
        Ok(ca) => ca,
        Err(message) => return Ok(Err(message)),
    };
    let name = stored.metadata.name.clone().unwrap_or_default();
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": stored.metadata.resource_version },
        "data": {
            "tls.crt": ByteString(ca.certificate_pem().as_bytes().to_vec()),
            "tls.key": ByteString(ca.private_key_pem().expose().as_bytes().to_vec()),
        },
    });
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(renewed) => {
            known.remember(&renewed);
            tracing::info!(secret = %name, subject = ca.subject(), "renewed a tenant CA");
            Ok(Ok(ca))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let winner = api.get(&name).await?;
            known.remember(&winner);
            let (Some(crt), Some(key)) = (secret_data(&winner, "tls.crt"), secret_data(&winner, "tls.key")) else {
                return Ok(Err(format!("the tenant CA Secret {name} lacks tls.crt or tls.key")));
            };
            Ok(CertificateAuthority::load_tenant_ca(&crt, &key, platform_ca, now)
                .map_err(|err| format!("the tenant CA Secret {name} does not hold a usable CA: {err}")))
        }
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2160h"), Some(Duration::days(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::minutes(90)));
        assert_eq!(parse_duration("90s"), Some(Duration::seconds(90)));
        for bad in ["", "h", "10", "1d", "1.5h", "-1h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_platform_sets_the_lifetimes() {
        let mut platform = fixtures::platform();
        let policy = issuance_policy(&platform.spec).unwrap();
        assert_eq!(policy.lifetimes.server, Duration::days(90));
        assert_eq!(policy.lifetimes.signing, Duration::days(365));
        platform.spec.certificates.server = "30m".into();
        let err = issuance_policy(&platform.spec).unwrap_err();
        assert!(err.contains("server certificate lifetime"), "{err}");
    }

    #[test]
    fn the_platform_sets_the_ca_key_type_and_the_renewal_point() {
        let mut platform = fixtures::platform();
        let policy = issuance_policy(&platform.spec).unwrap();
        assert_eq!(policy.ca_key_algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(policy.leaf_key_algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(policy.renewal, RenewalFraction::from_percent(67).unwrap());

        platform.spec.ca.key_algorithm = CaKeyAlgorithm::Ed25519;
        platform.spec.certificates.renewal_percent = 80;
        let policy = issuance_policy(&platform.spec).unwrap();
        assert_eq!(policy.ca_key_algorithm, KeyAlgorithm::Ed25519);
        assert_eq!(policy.leaf_key_algorithm, KeyAlgorithm::EcdsaP256, "leaves stay browser-friendly");
        assert_eq!(policy.renewal, RenewalFraction::from_percent(80).unwrap());
        platform.spec.ca.key_algorithm = CaKeyAlgorithm::EcdsaP384;
        assert_eq!(issuance_policy(&platform.spec).unwrap().ca_key_algorithm, KeyAlgorithm::EcdsaP384);

        // The schema admits 50–90; a value past it (an old API server) is a message, not a panic.
        for bad in [0, 100, -5] {
            platform.spec.certificates.renewal_percent = bad;
            let err = issuance_policy(&platform.spec).unwrap_err();
            assert!(err.contains("renewalPercent"), "{err}");
        }
    }

    #[test]
    fn the_platform_status_names_the_ca_its_expiry_and_serial() {
        let policy = IssuancePolicy::default();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let request = PlatformCaRequest::new("quangnam.gov.vn", "govpaas");
        let ca = generate_platform_ca(&request, &policy, now).unwrap();
        let status = ca_status("govpaas-ca", &ca, &policy);
        assert_eq!(status.secret_name.as_deref(), Some("govpaas-ca"));
        let not_after = status.not_after.unwrap().0.as_second();
        assert_eq!(not_after, (now + policy.lifetimes.platform_ca).unix_timestamp());
        // Two thirds of ten years (plus the 5-minute backdating of notBefore).
        let renewal = status.renewal_time.unwrap().0.as_second();
        assert_eq!(renewal, renewal_time(ca.not_before(), ca.not_after(), policy.renewal).unix_timestamp());
        assert!(renewal > now.unix_timestamp() && renewal < not_after);
        let serial = status.serial.unwrap();
        // 16 random bytes, as every govpaas serial, in the subject's generation suffix too.
        assert_eq!(serial.len(), 32, "{serial}");
        assert!(ca.subject().contains(&serial[..8]), "{} / {serial}", ca.subject());
    }

    #[test]
    fn tenant_ca_secret_names() {
        assert_eq!(tenant_ca_secret_name("so-noi-vu"), "govpaas-tenant-ca-so-noi-vu");
    }

    /// The service controllers' read of a tenant CA: never a write, whatever it finds.
    mod issued_tenant_ca_reads_only {
        use super::*;

        type ApiServer =
            tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<kube::client::Body>>;

        struct World {
            context: TenantContext,
            trust: PlatformTrust,
            issued: CertificateAuthority,
            now: OffsetDateTime,
        }

        fn world() -> World {
            let platform = fixtures::platform();
            let tenant = fixtures::tenant();
            let context = TenantContext::of(&tenant, &platform);
            let policy = issuance_policy(&platform.spec).unwrap();
            let now = OffsetDateTime::now_utc();
            let request = PlatformCaRequest::new(&platform.spec.base_domain, "Trung tâm Dữ liệu");
            let issuing = generate_platform_ca(&request, &policy, now).unwrap();
            let tenant_request = TenantCaRequest {
                base_domain: platform.spec.base_domain.clone(),
                agency_code: context.agency_code.clone(),
                display_name: context.display_name.clone(),
                domain: context.domain.clone(),
            };
            let issued = issuing.issue_tenant_ca(&tenant_request, &policy, now).unwrap();
            let bundle_pem = issuing.certificate_pem().to_owned();
            let anchors = govpaas_pki::TrustAnchors::from_pem(bundle_pem.as_bytes()).unwrap();
            World { context, trust: PlatformTrust { issuing, retiring: None, bundle_pem, anchors }, issued, now }
        }

        /// Answers the next request, which must be a GET of the tenant CA Secret, with `secret`
        /// (404 without one).
        async fn answer_get(api_server: &mut ApiServer, secret: Option<&Secret>) {
            let (request, send) = api_server.next_request().await.expect("a request");
            assert_eq!(request.method(), http::Method::GET, "{}", request.uri());
            assert!(request.uri().path().ends_with("/secrets/govpaas-tenant-ca-so-noi-vu"), "{}", request.uri());
            let (status, body) = match secret {
                Some(secret) => (200, serde_json::to_vec(secret).unwrap()),
                None => (
                    404,
                    serde_json::to_vec(&serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found"}))
                    .unwrap(),
                ),
            };
            let response = http::Response::builder().status(status).body(kube::client::Body::from(body)).unwrap();
            send.send_response(response);
        }

        /// No request follows: the read wrote nothing.
        async fn nothing_more(api_server: &mut ApiServer) {
            let next = tokio::time::timeout(std::time::Duration::from_millis(100), api_server.next_request()).await;
            assert!(next.is_err(), "a request after the read: {:?}", next.ok().flatten().map(|(r, _)| r.uri().clone()));
        }

        fn stored(world: &World) -> Secret {
            let meta = ObjectMeta {
                name: Some(tenant_ca_secret_name(&world.context.name)),
                namespace: Some("govpaas-system".into()),
                ..Default::default()
            };
            ca_secret(meta, &world.issued)
        }

        #[tokio::test]
        async fn a_missing_or_expired_ca_is_waited_for_and_a_current_one_is_used() {
            let world = world();
            assert_eq!(world.context.name, "so-noi-vu", "the fixture tenant");
            let (service, mut api_server) =
                tower_test::mock::pair::<http::Request<kube::client::Body>, http::Response<kube::client::Body>>();
            let api: Api<Secret> = Api::namespaced(kube::Client::new(service, "govpaas-system"), "govpaas-system");
            let secret = stored(&world);
            let secret_copy = secret.clone();

            let read = {
                let (api, context, trust, now) = (api.clone(), world.context.clone(), world.trust, world.now);
                tokio::spawn(async move {
                    let loaded = TenantCas::default();
                    let missing = issued_tenant_ca(&api, None, &context, &trust, now, &loaded).await;
                    // Ten years on, the CA has expired: renewing it is the tenant controller's job.
                    let later = now + Duration::days(3650);
                    let expired = issued_tenant_ca(&api, None, &context, &trust, later, &loaded).await;
                    let current = issued_tenant_ca(&api, None, &context, &trust, now, &loaded).await;
                    // Loaded once: the next reconcile neither reads the Secret nor parses the key.
                    let again = issued_tenant_ca(&api, None, &context, &trust, now, &loaded).await;
                    assert!(again.is_ok_and(|ca| current.as_ref().is_ok_and(|c| Arc::ptr_eq(c, &ca))));
                    // Another process (just started): the cache's copy, and no read.
                    let cached = Some(Arc::new(secret_copy));
                    let from_cache = issued_tenant_ca(&api, cached, &context, &trust, now, &TenantCas::default()).await;
                    assert!(
                        from_cache.is_ok_and(|ca| current
                            .as_ref()
                            .is_ok_and(|c| c.certificate_pem() == ca.certificate_pem()))
                    );
                    let waiting = |step: Step<Arc<CertificateAuthority>>| match step {
                        Err(Stop::Halt(crate::reconcile::outcome::Halt::Waiting(problem))) => Some(problem),
                        _ => None,
                    };
                    let current = current.map(|ca| ca.certificate_pem().to_owned()).map_err(|_| "not current");
                    (waiting(missing), waiting(expired), current)
                })
            };
            answer_get(&mut api_server, None).await;
            answer_get(&mut api_server, Some(&secret)).await;
            answer_get(&mut api_server, Some(&secret)).await;
            let (missing, expired, current) = read.await.unwrap();
            nothing_more(&mut api_server).await;
            assert!(
                missing.as_ref().is_some_and(|p| p.reason == reasons::TENANT_CA_PENDING
                    && p.message.contains("waiting for the tenant controller to issue")),
                "{missing:?}"
            );
            assert!(
                expired.as_ref().is_some_and(|p| p.reason == reasons::TENANT_CA_PENDING
                    && p.message.contains("waiting for the tenant controller to renew")),
                "{expired:?}"
            );
            assert_eq!(current.as_deref(), Ok(world.issued.certificate_pem()));
        }
    }
}
