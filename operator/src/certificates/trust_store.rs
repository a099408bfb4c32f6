//! Reading and writing the trust state, and the platform trust every controller issues with.
//!
//! The state lives in the ConfigMap [`TRUST_CONFIG_MAP`] of the operator's namespace (certificates
//! only, no key): `state.json` for the operator, `ca.crt` (the bundle) for people and tools. It is
//! created from `Platform spec.ca.secretName` by the trust controller's first pass (create-only,
//! so racing operators agree), and changed only by the trust controller, with the
//! resourceVersion it read, so two operators never both move a rotation. The trust controller is
//! also the one reader of the platform CA's Secret: it publishes [`PlatformTrust`] to the tenant
//! and service controllers (`super::published`).

use std::collections::BTreeMap;

use govpaas_crds::Platform;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, ResourceExt};
use time::OffsetDateTime;

use super::ca_secrets;
use super::trust_state::{DesiredCa, TrustState};
use crate::error::Result;
use crate::reconcile::labels;
use crate::reconcile::outcome::{Step, Stop};
use govpaas_crds::conditions::reasons;
use govpaas_pki::{BundleCa, CertificateAuthority, IssuancePolicy, TrustAnchors, TrustRotation};

/// The ConfigMap holding the trust state, in the operator's namespace.
pub const TRUST_CONFIG_MAP: &str = "govpaas-trust";
/// The component label of that ConfigMap.
pub const COMPONENT: &str = "platform-trust";
const STATE_KEY: &str = "state.json";
const BUNDLE_KEY: &str = "ca.crt";

/// The trust state as stored, with the ConfigMap it came from (for its resourceVersion).
#[derive(Clone, Debug)]
pub struct Stored {
    pub state: TrustState,
    pub config_map: ConfigMap,
}

/// What the tenant and service controllers issue with and hand out.
pub struct PlatformTrust {
    /// The platform CA that issues tenant CAs now.
    pub issuing: CertificateAuthority,
    /// During re-issuing, the CA being retired: a tenant CA it issued is re-issued at once.
    pub retiring: Option<BundleCa>,
    /// Every trust bundle's content: one CA, or old and new during a rotation.
    pub bundle_pem: String,
    /// The same, parsed for verification.
    pub anchors: TrustAnchors,
}

/// Where the trust state and the CA Secrets live: the operator's namespace.
pub struct TrustStore {
    pub secrets: Api<Secret>,
    pub config_maps: Api<ConfigMap>,
    pub namespace: String,
}

impl TrustStore {
    /// The store in the operator's `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        TrustStore {
            secrets: Api::namespaced(client.clone(), namespace),
            config_maps: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
        }
    }
}

/// The CA that `Platform spec.ca.secretName` holds (generated there in `Generate` mode if the
/// Secret does not exist), or why it cannot be used.
pub async fn desired_ca(
    secrets: &Api<Secret>,
    platform: &Platform,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> Result<std::result::Result<(DesiredCa, CertificateAuthority), String>> {
    Ok(ca_secrets::platform_ca(secrets, platform, policy, now).await?.map(|ca| {
        let desired = DesiredCa { ca: BundleCa::of(&ca), secret_name: platform.spec.ca.secret_name.clone() };
        (desired, ca)
    }))
}

/// Reads the stored state: `None` if there is none yet, a message if it is damaged.
pub async fn read(config_maps: &Api<ConfigMap>) -> Result<Option<std::result::Result<Stored, String>>> {
    let Some(config_map) = config_maps.get_opt(TRUST_CONFIG_MAP).await? else {
        return Ok(None);
    };
    Ok(Some(parse(config_map)))
}

fn parse(config_map: ConfigMap) -> std::result::Result<Stored, String> {
    let text = config_map.data.as_ref().and_then(|d| d.get(STATE_KEY)).ok_or_else(|| {
        format!("the ConfigMap {TRUST_CONFIG_MAP} lacks {STATE_KEY}; delete it to start again from spec.ca.secretName")
    })?;
    let state: TrustState = serde_json::from_str(text).map_err(|err| {
        format!("the ConfigMap {TRUST_CONFIG_MAP} holds a damaged {STATE_KEY} ({err}); delete it to start again from spec.ca.secretName")
    })?;
    // Every trusted CA must parse and name its Secret, or nothing could be issued or verified.
    for ca in state.rotation.trusted() {
        BundleCa::from_pem(&ca.certificate_pem)
            .ok()
            .filter(|parsed| parsed.fingerprint == ca.fingerprint)
            .ok_or_else(|| format!("the ConfigMap {TRUST_CONFIG_MAP} holds a damaged CA certificate; delete it to start again from spec.ca.secretName"))?;
        if state.secret_of(ca).is_none() {
            return Err(format!(
                "the ConfigMap {TRUST_CONFIG_MAP} does not say which Secret holds CA {}; delete it to start again from spec.ca.secretName",
                ca.fingerprint
            ));
        }
    }
    Ok(Stored { state, config_map })
}

/// The ConfigMap holding `state`.
pub fn config_map(state: &TrustState, namespace: &str, previous: Option<&ConfigMap>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(TRUST_CONFIG_MAP.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels::owned_labels(COMPONENT, "platform")),
            resource_version: previous.and_then(|p| p.metadata.resource_version.clone()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([
            // The state serialises infallibly: strings, integers and maps with string keys.
            (STATE_KEY.to_owned(), serde_json::to_string_pretty(state).unwrap_or_default()),
            (BUNDLE_KEY.to_owned(), state.rotation.bundle_pem()),
        ])),
        ..Default::default()
    }
}

