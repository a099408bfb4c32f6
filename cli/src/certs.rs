//! `kubectl govpaas certs`: every certificate govpaas reports in status — the platform CA, each
//! tenant's intermediate CA, the Portals' and DocumentServices' TLS certificates, the
//! DocumentServices' signing certificates and the LGSP client certificates — with its expiry and
//! renewal time, and the overdue ones flagged: the operator renews a certificate at its renewal
//! time, so one still shown after it was not renewed (and the platform CA is rotated by hand).

use std::time::Duration;

use govpaas_crds::status::CertificateStatus;
use govpaas_crds::{DataSharingService, DocumentService, Platform, Portal, Tenant};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::objects;
use crate::table::{Cell, Paint, Table};
use crate::{API_VERSION, Scope};

/// The certificates (`kind: Certificates`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertsReport {
    pub api_version: String,
    pub kind: String,
    pub complete: bool,
    /// The instant the states were computed at (RFC 3339).
    pub now: String,
    /// `--expiring`: only certificates whose notAfter falls within this many seconds of `now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiring_within_seconds: Option<u64>,
    /// Soonest to expire first; those with no expiry in status last.
    pub certificates: Vec<CertificateEntry>,
    /// The platform trust bundle and the progress of a CA rotation (Platform `status.trust`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CertificateEntry {
    /// `PlatformCA`, `TenantCA`, `PortalTLS`, `DocumentServiceTLS`, `DocumentSigning`, `DocumentExchangeClient`, `LgspClient`.
    pub kind: String,
    /// The object whose status reports it: `Platform/default`, `Tenant/so-yte`,
    /// `Portal/so-yte/cong-thong-tin`…
    pub object: String,
    /// The Tenant it belongs to (none for the platform CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<String>,
    /// Whole days until notAfter (negative once expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// `Valid`, `RenewalOverdue` (its renewal time has passed), `Expired`, or `Unknown` (no expiry
    /// in status yet).
    pub state: String,
    /// `state` is `RenewalOverdue` or `Expired`.
    pub overdue: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustSummary {
    pub phase: String,
    /// `secretName (role)`, oldest first.
    pub cas: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
}

/// What `certs` reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    pub platform: Option<&'a Platform>,
    pub tenants: &'a [Tenant],
    pub portals: &'a [Portal],
    pub document_services: &'a [DocumentService],
    pub data_sharing: &'a [DataSharingService],
}

