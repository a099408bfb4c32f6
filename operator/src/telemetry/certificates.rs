//! Certificate gauges, computed at scrape time from what the controllers last saw (cert-manager's
//! model): `govpaas_certificate_expiration_timestamp_seconds` and
//! `govpaas_certificate_renewal_timestamp_seconds`, labelled by the Secret holding the certificate.

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

/// The certificates the operator keeps, as last seen.
#[derive(Debug, Default)]
pub struct CertificateGauges {
    certificates: RwLock<BTreeMap<CertificateKey, Times>>,
}

impl CertificateGauges {
    /// Records (or updates) a certificate's expiry and planned renewal, as unix seconds.
    pub fn observe(&self, key: CertificateKey, not_after: i64, renewal: i64) {
        let mut map = self.certificates.write().unwrap_or_else(|p| p.into_inner());
        map.insert(key, Times { not_after, renewal });
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
        let map = self.certificates.read().unwrap_or_else(|p| p.into_inner());
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

    #[test]
    fn gauges_are_computed_at_scrape_time() {
        let gauges = Arc::new(CertificateGauges::default());
        let metrics = Metrics::new(gauges.clone());
        let key = CertificateKey { namespace: "so-yte".into(), secret: "portal-tls".into(), kind: "server" };
        gauges.observe(key.clone(), 2_000_000_000, 1_900_000_000);
        let text = metrics.render();
        assert!(
            text.contains(
                "govpaas_certificate_expiration_timestamp_seconds{namespace=\"so-yte\",secret=\"portal-tls\",kind=\"server\"} 2000000000"
            ),
            "{text}"
        );
        assert!(text.contains("govpaas_certificate_renewal_timestamp_seconds{namespace=\"so-yte\",secret=\"portal-tls\",kind=\"server\"} 1900000000"), "{text}");
        gauges.forget(&key);
        assert!(!metrics.render().contains("portal-tls"));
    }
}
