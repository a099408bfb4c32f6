//! Key algorithms and private key material.

use std::fmt;

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Error, Result};

/// The key type of a CA or a leaf.
///
/// rcgen on ring generates ECDSA P-256, ECDSA P-384 and Ed25519 keys. ring has no RSA key
/// generation, so `Rsa` is only ever the type of an *imported* CA (for example an intermediate
/// issued by the government CA); asking to generate one is refused with
/// [`Error::UnsupportedKeyAlgorithm`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256: the default, accepted by every browser and TLS stack.
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519. Fine between govpaas components (rustls); browsers do not accept it for TLS.
    Ed25519,
    /// RSA (PKCS#1 v1.5 with SHA-256 signatures): import only.
    Rsa,
}

impl KeyAlgorithm {
    /// Every algorithm this build can generate keys for.
    pub const GENERATABLE: [KeyAlgorithm; 3] =
        [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519];

    /// The name used in configuration and messages.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "EcdsaP256",
            KeyAlgorithm::EcdsaP384 => "EcdsaP384",
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::Rsa => "Rsa",
        }
    }

    /// Generates a fresh key pair of this type from the operating system's CSPRNG.
    pub fn generate(self) -> Result<KeyPair> {
        let alg = match self {
            KeyAlgorithm::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &PKCS_ECDSA_P384_SHA384,
            KeyAlgorithm::Ed25519 => &PKCS_ED25519,
            KeyAlgorithm::Rsa => {
                return Err(Error::UnsupportedKeyAlgorithm { algorithm: self.name() });
            }
        };
        KeyPair::generate_for(alg).map_err(Error::KeyGeneration)
    }

    /// The algorithm of an existing key pair.
    pub fn of(key: &KeyPair) -> KeyAlgorithm {
        let alg = key.algorithm();
        if alg == &PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::EcdsaP256
        } else if alg == &PKCS_ECDSA_P384_SHA384 {
            KeyAlgorithm::EcdsaP384
        } else if alg == &PKCS_ED25519 {
            KeyAlgorithm::Ed25519
        } else {
            // rcgen on ring loads exactly four key types; the fourth is RSA.
            KeyAlgorithm::Rsa
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa]
            .into_iter()
            .find(|alg| alg.name() == s)
            .ok_or_else(|| Error::InvalidName {
                what: "key algorithm",
                value: s.to_owned(),
                reason: "expected one of EcdsaP256, EcdsaP384, Ed25519, Rsa",
            })
    }
}

/// A PEM-encoded PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`).
///
/// Its `Debug` output is redacted and it has no `Display`, so a key cannot end up in a log line by
/// accident; the memory is zeroed on drop. Reading it takes an explicit [`PrivateKeyPem::expose`].
pub struct PrivateKeyPem(Zeroizing<String>);

impl PrivateKeyPem {
    pub(crate) fn from_key_pair(key: &KeyPair) -> Self {
        PrivateKeyPem(Zeroizing::new(key.serialize_pem()))
    }

    /// The PEM text, for writing into a Secret's `tls.key`. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_every_generatable_algorithm() {
        for alg in KeyAlgorithm::GENERATABLE {
            let key = alg.generate().unwrap();
            assert_eq!(KeyAlgorithm::of(&key), alg);
        }
    }

    #[test]
    fn rsa_generation_is_refused_with_a_clear_error() {
        let err = KeyAlgorithm::Rsa.generate().unwrap_err();
        assert_eq!(err.label(), "UnsupportedKeyAlgorithm");
        assert!(err.to_string().contains("import"), "{err}");
    }

    #[test]
    fn names_round_trip() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Ed25519, KeyAlgorithm::Rsa] {
            assert_eq!(alg.name().parse::<KeyAlgorithm>().unwrap(), alg);
        }
        assert_eq!("rsa4096".parse::<KeyAlgorithm>().unwrap_err().label(), "InvalidName");
    }

    #[test]
    fn private_key_debug_is_redacted() {
        let key = KeyAlgorithm::EcdsaP256.generate().unwrap();
        let pem = PrivateKeyPem::from_key_pair(&key);
        assert!(pem.expose().starts_with("-----BEGIN PRIVATE KEY-----"));
        let debug = format!("{pem:?}");
        assert_eq!(debug, "PrivateKeyPem(<redacted>)");
        assert!(!debug.contains("BEGIN"));
    }
}