/// Every certificate in the statuses of `sources`, as of `now`; with `expiring`, only those whose
/// notAfter is within it.
pub fn build(sources: Sources<'_>, scope: Scope, now: Timestamp, expiring: Option<Duration>) -> CertsReport {
    let owners = objects::namespace_owners(sources.tenants);
    let tenant_of = |namespace: &Option<String>| {
        namespace.as_ref().map(|n| owners.get(n).map(|t| t.name_any()).unwrap_or_else(|| n.clone()))
    };
    let mut found: Vec<(String, String, Option<String>, &CertificateStatus)> = Vec::new();
    if let Some(platform) = sources.platform
        && let Some(ca) = platform.status.as_ref().and_then(|s| s.ca.as_ref())
    {
        found.push(("PlatformCA".into(), format!("Platform/{}", platform.name_any()), None, ca));
    }
    for tenant in sources.tenants {
        if let Some(ca) = tenant.status.as_ref().and_then(|s| s.ca.as_ref()) {
            found.push(("TenantCA".into(), format!("Tenant/{}", tenant.name_any()), Some(tenant.name_any()), ca));
        }
    }
    let path = |kind: &str, namespace: &Option<String>, name: String| {
        format!("{kind}/{}/{name}", namespace.as_deref().unwrap_or_default())
    };
    for portal in sources.portals {
        if let Some(cert) = portal.status.as_ref().and_then(|s| s.certificate.as_ref()) {
            let ns = portal.namespace();
            found.push(("PortalTLS".into(), path("Portal", &ns, portal.name_any()), tenant_of(&ns), cert));
        }
    }
    for service in sources.document_services {
        let ns = service.namespace();
        let status = service.status.as_ref();
        if let Some(cert) = status.and_then(|s| s.certificate.as_ref()) {
            let object = path("DocumentService", &ns, service.name_any());
            found.push(("DocumentServiceTLS".into(), object, tenant_of(&ns), cert));
        }
        if let Some(cert) = status.and_then(|s| s.signing_certificate.as_ref()) {
            let object = path("DocumentService", &ns, service.name_any());
            found.push(("DocumentSigning".into(), object, tenant_of(&ns), cert));
        }
        if let Some(cert) = status.and_then(|s| s.exchange_certificate.as_ref()) {
            let object = path("DocumentService", &ns, service.name_any());
            found.push(("DocumentExchangeClient".into(), object, tenant_of(&ns), cert));
        }
    }
    for service in sources.data_sharing {
        if let Some(cert) = service.status.as_ref().and_then(|s| s.client_certificate.as_ref()) {
            let ns = service.namespace();
            let object = path("DataSharingService", &ns, service.name_any());
            found.push(("LgspClient".into(), object, tenant_of(&ns), cert));
        }
    }
    let mut certificates: Vec<CertificateEntry> =
        found.into_iter().map(|(kind, object, tenant, cert)| entry(kind, object, tenant, cert, now)).collect();
    if let Some(window) = expiring {
        let limit = now.as_second().saturating_add(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
        certificates.retain(|c| c.not_after.as_deref().and_then(instant).is_some_and(|t| t.as_second() <= limit));
    }
    certificates.sort_by_key(|c| {
        (
            c.not_after.as_deref().and_then(instant).is_none(),
            c.not_after.as_deref().and_then(instant),
            c.object.clone(),
            c.kind.clone(),
        )
    });
    let trust = sources.platform.and_then(|p| p.status.as_ref()).and_then(|s| s.trust.as_ref()).map(|t| TrustSummary {
        phase: t.phase.clone(),
        cas: t.cas.iter().map(|ca| format!("{} ({})", ca.secret_name, ca.role)).collect(),
        waiting_for: t.waiting_for.clone(),
    });
    CertsReport {
        api_version: API_VERSION.into(),
        kind: "Certificates".into(),
        complete: scope == Scope::Complete,
        now: now.to_string(),
        expiring_within_seconds: expiring.map(|d| d.as_secs()),
        certificates,
        trust,
        notes: Vec::new(),
    }
}

fn instant(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

fn entry(
    kind: String,
    object: String,
    tenant: Option<String>,
    cert: &CertificateStatus,
    now: Timestamp,
) -> CertificateEntry {
    let not_after = cert.not_after.as_ref().map(|t| t.0);
    let renewal = cert.renewal_time.as_ref().map(|t| t.0);
    let state = match (not_after, renewal) {
        (None, _) => "Unknown",
        (Some(end), _) if end <= now => "Expired",
        (_, Some(renew)) if renew <= now => "RenewalOverdue",
        _ => "Valid",
    };
    CertificateEntry {
        kind,
        object,
        tenant,
        secret_name: cert.secret_name.clone(),
        serial: cert.serial.clone(),
        not_after: not_after.map(|t| t.to_string()),
        renewal_time: renewal.map(|t| t.to_string()),
        days_left: not_after.map(|end| (end.as_second() - now.as_second()).div_euclid(86_400)),
        state: state.into(),
        overdue: matches!(state, "Expired" | "RenewalOverdue"),
    }
}

/// `--expiring`: days (`30d`), or hours, minutes and seconds as the Platform's durations are
/// written (`720h`, `1h30m`).
pub fn parse_window(text: &str) -> Result<Duration, String> {
    if let Some(days) = text.strip_suffix('d') {
        return days
            .parse::<u64>()
            .ok()
            .filter(|d| *d <= 100_000)
            .map(|d| Duration::from_secs(d * 86_400))
            .ok_or_else(|| format!("{text:?} is not a number of days, like 30d"));
    }
    govpaas_crds::common::parse_duration(text).map_err(|_| {
        format!("{text:?} is not a duration: write days (30d) or hours, minutes and seconds (720h, 1h30m)")
    })
}

/// The certificates as a table, overdue ones flagged.
pub fn render(report: &CertsReport, colour: bool) -> String {
    let mut table = Table::new(&["kind", "object", "tenant", "not after", "renewal", "days", "state"]).right_align(5);
    for c in &report.certificates {
        let paint = match c.state.as_str() {
            "Valid" => Paint::Good,
            "RenewalOverdue" => Paint::Warning,
            "Expired" => Paint::Bad,
            _ => Paint::Dim,
        };
        let state = if c.overdue { format!("{} !", c.state) } else { c.state.clone() };
        table.push(vec![
            c.kind.as_str().into(),
            c.object.as_str().into(),
            c.tenant.clone().unwrap_or_else(|| "-".into()).into(),
            c.not_after.clone().unwrap_or_else(|| "-".into()).into(),
            c.renewal_time.clone().unwrap_or_else(|| "-".into()).into(),
            c.days_left.map(|d| d.to_string()).unwrap_or_else(|| "-".into()).into(),
            Cell::painted(state, paint),
        ]);
    }
    let mut out = if table.is_empty() { "no certificates\n".to_owned() } else { table.render(colour) };
    let overdue = report.certificates.iter().filter(|c| c.overdue).count();
    out.push_str(&format!(
        "{} certificates, {overdue} overdue (renewal time passed or expired)\n",
        report.certificates.len()
    ));
    if let Some(trust) = &report.trust {
        out.push_str(&format!("platform trust: {}, CAs: {}\n", trust.phase, trust.cas.join(", ")));
        if !trust.waiting_for.is_empty() {
            out.push_str(&format!("  the rotation waits for: {}\n", trust.waiting_for.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, time};
    use govpaas_crds::platform::{PlatformStatus, TrustStatus, TrustedCa};

    fn certificate(secret: &str, not_after: &str, renewal: &str) -> CertificateStatus {
        CertificateStatus {
            secret_name: Some(secret.into()),
            not_after: Some(time(not_after)),
            serial: Some("0a".into()),
            renewal_time: Some(time(renewal)),
        }
    }

    struct World {
        platform: Platform,
        tenants: Vec<Tenant>,
        portals: Vec<Portal>,
        documents: Vec<DocumentService>,
        sharing: Vec<DataSharingService>,
    }

    fn world() -> World {
        let mut platform = fixtures::platform();
        platform.status = Some(PlatformStatus {
            ca: Some(certificate("govpaas-ca", "2036-12-01T08:00:00Z", "2035-12-01T08:00:00Z")),
            trust: Some(TrustStatus {
                phase: "Stable".into(),
                cas: vec![TrustedCa {
                    secret_name: "govpaas-ca".into(),
                    fingerprint: "ab".into(),
                    role: "issuing".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut portals = fixtures::portals();
        for portal in &mut portals {
            let secret = format!("{}-portal-tls", portal.name_any());
            let status = portal.status.get_or_insert_default();
            status.certificate = Some(certificate(&secret, "2027-03-01T08:00:00Z", "2027-01-01T08:00:00Z"));
        }
        let mut documents = fixtures::document_services();
        let status = documents[0].status.get_or_insert_default();
        status.certificate = Some(certificate("van-ban-tls", "2027-02-01T08:00:00Z", "2026-12-02T08:00:00Z"));
        status.signing_certificate =
            Some(certificate("van-ban-signing", "2027-06-01T08:00:00Z", "2027-02-01T08:00:00Z"));
        status.exchange_certificate =
            Some(certificate("van-ban-docs-edoc-client", "2027-04-01T08:00:00Z", "2027-02-15T08:00:00Z"));
        let mut sharing = fixtures::data_sharing();
        let consumer = sharing.iter_mut().find(|s| s.name_any() == "mot-cua").unwrap();
        consumer.status.get_or_insert_default().client_certificate =
            Some(certificate("mot-cua-lgsp-client", "2026-12-04T08:00:00Z", "2026-11-30T08:00:00Z"));
        World { platform, tenants: fixtures::danang(), portals, documents, sharing }
    }

    fn sources(world: &World) -> Sources<'_> {
        Sources {
            platform: Some(&world.platform),
            tenants: &world.tenants,
            portals: &world.portals,
            document_services: &world.documents,
            data_sharing: &world.sharing,
        }
    }

    fn now() -> Timestamp {
        "2026-12-03T08:00:00Z".parse().unwrap()
    }

    #[test]
    fn every_certificate_in_status_soonest_first_with_overdue_flagged() {
        let world = world();
        let report = build(sources(&world), Scope::Complete, now(), None);
        let kinds: Vec<(&str, &str)> =
            report.certificates.iter().map(|c| (c.kind.as_str(), c.object.as_str())).collect();
        assert_eq!(
            kinds,
            [
                ("LgspClient", "DataSharingService/thanh-khe/mot-cua"),
                ("TenantCA", "Tenant/so-yte"),
                ("DocumentServiceTLS", "DocumentService/ubnd/van-ban"),
                ("PortalTLS", "Portal/hai-chau/mot-cua"),
                ("PortalTLS", "Portal/hoi-an/mot-cua"),
                ("PortalTLS", "Portal/so-yte/cong-thong-tin"),
                ("PortalTLS", "Portal/ubnd/dichvucong"),
                ("DocumentExchangeClient", "DocumentService/ubnd/van-ban"),
                ("DocumentSigning", "DocumentService/ubnd/van-ban"),
                ("TenantCA", "Tenant/ubnd"),
                ("PlatformCA", "Platform/default"),
            ]
        );
        let client = &report.certificates[0];
        assert_eq!((client.state.as_str(), client.overdue, client.days_left), ("RenewalOverdue", true, Some(1)));
        assert_eq!(client.tenant.as_deref(), Some("thanh-khe"));
        assert_eq!(client.not_after.as_deref(), Some("2026-12-04T08:00:00Z"));
        let tls = &report.certificates[2];
        assert_eq!((tls.state.as_str(), tls.overdue), ("RenewalOverdue", true), "renewal was due yesterday");
        let platform = report.certificates.last().unwrap();
        assert_eq!((platform.state.as_str(), platform.tenant.as_deref()), ("Valid", None));
        assert_eq!(report.trust.as_ref().unwrap().cas, ["govpaas-ca (issuing)"]);
    }

    #[test]
    fn expired_and_expiring() {
        let world = world();
        let later: Timestamp = "2026-12-25T08:00:00Z".parse().unwrap();
        let report = build(sources(&world), Scope::Complete, later, Some(Duration::from_secs(40 * 86_400)));
        let objects: Vec<(&str, &str)> =
            report.certificates.iter().map(|c| (c.object.as_str(), c.state.as_str())).collect();
        assert_eq!(
            objects,
            [
                ("DataSharingService/thanh-khe/mot-cua", "Expired"),
                ("Tenant/so-yte", "Expired"),
                ("DocumentService/ubnd/van-ban", "RenewalOverdue"),
            ]
        );
        assert_eq!(report.certificates[0].days_left, Some(-21));
        assert_eq!(report.expiring_within_seconds, Some(3_456_000));
    }

    #[test]
    fn windows() {
        assert_eq!(parse_window("30d"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_window("720h"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_window("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_window("thirty").unwrap_err().contains("30d"));
        assert!(parse_window("-3d").is_err());
    }

    #[test]
    fn the_table() {
        let world = world();
        let text = render(&build(sources(&world), Scope::Complete, now(), None), false);
        assert!(text.starts_with("KIND                    OBJECT                                TENANT     NOT AFTER             RENEWAL               DAYS  STATE\n"), "{text}");
        assert!(text.contains("LgspClient              DataSharingService/thanh-khe/mot-cua  thanh-khe  2026-12-04T08:00:00Z  2026-11-30T08:00:00Z     1  RenewalOverdue !\n"), "{text}");
        assert!(text.contains("11 certificates, 3 overdue"), "{text}");
        assert!(text.contains("platform trust: Stable, CAs: govpaas-ca (issuing)"), "{text}");
    }
}
