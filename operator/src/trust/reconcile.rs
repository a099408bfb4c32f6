//! The controller of the platform CA and its rotation: read the CA `spec.ca.secretName` asks for
//! and the persisted trust state → count the cluster during a rotation → decide the next step
//! ([`decide`], pure) → persist it → status, conditions and Events computed from what was decided.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use govpaas_crds::platform::{NdxpStatus, PLATFORM_NAME, Platform, PlatformStatus, TrustStatus, TrustedCa};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, ObjectList};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::{WatchStreamExt, predicates};
use kube::{Api, Client, Resource, ResourceExt};
use time::{Duration, OffsetDateTime};
use tracing::{Instrument, info, info_span, warn};

use super::census::{census, counted_leaf};
use crate::certificates::TRUST_BUNDLE;
use crate::certificates::ca_secrets;
use crate::certificates::leaf::Issued;
use crate::certificates::published::TrustPublisher;
use crate::certificates::trust_state::{Census, Decision, DesiredCa, Refusal, TrustState, decide, format_duration};
use crate::certificates::trust_store::{self as store, Stored};
use crate::error::Result;
use crate::lgsp;
use crate::reconcile::apply::Applier;
use crate::reconcile::conditions::{self, Desired};
use crate::reconcile::events::Publisher;
use crate::reconcile::outcome::Stop;
use crate::reconcile::shared::Subscription;
use crate::reconcile::triggers::Triggers;
use crate::reconcile::{Problem, apply, labels, runner};
use crate::settings::Settings;
use crate::telemetry::CertificateKey;
use govpaas_crds::conditions::{CA_READY, CA_ROTATION, NATIONAL_PLATFORM_READY, READY};
use govpaas_pki::renewal::{renewal_time, requeue_after};
use govpaas_pki::{BundleCa, TrustRotation};

/// The controller's name in logs and metrics.
pub const CONTROLLER: &str = "platform-trust";
/// The gauge kind of platform CAs.
const PLATFORM_CA: &str = "platform-ca";
/// The resync of a stable platform.
const RESYNC: StdDuration = StdDuration::from_secs(3600);
/// How soon to look again at a CA that cannot be used (a Secret the engineer is about to create).
const NOT_READY: StdDuration = StdDuration::from_secs(30);
/// The fastest poll of a rotation's progress; it slows down as the cluster grows.
const POLL: StdDuration = StdDuration::from_secs(5);
/// The slowest.
const POLL_MAX: StdDuration = StdDuration::from_secs(60);
/// Objects listed per page while counting.
const PAGE: u32 = 500;

/// What the reconcile needs.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub publisher: Publisher,
    pub status_writes: apply::StatusWrites,
    /// Where the platform trust each pass loads is published for the tenant and service
    /// controllers.
    pub trust: TrustPublisher,
    /// The Tenants (the shared cache): the province's tenant CA issues its national identity.
    pub tenants: kube::runtime::reflector::Store<crate::tenancy::TenantObject>,
}

/// Runs the platform trust controller until shutdown, fed by the shared Platform and trust
/// ConfigMap watches (`reconcile::shared`).
pub async fn run(
    client: Client,
    settings: Settings,
    platforms: Subscription<Platform>,
    trust: Subscription<ConfigMap>,
    published: TrustPublisher,
    tenants: kube::runtime::reflector::Store<crate::tenancy::TenantObject>,
) {
    let store = platforms.store.clone();
    let listed = platforms.listed.clone();
    // Its own status writes (every step of a rotation) do not wake it: only a new generation.
    let platform_stream = platforms.touched().predicate_filter(predicates::generation, Default::default());
    // The trust ConfigMap wakes the Platform from a task of its own (`reconcile::triggers`).
    let (mut triggers, changed) = Triggers::<Platform>::new(CONTROLLER);
    triggers.watch("platform trust", trust.touched(), |_| [kube::runtime::reflector::ObjectRef::new(PLATFORM_NAME)]);
    let clock = runner::QueueClock::default();
    let controller =
        Controller::for_stream(clock.watched(platform_stream), store.clone()).reconcile_on(clock.woken(changed));
    let telemetry = settings.telemetry.clone();
    let context = Arc::new(Context {
        publisher: Publisher::new(client.clone(), settings.instance.clone()),
        client,
        settings,
        status_writes: Default::default(),
        trust: published,
        tenants,
    });
    // With no Platform there is nothing to reconcile, and so nothing would be published: say so,
    // or the tenant and service controllers would wait for a first publication for ever.
    let ready = {
        let context = context.clone();
        async move {
            let listed = listed.wait().await;
            if listed && store.get(&kube::runtime::reflector::ObjectRef::new(PLATFORM_NAME)).is_none() {
                context.trust.publish_absent(format!(
                    "there is no Platform {PLATFORM_NAME}: its CA issues every certificate (see docs/operations.md)"
                ));
            }
            listed
        }
    };
    runner::run(CONTROLLER, controller, clock, 1, &telemetry, ready, reconcile, context).await;
    drop(triggers);
}

