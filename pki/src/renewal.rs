//! When a certificate is renewed, to the second, and the numbers the controller exports as gauges.
//!
//! A certificate is renewed once a fixed fraction of its lifetime (notBefore to notAfter) has
//! passed: two thirds by default, as cert-manager does. The controller does not poll: it asks to be
//! requeued at exactly [`renewal_time`] of the earliest certificate it owns.

use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::pem::{certificates_from_pem, parse_certificate};
use super::{Error, Result};

/// cert-manager's `certmanager_certificate_expiration_timestamp_seconds`, for govpaas.
pub const EXPIRATION_TIMESTAMP_GAUGE: &str = "govpaas_certificate_expiration_timestamp_seconds";
/// cert-manager's `certmanager_certificate_renewal_timestamp_seconds`, for govpaas.
pub const RENEWAL_TIMESTAMP_GAUGE: &str = "govpaas_certificate_renewal_timestamp_seconds";
/// cert-manager's `certmanager_certificate_not_before_timestamp_seconds`, for govpaas.
pub const NOT_BEFORE_TIMESTAMP_GAUGE: &str = "govpaas_certificate_not_before_timestamp_seconds";

/// The fraction of its lifetime after which a certificate is renewed, as an exact ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawFraction", into = "RawFraction")]
pub struct RenewalFraction {
    numerator: u32,
    denominator: u32,
}

#[derive(Serialize, Deserialize)]
struct RawFraction {
    numerator: u32,
    denominator: u32,
}

impl TryFrom<RawFraction> for RenewalFraction {
    type Error = Error;
    fn try_from(raw: RawFraction) -> Result<Self> {
        RenewalFraction::new(raw.numerator, raw.denominator)
    }
}

impl From<RenewalFraction> for RawFraction {
    fn from(f: RenewalFraction) -> Self {
        RawFraction { numerator: f.numerator, denominator: f.denominator }
    }
}

impl Default for RenewalFraction {
    /// Two thirds.
    fn default() -> Self {
        RenewalFraction { numerator: 2, denominator: 3 }
    }
}

impl RenewalFraction {
    /// `numerator / denominator`, strictly between 0 and 1: renewing at the very start would renew
    /// forever, at the very end too late.
    pub fn new(numerator: u32, denominator: u32) -> Result<Self> {
        if numerator == 0 || numerator >= denominator {
            return Err(Error::InvalidPolicy {
                reason: format!("renewal fraction {numerator}/{denominator} must lie strictly between 0 and 1"),
            });
        }
        Ok(RenewalFraction { numerator, denominator })
    }

    /// A whole percentage, 1 to 99.
    pub fn from_percent(percent: u32) -> Result<Self> {
        Self::new(percent, 100)
    }

    /// The numerator.
    pub fn numerator(self) -> u32 {
        self.numerator
    }

    /// The denominator.
    pub fn denominator(self) -> u32 {
        self.denominator
    }
}

/// The instant a certificate valid from `not_before` to `not_after` is due for renewal:
/// `not_before + lifetime × fraction`, rounded down to the second. Exact integer arithmetic, so two
/// thirds of 90 days is 60 days to the second.
pub fn renewal_time(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    fraction: RenewalFraction,
) -> OffsetDateTime {
    let lifetime = i128::from((not_after - not_before).whole_seconds().max(0));
    let elapsed = lifetime * i128::from(fraction.numerator) / i128::from(fraction.denominator);
    // elapsed ≤ lifetime, which came from an i64.
    not_before + Duration::seconds(i64::try_from(elapsed).unwrap_or(i64::MAX))
}

/// True when the certificate should be renewed at `now`.
pub fn is_due(
    now: OffsetDateTime,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    fraction: RenewalFraction,
) -> bool {
    now >= renewal_time(not_before, not_after, fraction)
}

/// How long the controller waits before it looks again: until `at`, or zero when `at` has passed.
/// Rounded up to the next whole second so that the requeue never fires just before the instant.
pub fn requeue_after(now: OffsetDateTime, at: OffsetDateTime) -> StdDuration {
    let wait = at - now;
    if wait <= Duration::ZERO {
        return StdDuration::ZERO;
    }
    let secs = wait.whole_seconds() + i64::from(wait.subsec_nanoseconds() > 0);
    StdDuration::from_secs(u64::try_from(secs).unwrap_or(u64::MAX))
}

/// The earliest of a set of instants (the next renewal among all certificates of an object).
pub fn earliest(times: impl IntoIterator<Item = OffsetDateTime>) -> Option<OffsetDateTime> {
    times.into_iter().min()
}

