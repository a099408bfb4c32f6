//! govpaas's certificate authority, as a pure library: no Kubernetes client in here. The
//! controllers read Secrets, call these functions, and write back what they return.
//!
//! ```text
//! platform CA (generated root, or an intermediate imported from the government CA)
//!   └─ tenant CA per agency: pathLen 0, name-constrained to the tenant's DNS domain,
//!      URI SAN spiffe://<base-domain>/agency/<code>
//!        ├─ TLS server certificates (DNS SANs, serverAuth)
//!        ├─ LGSP client certificates (URI SAN spiffe://<base>/agency/<code>/<kind>/<name>, clientAuth)
//!        └─ document-signing certificates (digitalSignature + contentCommitment, documentSigning)
//! ```
//!
//! - [`authority`]: generate or import/load a CA ([`CertificateAuthority`]).
//! - [`tenant_ca`]: issue a tenant's intermediate.
//! - [`leaf`]: issue leaves, as `kubernetes.io/tls` Secret data.
//! - [`inspect`]: check a stored leaf Secret (hand-edited, corrupted, stale, foreign).
//! - [`renewal`]: the exact renewal instant, and gauge values.
//! - [`bundle`]: trust bundles through a CA rotation.
//! - [`verify`]: chain verification with rustls-webpki.
//! - [`tls`]: rustls configurations from Secrets, and an in-memory handshake.
//!
//! Every function that depends on the time takes `now`, so the controller and the tests decide
//! what time it is. `docs/certificates.md` explains the design to admins and auditors.

pub mod authority;
pub mod bundle;
mod error;
pub mod identity;
pub mod inspect;
mod key;
pub mod leaf;
mod pem;
pub mod policy;
pub mod renewal;
pub mod tenant_ca;
pub mod tls;
pub mod verify;

pub use authority::{CertificateAuthority, PlatformCaRequest, generate_platform_ca};
pub use bundle::{BundleCa, ChainAnchor, Progress, TrustRotation};
pub use error::{Error, Result};
pub use identity::{AgencyIdentity, WorkloadIdentity};
pub use inspect::{ExpectedLeaf, InspectedLeaf, inspect_leaf};
pub use key::{KeyAlgorithm, PrivateKeyPem};
pub use leaf::{
    ClientCertificateRequest, IssuedCertificate, LeafKind, ServerCertificateRequest, SigningCertificateRequest,
    TlsSecretData,
};
pub use policy::{IssuancePolicy, Lifetimes};
pub use renewal::{CertificateTimes, RenewalFraction};
pub use tenant_ca::TenantCaRequest;
pub use verify::TrustAnchors;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