/// Reconciles the Platform's CA.
pub async fn reconcile(platform: Arc<Platform>, ctx: Arc<Context>) -> Result<Action> {
    let span = info_span!("reconcile", controller = CONTROLLER, platform = %platform.name_any());
    reconcile_platform(&platform, &ctx).instrument(span).await
}

/// What one pass found, for status.
struct Found {
    desired: Option<(DesiredCa, govpaas_pki::CertificateAuthority)>,
    state: Option<TrustState>,
    census: Census,
    refusal: Option<Refusal>,
    /// Why the issuing CA cannot be used, if it cannot.
    unusable: Option<String>,
    /// The national platform's identity in force, or why it is not (`None`: no `lgsp.ndxp`).
    national: Option<std::result::Result<NdxpStatus, Problem>>,
}

async fn reconcile_platform(platform: &Platform, ctx: &Context) -> Result<Action> {
    ensure_admission_params(ctx, platform).await?;
    let now = OffsetDateTime::now_utc();
    let store = store::TrustStore::new(ctx.client.clone(), &ctx.settings.operator_namespace);
    let (secrets, config_maps) = (&store.secrets, &store.config_maps);
    let mut found =
        Found { desired: None, state: None, census: Census::default(), refusal: None, unusable: None, national: None };

    let policy = match ca_secrets::issuance_policy(&platform.spec) {
        Ok(policy) => policy,
        Err(message) => {
            ctx.trust.publish(Err(message.clone()));
            found.unusable = Some(message);
            write_status(ctx, platform, &found, now).await?;
            return Ok(Action::requeue(RESYNC));
        }
    };
    let delay = ca_secrets::parse_duration(&platform.spec.ca.propagation_delay).unwrap_or(Duration::minutes(10));

    match store::desired_ca(secrets, platform, &policy, now).await? {
        Ok(desired) => found.desired = Some(desired),
        Err(message) => found.unusable = Some(message),
    }
    let stored = match store::read(config_maps).await? {
        Some(Ok(stored)) => Some(stored),
        Some(Err(message)) => {
            found.unusable = Some(message);
            None
        }
        None => match store::current(&store, platform, &policy, now).await? {
            Ok(stored) => Some(stored),
            Err(message) => {
                found.unusable.get_or_insert(message);
                None
            }
        },
    };

    let mut requeue = if found.unusable.is_some() { NOT_READY } else { RESYNC };
    if let (Some(Stored { state, config_map }), Some((desired, _))) = (&stored, &found.desired) {
        // Counting lists every certificate in the cluster: only while a rotation needs it.
        let counted = if matches!(state.rotation, TrustRotation::Stable { .. }) {
            Census::default()
        } else {
            count(ctx, &state.rotation).await?
        };
        let mut current = state.clone();
        match decide(state, desired, &counted, now, delay) {
            Decision::Wait => {}
            Decision::Refuse(refusal) => found.refusal = Some(refusal),
            Decision::Move { next, reason, message } => {
                if store::replace(config_maps, &next, config_map).await? {
                    info!(reason, %message, phase = next.rotation.phase(), "platform trust moved");
                    let reference = platform.object_ref(&());
                    ctx.publisher.publish(&reference, EventType::Normal, reason, "RotateCa", &message, None).await;
                    current = next;
                }
                // Look again at once: the new phase is counted afresh, and a lost race is re-read.
                requeue = StdDuration::from_secs(1);
            }
        }
        found.census = if matches!(current.rotation, TrustRotation::Stable { .. }) {
            Census::default()
        } else if current == *state {
            counted
        } else {
            count(ctx, &current.rotation).await?
        };
        if found.unusable.is_none() && !matches!(current.rotation, TrustRotation::Stable { .. }) {
            let leaves = found.census.progress.on_old + found.census.progress.on_new + found.census.bundles_pending;
            requeue = requeue.min(poll_interval(leaves));
            if let Some(at) = current.rotation.reissue_not_before(delay)
                && found.census.bundles_pending == 0
            {
                requeue = requeue.min(requeue_after(now, at).max(StdDuration::from_secs(1)));
            }
        }
        found.state = Some(current);
    }
    // What stands, even when the requested CA cannot be used.
    if found.state.is_none() {
        found.state = stored.map(|stored| stored.state);
    }
    if let Some(state) = &found.state {
        observe_gauges(ctx, state, &policy);
    }
    // The issuing CA must load from its Secret (a hand edit there breaks every issuance). What it
    // loads is published for the tenant and service controllers, even while a requested new CA
    // cannot be used (the issuing one still issues); it issues the LGSP gateway's certificate.
    match store::platform_trust(&store, platform, &policy, now).await {
        Ok(trust) => {
            let trust = Arc::new(trust);
            ctx.trust.publish(Ok(trust.clone()));
            if found.unusable.is_none() {
                requeue = requeue.min(ensure_gateway_certificate(ctx, platform, &trust, &policy, now).await?);
            }
            let (national, next) = ensure_national(ctx, platform, &trust, &policy, now).await?;
            found.national = national;
            requeue = requeue.min(next);
        }
        Err(Stop::Halt(halt)) => {
            let message = halt.into_message();
            ctx.trust.publish(Err(message.clone()));
            found.unusable.get_or_insert(message);
            requeue = requeue.min(NOT_READY);
        }
        Err(Stop::Failed(error)) => return Err(error),
    }
    write_status(ctx, platform, &found, now).await?;
    Ok(Action::requeue(requeue))
}

