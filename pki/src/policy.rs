//! What the Platform configures about issuance: key types, lifetimes, clock-skew allowance, renewal
//! point; and the two things every issued certificate shares: a random serial number and a validity
//! window.

use rcgen::SerialNumber;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::renewal::RenewalFraction;
use super::{Error, KeyAlgorithm, Result};

/// Bytes in a serial number: 16 random bytes of which 126 bits stay random (see `random_serial`)
/// — the CA/Browser Forum asks for at least 64 bits of entropy.
const SERIAL_BYTES: usize = 16;

/// How long each kind of certificate lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetimes {
    /// A generated platform root CA.
    #[serde(with = "seconds")]
    pub platform_ca: Duration,
    /// A tenant's intermediate CA.
    #[serde(with = "seconds")]
    pub tenant_ca: Duration,
    /// TLS server certificates of portals and services.
    #[serde(with = "seconds")]
    pub server: Duration,
    /// LGSP client certificates.
    #[serde(with = "seconds")]
    pub client: Duration,
    /// Document-signing certificates.
    #[serde(with = "seconds")]
    pub signing: Duration,
}

impl Default for Lifetimes {
    /// The Platform CRD's defaults: 87600h, 43800h, 2160h, 2160h, 8760h.
    fn default() -> Self {
        Lifetimes {
            platform_ca: Duration::days(10 * 365),
            tenant_ca: Duration::days(5 * 365),
            server: Duration::days(90),
            client: Duration::days(90),
            signing: Duration::days(365),
        }
    }
}

/// The issuance policy: everything the Platform lets an admin choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuancePolicy {
    /// Key type of generated CAs (platform and tenant).
    pub ca_key_algorithm: KeyAlgorithm,
    /// Key type of leaves. Keep ECDSA P-256 when browsers are among the clients.
    pub leaf_key_algorithm: KeyAlgorithm,
    /// Lifetimes per kind.
    pub lifetimes: Lifetimes,
    /// How far notBefore is set back from the issuing instant, so that a peer whose clock runs a
    /// little behind does not refuse a fresh certificate.
    #[serde(with = "seconds")]
    pub clock_skew_allowance: Duration,
    /// The fraction of a certificate's lifetime after which it is renewed.
    pub renewal: RenewalFraction,
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        IssuancePolicy {
            ca_key_algorithm: KeyAlgorithm::EcdsaP256,
            leaf_key_algorithm: KeyAlgorithm::EcdsaP256,
            lifetimes: Lifetimes::default(),
            clock_skew_allowance: Duration::minutes(5),
            renewal: RenewalFraction::default(),
        }
    }
}

impl IssuancePolicy {
    /// Checks the policy once, when the Platform is read: every lifetime is at least an hour and
    /// at most 100 years, the skew allowance between zero and an hour, and the key types
    /// generatable.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidPolicy { reason });
        for (name, lifetime) in [
            ("platform CA lifetime", self.lifetimes.platform_ca),
            ("tenant CA lifetime", self.lifetimes.tenant_ca),
            ("server certificate lifetime", self.lifetimes.server),
            ("client certificate lifetime", self.lifetimes.client),
            ("signing certificate lifetime", self.lifetimes.signing),
        ] {
            if lifetime < Duration::HOUR || lifetime > Duration::days(100 * 365) {
                return invalid(format!("{name} is {lifetime}; it must lie between 1 hour and 100 years"));
            }
        }
        if self.clock_skew_allowance.is_negative() || self.clock_skew_allowance > Duration::HOUR {
            return invalid(format!(
                "clock skew allowance is {}; it must lie between 0 and 1 hour",
                self.clock_skew_allowance
            ));
        }
        for alg in [self.ca_key_algorithm, self.leaf_key_algorithm] {
            if !KeyAlgorithm::GENERATABLE.contains(&alg) {
                return Err(Error::UnsupportedKeyAlgorithm { algorithm: alg.name() });
            }
        }
        Ok(())
    }

    /// The validity window of a certificate issued at `now` for `lifetime`: notBefore backdated by
    /// the skew allowance, notAfter never beyond the issuer's own notAfter (a certificate that
    /// outlives its issuer would only fail later, and less clearly).
    pub(crate) fn validity(
        &self,
        now: OffsetDateTime,
        lifetime: Duration,
        issuer_not_after: Option<OffsetDateTime>,
    ) -> Result<(OffsetDateTime, OffsetDateTime)> {
        // X.509 times have whole seconds; truncating here keeps what we compute equal to what a
        // parser reads back.
        let now = now.replace_nanosecond(0).unwrap_or(now);
        if let Some(issuer_not_after) = issuer_not_after
            && issuer_not_after <= now
        {
            return Err(Error::Expired { not_after: issuer_not_after });
        }
        let not_before = now - self.clock_skew_allowance;
        let not_after = now + lifetime;
        let not_after = issuer_not_after.map_or(not_after, |limit| not_after.min(limit));
        Ok((not_before, not_after))
    }
}

/// A fresh random serial number from the operating system's CSPRNG.
pub(crate) fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; SERIAL_BYTES];
    SystemRandom::new().fill(&mut bytes).map_err(|_| Error::KeyGeneration(rcgen::Error::RingUnspecified))?;
    // Positive, and never a leading zero byte, so the DER INTEGER keeps all 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Durations serialised as whole seconds, as a Platform's spec and status carry them.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        i64::deserialize(d).map(Duration::seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_is_valid() {
        IssuancePolicy::default().validate().unwrap();
    }

    #[test]
    fn out_of_range_policies_are_refused() {
        let mut p = IssuancePolicy::default();
        p.lifetimes.server = Duration::minutes(5);
        assert_eq!(p.validate().unwrap_err().label(), "InvalidPolicy");
        let p = IssuancePolicy { clock_skew_allowance: Duration::minutes(-1), ..IssuancePolicy::default() };
        assert_eq!(p.validate().unwrap_err().label(), "InvalidPolicy");
        let p = IssuancePolicy { ca_key_algorithm: KeyAlgorithm::Rsa, ..IssuancePolicy::default() };
        assert_eq!(p.validate().unwrap_err().label(), "UnsupportedKeyAlgorithm");
    }

    #[test]
    fn validity_is_backdated_and_clamped_to_the_issuer() {
        let p = IssuancePolicy::default();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (nb, na) = p.validity(now, Duration::days(90), None).unwrap();
        assert_eq!(nb, now - Duration::minutes(5));
        assert_eq!(na, now + Duration::days(90));
        let issuer_end = now + Duration::days(10);
        let (_, na) = p.validity(now, Duration::days(90), Some(issuer_end)).unwrap();
        assert_eq!(na, issuer_end);
        let err = p.validity(now, Duration::days(90), Some(now)).unwrap_err();
        assert_eq!(err.label(), "Expired");
    }

    #[test]
    fn serials_are_random_positive_and_full_length() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_eq!(a.len(), 16);
        assert!(a[0] & 0x80 == 0 && a[0] != 0);
        assert_ne!(a, b);
    }

    #[test]
    fn policy_serialises_durations_as_seconds() {
        let json = serde_json::to_value(IssuancePolicy::default()).unwrap();
        assert_eq!(json["lifetimes"]["server"], 90 * 24 * 3600);
        assert_eq!(json["clock_skew_allowance"], 300);
        let back: IssuancePolicy = serde_json::from_value(json).unwrap();
        assert_eq!(back, IssuancePolicy::default());
    }
}
