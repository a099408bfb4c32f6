//! Certificates as one concept: everything the operator's controllers do with the CA library
//! (`govpaas_pki`, which has no Kubernetes client).
//!
//! - [`ca_secrets`]: load (or create, once) the platform and tenant CA Secrets, the issuance policy;
//! - [`leaf`]: keep a stored leaf Secret or issue a new one from the tenant CA;
//! - [`trust_state`]: the persisted platform trust (which CA issues, which bundles carry which CAs)
//!   and the pure decision of a CA rotation's next step;
//! - [`trust_store`]: the ConfigMap that state lives in, and [`trust_store::PlatformTrust`], what the
//!   tenant and service controllers issue with;
//! - [`tenant_cas`]: the tenant CAs loaded in this process, which the service controllers issue
//!   with (the tenant controller publishes each one it loads);
//! - [`published`]: the watch channel on which the trust controller publishes that platform trust
//!   (the tenant and service controllers never read the platform CA's Secret themselves).
//!
//! The controllers that write CAs are elsewhere: the tenant CA's in `tenant`, the platform CA's and
//! the rotation's in `trust`.

pub mod ca_secrets;
pub mod leaf;
pub mod published;
pub mod tenant_cas;
pub mod trust_state;
pub mod trust_store;

/// The ConfigMap in each tenant namespace that carries the platform trust bundle (written by the
/// tenant controller, counted by the CA rotation's census).
pub const TRUST_BUNDLE: &str = "govpaas-trust-bundle";

use std::fmt;

/// The PEM texts of a `kubernetes.io/tls` Secret: what the build functions put into the TLS and
/// signing Secrets. Issued (or read back and checked) by [`leaf`].
#[derive(Clone, PartialEq, Eq)]
pub struct TlsMaterial {
    /// The leaf followed by the tenant CA.
    pub tls_crt: String,
    /// The leaf's PKCS#8 private key.
    pub tls_key: String,
    /// The trust bundle: the platform CA.
    pub ca_crt: String,
    /// The resourceVersion of the stored Secret this material was decided from (kept, or issued
    /// to replace it); `None` when there was no Secret. The Secret is applied on that condition:
    /// one edited after it was read (by hand, mid-reconcile) is never overwritten with a decision
    /// about its old content — the apply fails with a conflict and the next reconcile checks it.
    pub decided_from: Option<String>,
}

impl fmt::Debug for TlsMaterial {
    // Never print a private key, not even in a test failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("tls_crt", &self.tls_crt)
            .field("tls_key", &"<redacted>")
            .field("ca_crt", &self.ca_crt)
            .field("decided_from", &self.decided_from)
            .finish()
    }
}