/// Keeps the admission policies' parameter (`govpaas_crds::admission::PARAMS_CONFIG_MAP`: the base
/// domain and the agencies' node tolerations) equal to the Platform's; written only when it differs.
async fn ensure_admission_params(ctx: &Context, platform: &Platform) -> Result<()> {
    use govpaas_crds::admission::{PARAMS_CONFIG_MAP, params_config_map};
    let namespace = &ctx.settings.operator_namespace;
    let desired = params_config_map(&platform.spec, namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let stored = config_maps.get_opt(PARAMS_CONFIG_MAP).await?;
    if stored.is_some_and(|stored| stored.data == desired.data && stored.labels() == desired.labels()) {
        return Ok(());
    }
    Applier::new(ctx.client.clone()).apply(&desired).await?;
    info!(config_map = PARAMS_CONFIG_MAP, "the admission policies' parameter follows the Platform");
    Ok(())
}

/// Keeps or issues the LGSP gateway's certificate from the platform CA; when to look again.
async fn ensure_gateway_certificate(
    ctx: &Context,
    platform: &Platform,
    trust: &store::PlatformTrust,
    policy: &govpaas_pki::IssuancePolicy,
    now: OffsetDateTime,
) -> Result<StdDuration> {
    let namespace = &ctx.settings.operator_namespace;
    match lgsp::ensure_certificate(&ctx.client, namespace, &platform.spec, trust, policy, now).await {
        Ok(Ok(leaf)) => {
            gateway_certificate_issued(ctx, platform, &leaf, policy).await;
            Ok(requeue_after(now, leaf.renewal_time(policy)))
        }
        Ok(Err(message)) => {
            warn!(%message, "the LGSP gateway's certificate");
            let reference = platform.object_ref(&());
            let (type_, reason) = (EventType::Warning, "GatewayCertificateFailed");
            ctx.publisher.publish(&reference, type_, reason, "Issue", &message, None).await;
            Ok(NOT_READY)
        }
        // Changed since it was read: look again at once.
        Err(err) if apply::is_conflict(&err) => Ok(StdDuration::from_secs(1)),
        Err(err) => Err(err),
    }
}

/// Keeps the national platform's Secret for the gateway (`lgsp::national`): what is in force, or
/// why not, and when to look again. Without `lgsp.ndxp`, the Secret goes.
async fn ensure_national(
    ctx: &Context,
    platform: &Platform,
    trust: &store::PlatformTrust,
    policy: &govpaas_pki::IssuancePolicy,
    now: OffsetDateTime,
) -> Result<(Option<std::result::Result<NdxpStatus, Problem>>, StdDuration)> {
    use crate::lgsp::national;
    let namespace = &ctx.settings.operator_namespace;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(ndxp) = national::configured(platform) else {
        if secrets.get_opt(national::NDXP_SECRET).await?.is_some() {
            secrets.delete(national::NDXP_SECRET, &Default::default()).await?;
            info!("the national platform is no longer configured: its Secret for the gateway is deleted");
        }
        return Ok((None, RESYNC));
    };
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let ca_pem = match national::ndxp_ca(config_maps.get_opt(&ndxp.ca_config_map).await?.as_ref(), &ndxp.ca_config_map)
    {
        Ok(pem) => pem,
        Err(problem) => return Ok((Some(Err(problem)), NOT_READY)),
    };
    let stored = secrets.get_opt(national::NDXP_SECRET).await?;
    let identity = match &ndxp.client_secret_name {
        Some(name) => match national::provided_identity(secrets.get_opt(name).await?.as_ref(), name, now) {
            Ok(identity) => identity,
            Err(problem) => return Ok((Some(Err(problem)), NOT_READY)),
        },
        None => {
            let tenants: Vec<Arc<crate::tenancy::TenantObject>> = ctx.tenants.state();
            let readable = tenants.iter().filter_map(|tenant| tenant.0.as_ref().ok());
            let Some(province) = national::province_tenant(readable, &ndxp.agency_code) else {
                let message = format!(
                    "no Tenant has the agency code {} (lgsp.ndxp.agencyCode): the province's identity toward the national platform is issued by its tenant CA; create the province's Tenant, or name the certificate the national platform issued in lgsp.ndxp.clientSecretName",
                    ndxp.agency_code
                );
                return Ok((Some(Err(Problem::new(national::reasons::PROVINCE_TENANT_MISSING, message))), NOT_READY));
            };
            let context = crate::tenancy::TenantContext::of(province, platform);
            // Read from its Secret each time: this controller runs apart from the tenant controller.
            let loaded = crate::certificates::tenant_cas::TenantCas::default();
            let tenant_ca = match ca_secrets::issued_tenant_ca(&secrets, None, &context, trust, now, &loaded).await {
                Ok(ca) => ca,
                Err(Stop::Halt(halt)) => {
                    let problem = Problem::new(national::reasons::PENDING, halt.into_message());
                    return Ok((Some(Err(problem)), NOT_READY));
                }
                Err(Stop::Failed(error)) => return Err(error),
            };
            let issuer = crate::certificates::leaf::Issuer {
                ca: &tenant_ca,
                trust: &trust.anchors,
                trust_pem: &trust.bundle_pem,
                policy,
            };
            let issued = national::issued_identity_name(&platform.spec.base_domain, &ndxp.agency_code)
                .and_then(|name| national::issued_identity(stored.as_ref(), name, &issuer, now));
            match issued {
                Ok(identity) => identity,
                Err(err) => {
                    let message = format!("cannot issue the province's identity toward the national platform: {err}");
                    let problem = Problem::new(national::reasons::CLIENT_IDENTITY_INVALID, message);
                    return Ok((Some(Err(problem)), NOT_READY));
                }
            }
        }
    };
    let desired = national::secret(namespace, ndxp, &ca_pem, &identity);
    let unchanged = stored.as_ref().is_some_and(|stored| {
        stored.data == desired.data && stored.metadata.annotations == desired.metadata.annotations
    });
    if !unchanged {
        match Applier::new(ctx.client.clone()).apply(&desired).await {
            Ok(_) => {}
            // Changed since it was read: decided again at once; what is wanted stays in status.
            Err(err) if apply::is_conflict(&err) => {
                return Ok((Some(Ok(national::status(&identity, policy))), StdDuration::from_secs(1)));
            }
            Err(err) => return Err(err),
        }
        let message = format!(
            "the province's identity toward the national platform ({}, serial {}, valid until {}) and the NDXP's CAs are in Secret {}",
            identity.source,
            identity.serial,
            conditions::time_of(identity.not_after).0,
            national::NDXP_SECRET
        );
        info!(%message, "national platform");
        let reference = platform.object_ref(&());
        ctx.publisher
            .publish(&reference, EventType::Normal, "NationalPlatformConfigured", "Configure", &message, None)
            .await;
    }
    let key =
        CertificateKey { namespace: namespace.clone(), secret: national::NDXP_SECRET.to_owned(), kind: "ndxp-client" };
    let renewal = govpaas_pki::renewal::renewal_time(identity.not_before, identity.not_after, policy.renewal);
    ctx.settings.telemetry.certificates.observe(key, identity.not_after.unix_timestamp(), renewal.unix_timestamp());
    // An issued identity is renewed here; a provided one is flagged (Events, gauges) for renewal.
    let next = requeue_after(now, renewal).max(StdDuration::from_secs(1));
    Ok((Some(Ok(national::status(&identity, policy))), next))
}

/// Logs, announces (an Event on the Platform) and measures a (re-)issued gateway certificate.
async fn gateway_certificate_issued(
    ctx: &Context,
    platform: &Platform,
    leaf: &crate::certificates::leaf::Leaf,
    policy: &govpaas_pki::IssuancePolicy,
) {
    let key = CertificateKey {
        namespace: ctx.settings.operator_namespace.clone(),
        secret: lgsp::GATEWAY_TLS_SECRET.to_owned(),
        kind: "server",
    };
    let renewal = leaf.renewal_time(policy);
    ctx.settings.telemetry.certificates.observe(key, leaf.not_after.unix_timestamp(), renewal.unix_timestamp());
    let Some(issued) = &leaf.issued else { return };
    let message = format!(
        "LGSP gateway certificate in Secret {} {} (serial {}, valid until {})",
        lgsp::GATEWAY_TLS_SECRET,
        match issued {
            Issued::New => "issued".to_owned(),
            Issued::Renewal => "renewed".to_owned(),
            Issued::Replaced(why) => format!("re-issued ({why})"),
            Issued::Damaged(why) => format!("repaired ({why})"),
        },
        leaf.serial,
        crate::reconcile::conditions::time_of(leaf.not_after).0,
    );
    info!(%message, "gateway certificate");
    let reference = platform.object_ref(&());
    ctx.publisher.publish(&reference, EventType::Normal, "GatewayCertificateIssued", "Issue", &message, None).await;
}

/// Lists the trust bundles, tenant CAs and certificate Secrets and counts where they stand.
async fn count(ctx: &Context, rotation: &TrustRotation) -> Result<Census> {
    let namespace = &ctx.settings.operator_namespace;
    let bundles: Vec<ConfigMap> = list_all(
        &Api::all(ctx.client.clone()),
        ListParams::default().labels(&labels::managed_selector()).fields(&format!("metadata.name={TRUST_BUNDLE}")),
    )
    .await?;
    let tenant_cas: Vec<Secret> = list_all(
        &Api::namespaced(ctx.client.clone(), namespace),
        ListParams::default().labels(&format!(
            "{},{}",
            labels::component_selector(ca_secrets::COMPONENT),
            govpaas_crds::metadata::TENANT_LABEL
        )),
    )
    .await?;
    let leaves: Vec<Secret> =
        list_all(&Api::all(ctx.client.clone()), ListParams::default().labels(&labels::managed_selector()))
            .await?
            .into_iter()
            .filter(|secret: &Secret| counted_leaf(secret, namespace))
            .collect();
    Ok(census(rotation, &bundles, &tenant_cas, &leaves))
}

/// Every object `params` selects, page by page.
async fn list_all<K>(api: &Api<K>, params: ListParams) -> Result<Vec<K>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(PAGE);
    let mut all = Vec::new();
    loop {
        let page: ObjectList<K> = api.list(&params).await?;
        all.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(all),
        }
    }
}

