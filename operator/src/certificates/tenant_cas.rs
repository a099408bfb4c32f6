//! The tenant CAs loaded in this process, by tenant: the tenant controller publishes each CA it
//! loads or issues, and the service controllers issue their leaves with it instead of reading
//! the tenant CA's Secret and parsing its key on every reconcile.
//!
//! A CA is handed out only while it is still one to issue with: issued by the platform CA that
//! issues now (a rotation retires the others), not expired, and — checked by the caller, as for a
//! CA read from its Secret — for the tenant's agency and domain. The tenant controller publishes
//! again on each of its reconciles, so a renewed or re-issued CA replaces the old one as soon as
//! the tenant controller wrote it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use govpaas_pki::CertificateAuthority;
use time::OffsetDateTime;

/// The tenant CAs loaded, by tenant name.
#[derive(Default)]
pub struct TenantCas {
    loaded: Mutex<HashMap<String, Loaded>>,
}

struct Loaded {
    /// The fingerprint of the platform CA that was issuing when the CA was loaded.
    issuing: String,
    ca: Arc<CertificateAuthority>,
}

impl TenantCas {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Loaded>> {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `ca` is `tenant`'s CA, loaded (or issued) while `issuing` was the issuing platform CA.
    pub fn publish(&self, tenant: &str, issuing: &CertificateAuthority, ca: Arc<CertificateAuthority>) {
        self.lock().insert(tenant.to_owned(), Loaded { issuing: issuing.fingerprint().to_owned(), ca });
    }

    /// `tenant`'s CA, if one was published under the platform CA `issuing` and has not expired.
    pub fn get(
        &self,
        tenant: &str,
        issuing: &CertificateAuthority,
        now: OffsetDateTime,
    ) -> Option<Arc<CertificateAuthority>> {
        let loaded = self.lock();
        let entry = loaded.get(tenant)?;
        (entry.issuing == issuing.fingerprint() && entry.ca.not_after() > now).then(|| entry.ca.clone())
    }

    /// Forgets `tenant`'s CA (the tenant is gone).
    pub fn forget(&self, tenant: &str) {
        self.lock().remove(tenant);
    }
}

#[cfg(test)]
mod tests {
    use govpaas_pki::{IssuancePolicy, PlatformCaRequest, TenantCaRequest};

    use super::*;

    fn platform(now: OffsetDateTime) -> CertificateAuthority {
        govpaas_pki::generate_platform_ca(
            &PlatformCaRequest::new("danang.gov.vn", "UBND"),
            &IssuancePolicy::default(),
            now,
        )
        .unwrap()
    }

    #[test]
    fn a_published_ca_is_handed_out_only_under_its_issuing_ca_and_before_it_expires() {
        let now = OffsetDateTime::now_utc();
        let (issuing, other) = (platform(now), platform(now));
        let request = TenantCaRequest {
            base_domain: "danang.gov.vn".into(),
            agency_code: "H17.01".into(),
            display_name: "Sở Nội vụ".into(),
            domain: "so-noi-vu.danang.gov.vn".into(),
        };
        let tenant_ca = Arc::new(issuing.issue_tenant_ca(&request, &IssuancePolicy::default(), now).unwrap());
        let cas = TenantCas::default();
        assert!(cas.get("so-noi-vu", &issuing, now).is_none(), "nothing published yet");
        cas.publish("so-noi-vu", &issuing, tenant_ca.clone());
        assert!(cas.get("so-noi-vu", &issuing, now).is_some_and(|ca| Arc::ptr_eq(&ca, &tenant_ca)));
        assert!(cas.get("so-noi-vu", &other, now).is_none(), "another platform CA issues now");
        assert!(cas.get("so-noi-vu", &issuing, tenant_ca.not_after()).is_none(), "expired");
        cas.forget("so-noi-vu");
        assert!(cas.get("so-noi-vu", &issuing, now).is_none());
    }
}