/// Writes `state` over `previous` (a replace carrying its resourceVersion). False when someone
/// else wrote first: the caller reads again on its next pass.
pub async fn replace(config_maps: &Api<ConfigMap>, state: &TrustState, previous: &ConfigMap) -> Result<bool> {
    let namespace = previous.namespace().unwrap_or_default();
    let desired = config_map(state, &namespace, Some(previous));
    match config_maps.replace(TRUST_CONFIG_MAP, &PostParams::default(), &desired).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The stored state, created from the CA of `spec.ca.secretName` if there is none yet.
pub async fn current(
    store: &TrustStore,
    platform: &Platform,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> Result<std::result::Result<Stored, String>> {
    let TrustStore { secrets, config_maps, namespace } = store;
    if let Some(stored) = read(config_maps).await? {
        return Ok(stored);
    }
    let desired = match desired_ca(secrets, platform, policy, now).await? {
        Ok((desired, _)) => desired,
        Err(message) => return Ok(Err(message)),
    };
    let state = TrustState::stable(&desired);
    match config_maps.create(&PostParams::default(), &config_map(&state, namespace, None)).await {
        Ok(created) => {
            tracing::info!(secret = %desired.secret_name, fingerprint = %desired.ca.fingerprint, "platform trust initialised");
            Ok(Ok(Stored { state, config_map: created }))
        }
        // Another reconcile or operator created it first: use theirs.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(read(config_maps).await?.unwrap_or_else(|| Err(format!("the ConfigMap {TRUST_CONFIG_MAP} vanished"))))
        }
        Err(err) => Err(err.into()),
    }
}

/// The platform trust to issue with: the stored state's issuing CA, loaded from its Secret and
/// checked to be the very CA the state names.
pub async fn platform_trust(
    store: &TrustStore,
    platform: &Platform,
    policy: &IssuancePolicy,
    now: OffsetDateTime,
) -> Step<PlatformTrust> {
    let unusable = |message: String| Err(Stop::waiting(reasons::PLATFORM_CA_NOT_READY, message));
    let secrets = &store.secrets;
    let stored = match current(store, platform, policy, now).await? {
        Ok(stored) => stored,
        Err(message) => return unusable(message),
    };
    let state = &stored.state;
    let issuing = state.rotation.issuing();
    let Some(secret_name) = state.secret_of(issuing) else {
        return unusable(format!("the trust state names no Secret for the issuing CA {}", issuing.fingerprint));
    };
    let Some(secret) = secrets.get_opt(secret_name).await? else {
        return unusable(format!(
            "the platform CA Secret {secret_name} is gone: the issuing CA's key was in it (restore it; see docs/certificates.md)"
        ));
    };
    let data = |key: &str| secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone());
    let (Some(crt), Some(key)) = (data("tls.crt"), data("tls.key")) else {
        return unusable(format!("the platform CA Secret {secret_name} lacks tls.crt or tls.key"));
    };
    let ca = match CertificateAuthority::import_platform_ca(&crt, &key, now) {
        Ok(ca) => ca,
        Err(err) => return unusable(format!("the platform CA Secret {secret_name} does not hold a usable CA: {err}")),
    };
    if ca.fingerprint() != issuing.fingerprint {
        return unusable(format!(
            "the platform CA Secret {secret_name} holds another CA than the issuing one every certificate chains to (fingerprint {} instead of {}): put the original back; a new CA goes into a new Secret named by spec.ca.secretName",
            ca.fingerprint(),
            issuing.fingerprint
        ));
    }
    let bundle_pem = state.rotation.bundle_pem();
    let anchors = match TrustAnchors::from_pem(bundle_pem.as_bytes()) {
        Ok(anchors) => anchors,
        Err(err) => return unusable(format!("the trust bundle cannot anchor trust: {err}")),
    };
    let retiring = match &state.rotation {
        TrustRotation::Reissuing { old, .. } => Some(old.clone()),
        _ => None,
    };
    Ok(PlatformTrust { issuing: ca, retiring, bundle_pem, anchors })
}

/// The watch of the trust ConfigMap in the operator's `namespace`.
pub fn watch_config(namespace: &str) -> kube::runtime::watcher::Config {
    crate::reconcile::watch::config()
        .fields(&format!("metadata.name={TRUST_CONFIG_MAP},metadata.namespace={namespace}"))
}