/// The poll period of a rotation: 5 s, plus a second per 200 certificates (listing them all is the
/// cost), at most a minute.
fn poll_interval(certificates: usize) -> StdDuration {
    POLL.saturating_add(StdDuration::from_secs((certificates / 200) as u64)).min(POLL_MAX)
}

/// The platform CAs' gauges: the CA of `spec.ca.secretName`, and during a rotation the other one.
/// A platform CA's renewal point is when the admin should rotate it: the operator never replaces
/// it on its own.
fn observe_gauges(ctx: &Context, state: &TrustState, policy: &govpaas_pki::IssuancePolicy) {
    ctx.settings.telemetry.metrics.set_rotation_phase(state.rotation.phase());
    let gauges = &ctx.settings.telemetry.certificates;
    let namespace = &ctx.settings.operator_namespace;
    let mut kept = Vec::new();
    for ca in state.rotation.trusted() {
        let (Some(secret), Some((not_before, not_after))) = (state.secret_of(ca), validity(ca)) else {
            continue;
        };
        let key = ca_secrets::ca_gauge_key(namespace, secret, PLATFORM_CA);
        let renewal = renewal_time(not_before, not_after, policy.renewal);
        gauges.observe(key.clone(), not_after.unix_timestamp(), renewal.unix_timestamp());
        kept.push(key);
    }
    // A CA that left the bundle has no gauge any more.
    gauges.forget_where(|key| key.kind == PLATFORM_CA && !kept.contains(key));
}

