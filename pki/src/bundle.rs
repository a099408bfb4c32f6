//! The trust bundle during a CA rotation, as a pure state machine the controller persists (it
//! serialises to JSON) and drives with what it observes.
//!
//! ```text
//!  Stable{A} --begin(B)--> Distributing{A,B} --bundle_distributed--> Reissuing{A,B} --leaves_observed(none on A)--> Stable{B}
//!     bundle: A               bundle: A+B, leaves from A               bundle: A+B, leaves from B                      bundle: B
//! ```
//!
//! Nothing is ever served that a peer does not already trust: the new CA is added to every bundle
//! first; only once the bundles have reached every consumer (the controller confirms, after the
//! propagation delay) are leaves re-issued from it; the old CA leaves the bundle only when no leaf
//! chains to it any more. Before any leaf is re-issued the rotation can still be aborted.

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::pem::{self, certificates_from_pem, parse_certificate};
use super::{CertificateAuthority, Error, Result};

/// A CA as it appears in a trust bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleCa {
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

impl BundleCa {
    /// The bundle entry of a CA.
    pub fn of(ca: &CertificateAuthority) -> Self {
        BundleCa { fingerprint: ca.fingerprint().to_owned(), certificate_pem: ca.certificate_pem().to_owned() }
    }

    /// The bundle entry of a CA certificate given as PEM (exactly one certificate).
    pub fn from_pem(certificate_pem: &str) -> Result<Self> {
        let certs = certificates_from_pem("ca.crt", certificate_pem.as_bytes())?;
        let [cert] = certs.as_slice() else {
            return Err(Error::InvalidPem {
                field: "ca.crt",
                reason: format!("expected one CA certificate, found {}", certs.len()),
            });
        };
        parse_certificate("ca.crt", cert)?;
        Ok(BundleCa { fingerprint: pem::fingerprint(cert), certificate_pem: super::authority::der_to_pem(cert) })
    }

    /// True when `cert` is this CA, or was signed by it.
    pub fn anchors(&self, cert: &CertificateDer<'_>) -> bool {
        ParsedCa::of(self).is_some_and(|ca| ca.anchors(cert))
    }
}

/// A [`BundleCa`] decoded once, to check many certificates against it.
struct ParsedCa {
    fingerprint: String,
    der: CertificateDer<'static>,
}

impl ParsedCa {
    fn of(ca: &BundleCa) -> Option<Self> {
        let der = certificates_from_pem("ca.crt", ca.certificate_pem.as_bytes()).ok()?.into_iter().next()?;
        Some(ParsedCa { fingerprint: ca.fingerprint.clone(), der })
    }

    fn anchors(&self, cert: &CertificateDer<'_>) -> bool {
        if pem::fingerprint(cert) == self.fingerprint {
            return true;
        }
        let (Ok(ca), Ok(cert)) = (parse_certificate("ca.crt", &self.der), parse_certificate("tls.crt", cert)) else {
            return false;
        };
        cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
    }
}

/// Tells which CA of a rotation chains lead to, decoding the rotation's CAs once: what counting a
/// whole cluster's certificates needs.
pub struct AnchorClassifier {
    /// The current CA when stable; else old and new.
    old: Option<ParsedCa>,
    new: Option<ParsedCa>,
}

impl AnchorClassifier {
    /// Which CA `chain` (a leaf's `tls.crt`, leaf first) leads to.
    pub fn anchor_of(&self, chain: &[CertificateDer<'_>]) -> ChainAnchor {
        let Some(top) = chain.last() else {
            return ChainAnchor::Unknown;
        };
        if self.new.as_ref().is_some_and(|ca| ca.anchors(top)) {
            ChainAnchor::New
        } else if self.old.as_ref().is_some_and(|ca| ca.anchors(top)) {
            ChainAnchor::Old
        } else {
            ChainAnchor::Unknown
        }
    }
}

/// Which CA of a rotation a leaf's chain leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainAnchor {
    /// The CA being retired (or the only CA when stable).
    Old,
    /// The CA being introduced.
    New,
    /// Neither: the leaf is broken anyway and must be re-issued; it does not hold the rotation up.
    Unknown,
}

/// Where a rotation stands after the controller reported the leaves it found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Leaves still chaining to the old CA.
    pub on_old: usize,
    /// Leaves already chaining to the new CA.
    pub on_new: usize,
    /// Leaves chaining to neither.
    pub unknown: usize,
}

/// The rotation state of one trust bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase")]
pub enum TrustRotation {
    /// One CA, trusted and issuing.
    Stable {
        /// The CA.
        current: BundleCa,
    },
    /// Both CAs are trusted; leaves still come from the old one while the bundle propagates.
    Distributing {
        /// The CA being retired, still issuing.
        old: BundleCa,
        /// The CA being introduced.
        new: BundleCa,
        /// When the new CA entered the bundle, unix seconds.
        since: i64,
    },
    /// Both CAs are trusted; leaves are re-issued from the new one.
    Reissuing {
        /// The CA being retired.
        old: BundleCa,
        /// The CA now issuing.
        new: BundleCa,
    },
}

impl TrustRotation {
    /// A bundle with a single CA.
    pub fn new(current: BundleCa) -> Self {
        TrustRotation::Stable { current }
    }

