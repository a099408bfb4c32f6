//! rustls configurations built from govpaas Secrets, and an in-memory TLS handshake between them.
//!
//! The handshake helpers are what "the certificates work" means in tests: the unit tests here, and
//! the cluster integration test that rebuilds the configurations from the Secrets at every step of
//! a CA rotation. No sockets: the two rustls state machines exchange bytes through buffers.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, ServerConfig, ServerConnection};

use super::pem::certificates_from_pem;
use super::verify::TrustAnchors;
use super::{Error, Result};

/// rustls's ring provider: the same library rcgen signs with.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn private_key(field: &'static str, pem: &[u8]) -> Result<PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| Error::InvalidPem { field, reason: format!("no private key found: {e}") })
}

/// A TLS server configuration from a Secret's `tls.crt` and `tls.key`. With `client_trust`,
/// clients must present a certificate that verifies against it (mutual TLS).
pub fn server_config(tls_crt: &[u8], tls_key: &[u8], client_trust: Option<&TrustAnchors>) -> Result<Arc<ServerConfig>> {
    let chain = certificates_from_pem("tls.crt", tls_crt)?;
    let key = private_key("tls.key", tls_key)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(Error::Tls)?;
    let builder = match client_trust {
        Some(trust) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(trust.root_store()?), provider())
                .build()
                .map_err(|e| Error::Tls(rustls::Error::General(e.to_string())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map(Arc::new).map_err(Error::Tls)
}

/// A TLS client configuration trusting `trust`; with `client_cert` (`tls.crt`, `tls.key`), it
/// authenticates with that certificate.
pub fn client_config(trust: &TrustAnchors, client_cert: Option<(&[u8], &[u8])>) -> Result<Arc<ClientConfig>> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_root_certificates(trust.root_store()?);
    let config = match client_cert {
        Some((crt, key)) => builder
            .with_client_auth_cert(certificates_from_pem("tls.crt", crt)?, private_key("tls.key", key)?)
            .map_err(Error::Tls)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// What a successful handshake established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeOutcome {
    /// The negotiated protocol version.
    pub protocol: Option<ProtocolVersion>,
    /// How many certificates the server sent (leaf + intermediates).
    pub server_chain_len: usize,
    /// How many certificates the client sent (0 without mutual TLS).
    pub client_chain_len: usize,
}

/// Runs a full handshake between `client` and `server` in memory for `server_name`, then sends one
/// message each way. Any refusal (unknown issuer, wrong name, expired, missing client
/// certificate…) comes back as [`Error::Tls`].
pub fn handshake(client: Arc<ClientConfig>, server: Arc<ServerConfig>, server_name: &str) -> Result<HandshakeOutcome> {
    let name = ServerName::try_from(server_name.to_owned()).map_err(|_| Error::InvalidName {
        what: "server name",
        value: server_name.to_owned(),
        reason: "not a valid server name",
    })?;
    let mut client = ClientConnection::new(client, name).map_err(Error::Tls)?;
    let mut server = ServerConnection::new(server).map_err(Error::Tls)?;

    // Each round moves everything pending in both directions; a TLS 1.3 handshake with client
    // authentication needs three flights, so a bound of 16 rounds only stops a broken peer.
    for _ in 0..16 {
        if !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
        pump(&mut client, &mut server)?;
        pump(&mut server, &mut client)?;
    }
    if client.is_handshaking() || server.is_handshaking() {
        return Err(Error::Tls(rustls::Error::General("the handshake did not complete".to_owned())));
    }

    client.writer().write_all(b"ping").map_err(|e| Error::Tls(rustls::Error::General(e.to_string())))?;
    pump(&mut client, &mut server)?;
    expect_plaintext(&mut server, b"ping")?;
    server.writer().write_all(b"pong").map_err(|e| Error::Tls(rustls::Error::General(e.to_string())))?;
    pump(&mut server, &mut client)?;
    expect_plaintext(&mut client, b"pong")?;

    Ok(HandshakeOutcome {
        protocol: client.protocol_version(),
        server_chain_len: client.peer_certificates().map_or(0, <[_]>::len),
        client_chain_len: server.peer_certificates().map_or(0, <[_]>::len),
    })
}

/// A handshake against a server built from a leaf Secret's `tls.crt`/`tls.key`, by a client that
/// trusts `bundle_pem` (a `ca.crt` or trust bundle ConfigMap).
pub fn handshake_ok(
    server_tls_crt: &[u8],
    server_tls_key: &[u8],
    bundle_pem: &[u8],
    server_name: &str,
) -> Result<HandshakeOutcome> {
    let trust = TrustAnchors::from_pem(bundle_pem)?;
    handshake(client_config(&trust, None)?, server_config(server_tls_crt, server_tls_key, None)?, server_name)
}

/// A mutual-TLS handshake, as between an LGSP consumer and the gateway: both sides trust
/// `bundle_pem`, the server requires the client's certificate.
pub fn mutual_handshake_ok(
    server_tls: (&[u8], &[u8]),
    client_tls: (&[u8], &[u8]),
    bundle_pem: &[u8],
    server_name: &str,
) -> Result<HandshakeOutcome> {
    let trust = TrustAnchors::from_pem(bundle_pem)?;
    handshake(
        client_config(&trust, Some(client_tls))?,
        server_config(server_tls.0, server_tls.1, Some(&trust))?,
        server_name,
    )
}

/// Moves every pending TLS record from `from` to `to` and lets `to` process them.
fn pump<A, B, DA, DB>(from: &mut A, to: &mut B) -> Result<()>
where
    A: std::ops::DerefMut<Target = rustls::ConnectionCommon<DA>>,
    B: std::ops::DerefMut<Target = rustls::ConnectionCommon<DB>>,
{
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).map_err(|e| Error::Tls(rustls::Error::General(e.to_string())))?;
    }
    let mut rd = buf.as_slice();
    while !rd.is_empty() {
        to.read_tls(&mut rd).map_err(|e| Error::Tls(rustls::Error::General(e.to_string())))?;
        if let Err(e) = to.process_new_packets() {
            // Let the peer see the alert, then report the first side's reason.
            let _ = to.write_tls(&mut Vec::new());
            return Err(Error::Tls(e));
        }
    }
    Ok(())
}

fn expect_plaintext<C, D>(conn: &mut C, want: &[u8]) -> Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
{
    let mut got = vec![0u8; want.len()];
    conn.reader()
        .read_exact(&mut got)
        .map_err(|e| Error::Tls(rustls::Error::General(format!("no application data: {e}"))))?;
    if got == want {
        Ok(())
    } else {
        Err(Error::Tls(rustls::Error::General("application data was garbled".to_owned())))
    }
}