fn validity(ca: &BundleCa) -> Option<(OffsetDateTime, OffsetDateTime)> {
    let chain = govpaas_pki::verify::chain_from_pem("ca.crt", ca.certificate_pem.as_bytes()).ok()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(chain.first()?).ok()?;
    Some((certificate.validity().not_before.to_datetime(), certificate.validity().not_after.to_datetime()))
}

/// The Platform's status for what this pass found.
fn status(platform: &Platform, found: &Found, now: OffsetDateTime) -> (PlatformStatus, Vec<Desired>) {
    let mut desired_conditions = Vec::new();
    let ca_condition = match &found.unusable {
        Some(message) => Desired::fails(CA_READY, "CaUnusable", message.clone()).with_event(EventType::Warning),
        None => {
            let issuing = found.state.as_ref().map(|s| s.rotation.issuing());
            let secret = issuing.and_then(|ca| found.state.as_ref().and_then(|s| s.secret_of(ca))).unwrap_or_default();
            Desired::holds(CA_READY, "Issuing", format!("the platform CA in Secret {secret} issues tenant CAs"))
        }
    };
    let rotation_condition = match (&found.refusal, found.state.as_ref().map(|s| &s.rotation)) {
        (Some(refusal), _) => {
            Desired::fails(CA_ROTATION, refusal.reason, refusal.message.clone()).with_event(EventType::Warning)
        }
        (None, Some(TrustRotation::Distributing { .. })) => Desired::holds(
            CA_ROTATION,
            "Distributing",
            format!(
                "the new CA is joining every trust bundle ({} bundles or certificate Secrets still to update); certificates are re-issued from it after {}",
                found.census.bundles_pending,
                format_duration(
                    ca_secrets::parse_duration(&platform.spec.ca.propagation_delay).unwrap_or(Duration::ZERO)
                )
            ),
        ),
        (None, Some(TrustRotation::Reissuing { .. })) => Desired::holds(
            CA_ROTATION,
            "Reissuing",
            format!(
                "re-issuing from the new CA: {} tenant CAs and certificates still chain to the old one, {} to the new one",
                found.census.progress.on_old, found.census.progress.on_new
            ),
        ),
        (None, _) => Desired::fails(CA_ROTATION, "Stable", "no CA rotation is under way"),
    };
    let ready = match (&found.unusable, &found.refusal) {
        (Some(message), _) => Desired::fails(READY, "CaUnusable", message.clone()),
        (None, Some(refusal)) => Desired::fails(READY, refusal.reason, refusal.message.clone()),
        (None, None) => Desired::holds(READY, "Ready", "the platform CA issues"),
    };
    desired_conditions.extend([ready, ca_condition, rotation_condition]);
    match &found.national {
        None => {}
        Some(Ok(ndxp)) => desired_conditions.push(Desired::holds(
            NATIONAL_PLATFORM_READY,
            crate::lgsp::national::reasons::CONFIGURED,
            format!(
                "national routes go to {} with the province's identity ({}) in Secret {}",
                platform.spec.lgsp.ndxp.as_ref().map(|n| n.url.as_str()).unwrap_or_default(),
                ndxp.client_identity,
                ndxp.secret_name
            ),
        )),
        Some(Err(problem)) => desired_conditions.push(
            Desired::fails(NATIONAL_PLATFORM_READY, problem.reason, problem.message.clone())
                .with_event(EventType::Warning),
        ),
    }

    let previous = platform.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let generation = platform.meta().generation;
    let conditions =
        conditions::merge(previous, &desired_conditions, generation, &crate::reconcile::conditions::time_of(now));
    let status = PlatformStatus {
        observed_generation: generation,
        conditions,
        // A requested CA was read only with a usable policy.
        ca: found
            .desired
            .as_ref()
            .zip(ca_secrets::issuance_policy(&platform.spec).ok())
            .map(|((desired, ca), policy)| ca_secrets::ca_status(&desired.secret_name, ca, &policy)),
        trust: found.state.as_ref().map(|state| trust_status(state, &found.census, platform)),
        // A failing national platform keeps the identity last in force in status: the Secret the
        // gateway mounts still holds it.
        ndxp: match &found.national {
            Some(Ok(ndxp)) => Some(ndxp.clone()),
            Some(Err(_)) => platform.status.as_ref().and_then(|s| s.ndxp.clone()),
            None => None,
        },
        ..PlatformStatus::default()
    };
    (status, desired_conditions)
}