    /// The phase's name, for status and metrics.
    pub fn phase(&self) -> &'static str {
        match self {
            TrustRotation::Stable { .. } => "Stable",
            TrustRotation::Distributing { .. } => "Distributing",
            TrustRotation::Reissuing { .. } => "Reissuing",
        }
    }

    /// The CAs in the bundle, oldest first.
    pub fn trusted(&self) -> Vec<&BundleCa> {
        match self {
            TrustRotation::Stable { current } => vec![current],
            TrustRotation::Distributing { old, new, .. } | TrustRotation::Reissuing { old, new } => {
                vec![old, new]
            }
        }
    }

    /// The bundle's PEM, as it goes into `ca.crt` and the trust bundle ConfigMap. The same state
    /// always gives the same bytes, so an unchanged world writes nothing.
    pub fn bundle_pem(&self) -> String {
        self.trusted().iter().map(|ca| ca.certificate_pem.as_str()).collect()
    }

    /// The CA that issues (new) leaves in this phase.
    pub fn issuing(&self) -> &BundleCa {
        match self {
            TrustRotation::Stable { current } => current,
            TrustRotation::Distributing { old, .. } => old,
            TrustRotation::Reissuing { new, .. } => new,
        }
    }

    /// Introduces `new` next to the current CA. Asking again for the same CA is a no-op; asking
    /// for another while a rotation runs is refused.
    pub fn begin(self, new: BundleCa, now: OffsetDateTime) -> Result<Self> {
        match self {
            TrustRotation::Stable { current } if current.fingerprint == new.fingerprint => {
                Err(Error::RotationConflict { reason: "the new CA is already the current one" })
            }
            TrustRotation::Stable { current } => {
                Ok(TrustRotation::Distributing { old: current, new, since: now.unix_timestamp() })
            }
            TrustRotation::Distributing { new: ref running, .. }
            | TrustRotation::Reissuing { new: ref running, .. }
                if running.fingerprint == new.fingerprint =>
            {
                Ok(self)
            }
            _ => Err(Error::RotationConflict {
                reason: "another rotation is under way; let it finish (or abort it) first",
            }),
        }
    }

    /// When re-issuing may start: `propagation_delay` after the new CA entered the bundle (time
    /// for kubelets to refresh mounted ConfigMaps and for the gateway to reload). `None` outside
    /// the Distributing phase.
    pub fn reissue_not_before(&self, propagation_delay: Duration) -> Option<OffsetDateTime> {
        match self {
            TrustRotation::Distributing { since, .. } => {
                OffsetDateTime::from_unix_timestamp(*since).ok().map(|t| t + propagation_delay)
            }
            _ => None,
        }
    }

    /// The controller has written the two-CA bundle everywhere and the propagation delay has
    /// passed: leaves may now come from the new CA. Idempotent in the Reissuing phase.
    pub fn bundle_distributed(self, now: OffsetDateTime, propagation_delay: Duration) -> Result<Self> {
        match self {
            TrustRotation::Distributing { old, new, since } => {
                if now.unix_timestamp() < since + propagation_delay.whole_seconds() {
                    return Err(Error::RotationConflict { reason: "the propagation delay has not passed yet" });
                }
                Ok(TrustRotation::Reissuing { old, new })
            }
            TrustRotation::Reissuing { .. } => Ok(self),
            TrustRotation::Stable { .. } => Err(Error::RotationConflict { reason: "no rotation is under way" }),
        }
    }

    /// Which CA of this rotation `chain` (a leaf's `tls.crt`, leaf first) leads to.
    pub fn anchor_of(&self, chain: &[CertificateDer<'_>]) -> ChainAnchor {
        self.classifier().anchor_of(chain)
    }

    /// [`TrustRotation::anchor_of`] for many chains.
    pub fn classifier(&self) -> AnchorClassifier {
        match self {
            TrustRotation::Stable { current } => AnchorClassifier { old: ParsedCa::of(current), new: None },
            TrustRotation::Distributing { old, new, .. } | TrustRotation::Reissuing { old, new } => {
                AnchorClassifier { old: ParsedCa::of(old), new: ParsedCa::of(new) }
            }
        }
    }

    /// The controller reports where every leaf of the bundle's scope chains to. In the Reissuing
    /// phase, once none is left on the old CA, the old CA is dropped and the bundle is stable again.
    pub fn leaves_observed(self, anchors: impl IntoIterator<Item = ChainAnchor>) -> (Self, Progress) {
        let mut progress = Progress::default();
        for anchor in anchors {
            match anchor {
                ChainAnchor::Old => progress.on_old += 1,
                ChainAnchor::New => progress.on_new += 1,
                ChainAnchor::Unknown => progress.unknown += 1,
            }
        }
        let next = match self {
            TrustRotation::Reissuing { new, .. } if progress.on_old == 0 => TrustRotation::Stable { current: new },
            other => other,
        };
        (next, progress)
    }

    /// Abandons a rotation before any leaf came from the new CA.
    pub fn abort(self) -> Result<Self> {
        match self {
            TrustRotation::Distributing { old, .. } => Ok(TrustRotation::Stable { current: old }),
            TrustRotation::Reissuing { .. } => Err(Error::RotationConflict {
                reason: "leaves are already being re-issued from the new CA; finish the rotation",
            }),
            TrustRotation::Stable { .. } => Err(Error::RotationConflict { reason: "no rotation is under way" }),
        }
    }
}
