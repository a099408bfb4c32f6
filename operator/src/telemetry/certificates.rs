//! Certificate gauges, computed at scrape time (cert-manager's model):
//! `govpaas_certificate_expiration_timestamp_seconds` and
//! `govpaas_certificate_renewal_timestamp_seconds`, labelled by the Secret holding the certificate.
//! The services' certificates are read, at each scrape, from the statuses in the controllers'
//! caches ([`CertificateGauges::read_from`]): an object gone from the cache is gone from the
//! gauges, with no bookkeeping. The CAs, which no status lists in full (a rotation holds two
//! platform CAs), are recorded by their controllers as they load them.

use std::collections::BTreeMap;
use std::sync::RwLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// Which certificate: the Secret that holds it and what it is for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct CertificateKey {
    pub namespace: String,
    pub secret: String,
    /// `platform-ca`, `tenant-ca`, `server`, `client` or `signing`.
    pub kind: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Times {
    not_after: i64,
    renewal: i64,
}

/// A certificate as a status records it: expiry and planned renewal, in unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub key: CertificateKey,
    pub not_after: i64,
    pub renewal: i64,
}

/// Reads certificates from a cache, at scrape time.
type Source = Box<dyn Fn() -> Vec<Observed> + Send + Sync>;

/// The certificates the operator keeps: the CAs as last loaded, the rest read from caches.
#[derive(Default)]
pub struct CertificateGauges {
    certificates: RwLock<BTreeMap<CertificateKey, Times>>,
    sources: RwLock<Vec<Source>>,
}

impl std::fmt::Debug for CertificateGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources = self.sources.read().map_or(0, |s| s.len());
        f.debug_struct("CertificateGauges")
            .field("certificates", &self.certificates)
            .field("sources", &sources)
            .finish()
    }
}

impl CertificateGauges {
    /// Records (or updates) a certificate's expiry and planned renewal, as unix seconds.
    pub fn observe(&self, key: CertificateKey, not_after: i64, renewal: i64) {
        let mut map = self.certificates.write().unwrap_or_else(|p| p.into_inner());
        map.insert(key, Times { not_after, renewal });
    }

    /// Reads certificates from `source` at every scrape (the statuses in a controller's cache).
    pub fn read_from(&self, source: impl Fn() -> Vec<Observed> + Send + Sync + 'static) {
        self.sources.write().unwrap_or_else(|p| p.into_inner()).push(Box::new(source));
    }

    /// Every certificate now: those recorded, and those the sources read.
    fn snapshot(&self) -> BTreeMap<CertificateKey, Times> {
        let mut all = self.certificates.read().unwrap_or_else(|p| p.into_inner()).clone();
        for source in self.sources.read().unwrap_or_else(|p| p.into_inner()).iter() {
            for observed in source() {
                all.insert(observed.key, Times { not_after: observed.not_after, renewal: observed.renewal });
            }
        }
        all
    }

    /// Forgets every certificate `unwanted` picks.
    pub fn forget_where(&self, unwanted: impl Fn(&CertificateKey) -> bool) {
        let mut map = self.certificates.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|key, _| !unwanted(key));
    }

    /// Forgets a certificate whose Secret is gone.
    pub fn forget(&self, key: &CertificateKey) {
        let mut map = self.certificates.write().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

/// A gauge's name, help text and how to read it from a certificate's times.
type GaugeSeries = (&'static str, &'static str, fn(&Times) -> i64);

impl Collector for CertificateGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let map = self.snapshot();
        let series: [GaugeSeries; 2] = [
            ("certificate_expiration_timestamp_seconds", "The certificate's notAfter, in unix seconds", |t| {
                t.not_after
            }),
            (
                "certificate_renewal_timestamp_seconds",
                "When the operator renews the certificate, in unix seconds",
                |t| t.renewal,
            ),
        ];
        for (name, help, value) in series {
            let gauge = ConstGauge::new(0i64);
            let mut family = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            for (key, times) in map.iter() {
                ConstGauge::new(value(times)).encode(family.encode_family(key)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::telemetry::Metrics;

    // The services' certificates, read from the caches at scrape time, are checked end to end,
    // from an issued certificate, where statuses become gauges (`service/certificate_gauges.rs`).

    #[test]
    fn a_ca_is_shown_as_recorded_until_forgotten() {
        let gauges = Arc::new(CertificateGauges::default());
        let metrics = Metrics::new(gauges.clone());
        // A CA, recorded by its controller as it loads it, until forgotten.
        let ca =
            CertificateKey { namespace: "govpaas-system".into(), secret: "platform-ca".into(), kind: "platform-ca" };
        gauges.observe(ca.clone(), 2_200_000_000, 2_150_000_000);
        assert!(metrics.render().contains("secret=\"platform-ca\",kind=\"platform-ca\"} 2200000000"));
        gauges.forget(&ca);
        assert!(!metrics.render().contains("platform-ca"));
    }
}