fn trust_status(state: &TrustState, census: &Census, platform: &Platform) -> TrustStatus {
    let role = |ca: &BundleCa| match &state.rotation {
        TrustRotation::Stable { .. } => "issuing",
        TrustRotation::Distributing { old, .. } if old == ca => "issuing",
        TrustRotation::Distributing { .. } => "joining",
        TrustRotation::Reissuing { old, .. } if old == ca => "retiring",
        TrustRotation::Reissuing { .. } => "issuing",
    };
    let cas = state
        .rotation
        .trusted()
        .into_iter()
        .map(|ca| TrustedCa {
            secret_name: state.secret_of(ca).unwrap_or_default().to_owned(),
            fingerprint: ca.fingerprint.clone(),
            role: role(ca).to_owned(),
        })
        .collect();
    let rotating = !matches!(state.rotation, TrustRotation::Stable { .. });
    let count = |n: usize| rotating.then(|| i32::try_from(n).unwrap_or(i32::MAX));
    let delay = ca_secrets::parse_duration(&platform.spec.ca.propagation_delay).unwrap_or(Duration::ZERO);
    TrustStatus {
        phase: state.rotation.phase().to_owned(),
        cas,
        reissue_after: state.rotation.reissue_not_before(delay).map(crate::reconcile::conditions::time_of),
        bundles_pending: count(census.bundles_pending),
        on_old_ca: count(census.progress.on_old),
        on_new_ca: count(census.progress.on_new),
        waiting_for: census.waiting_for.clone(),
    }
}

async fn write_status(ctx: &Context, platform: &Platform, found: &Found, now: OffsetDateTime) -> Result<()> {
    let (status, desired) = status(platform, found, now);
    let previous = platform.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let reference = platform.object_ref(&());
    for changed in conditions::changed_with_events(previous, &desired) {
        let type_ = changed.event.unwrap_or(EventType::Normal);
        ctx.publisher.publish(&reference, type_, &changed.reason, "Reconcile", &changed.message, None).await;
    }
    let api: Api<Platform> = Api::all(ctx.client.clone());
    // The tenant count is the census's (`tenant::census`, a field manager of its own): compared
    // without it, and never stated here.
    let cached = platform.status.clone().map(|s| PlatformStatus { tenants: None, ready_tenants: None, ..s });
    ctx.status_writes.write(&api, platform, cached.as_ref(), &status).await.map(|_| ()).map_err(|err| {
        warn!(error = %err, "cannot write the Platform's status");
        err
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_slows_down_with_the_number_of_certificates() {
        assert_eq!(poll_interval(0), StdDuration::from_secs(5));
        assert_eq!(poll_interval(2_000), StdDuration::from_secs(15));
        assert_eq!(poll_interval(16_000), POLL_MAX);
    }
}