/// The validity window of an issued certificate, read from its PEM: what the controller puts in
/// status and exports as gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertificateTimes {
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl CertificateTimes {
    /// Reads the first certificate of a PEM chain (the leaf of a `tls.crt`).
    pub fn from_pem(field: &'static str, pem: &[u8]) -> Result<Self> {
        let chain = certificates_from_pem(field, pem)?;
        let cert = parse_certificate(field, &chain[0])?;
        Ok(CertificateTimes {
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }

    /// The renewal instant under `fraction`.
    pub fn renewal_time(&self, fraction: RenewalFraction) -> OffsetDateTime {
        renewal_time(self.not_before, self.not_after, fraction)
    }

    /// The value of [`EXPIRATION_TIMESTAMP_GAUGE`]: notAfter in unix seconds.
    pub fn expiration_timestamp_seconds(&self) -> i64 {
        self.not_after.unix_timestamp()
    }

    /// The value of [`RENEWAL_TIMESTAMP_GAUGE`]: the renewal instant in unix seconds.
    pub fn renewal_timestamp_seconds(&self, fraction: RenewalFraction) -> i64 {
        self.renewal_time(fraction).unix_timestamp()
    }

    /// The value of [`NOT_BEFORE_TIMESTAMP_GAUGE`]: notBefore in unix seconds.
    pub fn not_before_timestamp_seconds(&self) -> i64 {
        self.not_before.unix_timestamp()
    }
}

/// notAfter of the leaf in `tls_crt`, in unix seconds: the expiration gauge, computed at scrape time.
pub fn expiration_timestamp_seconds(tls_crt: &[u8]) -> Result<i64> {
    Ok(CertificateTimes::from_pem("tls.crt", tls_crt)?.expiration_timestamp_seconds())
}

/// The renewal instant of the leaf in `tls_crt`, in unix seconds: the renewal gauge.
pub fn renewal_timestamp_seconds(tls_crt: &[u8], fraction: RenewalFraction) -> Result<i64> {
    Ok(CertificateTimes::from_pem("tls.crt", tls_crt)?.renewal_timestamp_seconds(fraction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{now, platform_and_tenant};
    use crate::{IssuancePolicy, ServerCertificateRequest};

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    #[test]
    fn two_thirds_of_ninety_days_is_sixty_days_to_the_second() {
        let nb = t(1_800_000_000);
        let na = nb + Duration::days(90);
        assert_eq!(renewal_time(nb, na, RenewalFraction::default()), nb + Duration::days(60));
    }

    #[test]
    fn rounding_is_down_to_the_second() {
        let nb = t(1_000);
        // 100 s × 2/3 = 66.67 s → 66 s.
        assert_eq!(renewal_time(nb, nb + Duration::seconds(100), RenewalFraction::default()), t(1_066));
    }

    #[test]
    fn configurable_fractions() {
        let nb = t(0);
        let na = t(1_000);
        let f = RenewalFraction::from_percent(80).unwrap();
        assert_eq!(renewal_time(nb, na, f), t(800));
        let f = RenewalFraction::new(1, 2).unwrap();
        assert_eq!(renewal_time(nb, na, f), t(500));
        for (n, d) in [(0, 3), (3, 3), (4, 3), (1, 0)] {
            assert_eq!(RenewalFraction::new(n, d).unwrap_err().label(), "InvalidPolicy");
        }
        assert!(RenewalFraction::from_percent(100).is_err());
    }

    #[test]
    fn fraction_deserialisation_is_validated() {
        let ok: RenewalFraction = serde_json::from_str(r#"{"numerator":3,"denominator":4}"#).unwrap();
        assert_eq!(ok, RenewalFraction::new(3, 4).unwrap());
        assert!(serde_json::from_str::<RenewalFraction>(r#"{"numerator":5,"denominator":4}"#).is_err());
    }

    #[test]
    fn due_and_requeue() {
        let nb = t(0);
        let na = t(3_000);
        let f = RenewalFraction::default();
        assert!(!is_due(t(1_999), nb, na, f));
        assert!(is_due(t(2_000), nb, na, f));
        assert_eq!(requeue_after(t(1_500), t(2_000)), StdDuration::from_secs(500));
        assert_eq!(requeue_after(t(2_500), t(2_000)), StdDuration::ZERO);
        let half_second_before = t(2_000) - Duration::milliseconds(1_500);
        assert_eq!(requeue_after(half_second_before, t(2_000)), StdDuration::from_secs(2));
        assert_eq!(earliest([t(5), t(3), t(9)]), Some(t(3)));
        assert_eq!(earliest([]), None);
    }

    #[test]
    fn gauges_come_from_the_issued_certificate() {
        let (_, tenant) = platform_and_tenant();
        let policy = IssuancePolicy::default();
        let t0 = now();
        let issued = tenant
            .issue_server_certificate(&ServerCertificateRequest::new(["portal.h49.quangnam.gov.vn"]), &policy, t0)
            .unwrap();
        let crt = issued.chain_pem().as_bytes();
        let issued_at = t0.replace_nanosecond(0).unwrap();
        let not_after = issued_at + Duration::days(90);
        let not_before = issued_at - Duration::minutes(5);
        assert_eq!(expiration_timestamp_seconds(crt).unwrap(), not_after.unix_timestamp());
        let expected_renewal = renewal_time(not_before, not_after, policy.renewal);
        assert_eq!(renewal_timestamp_seconds(crt, policy.renewal).unwrap(), expected_renewal.unix_timestamp());
        let times = CertificateTimes::from_pem("tls.crt", crt).unwrap();
        assert_eq!(times.not_before_timestamp_seconds(), not_before.unix_timestamp());
        assert_eq!(issued.renewal_time(policy.renewal), expected_renewal);
        assert_eq!(expiration_timestamp_seconds(b"not a certificate").unwrap_err().label(), "InvalidPem");
    }
}
