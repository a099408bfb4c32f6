//! What the layers tell each other: facts about the connection (set by the listener), the caller
//! and the route (set by the layers that establish them).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use govpaas_pki::{TrustAnchors, WorkloadIdentity};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::routes::Api;

/// Which listener accepted the connection, and what its TLS handshake established.
#[derive(Debug)]
pub enum Listener {
    /// Mutual TLS: rustls verified the chain against `anchors` during the handshake.
    Mutual {
        /// The client's chain as presented (leaf first).
        peer_chain: Vec<CertificateDer<'static>>,
        /// The trust bundle in force when the connection was accepted.
        anchors: Arc<TrustAnchors>,
        /// The identity read from the chain, verified once per connection, and until when that
        /// verification holds (the chain's earliest notAfter).
        identity: OnceLock<Result<(WorkloadIdentity, OffsetDateTime), String>>,
    },
    /// The open-data listener: no client certificate.
    Open,
}

/// A request extension set by the listener for every request of a connection.
#[derive(Clone, Debug)]
pub struct Connection(pub Arc<ConnectionInfo>);

#[derive(Debug)]
pub struct ConnectionInfo {
    pub remote: SocketAddr,
    pub listener: Listener,
}

impl Connection {
    pub fn mutual(remote: SocketAddr, peer_chain: Vec<CertificateDer<'static>>, anchors: Arc<TrustAnchors>) -> Self {
        Connection(Arc::new(ConnectionInfo {
            remote,
            listener: Listener::Mutual { peer_chain, anchors, identity: OnceLock::new() },
        }))
    }

    pub fn open(remote: SocketAddr) -> Self {
        Connection(Arc::new(ConnectionInfo { remote, listener: Listener::Open }))
    }
}

/// Who is calling: a verified system of an agency, or (open data) a client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Consumer(WorkloadIdentity),
    Anonymous(std::net::IpAddr),
}

impl Caller {
    /// The key rate limits are kept under.
    pub fn rate_key(&self) -> String {
        match self {
            Caller::Consumer(identity) => identity.uri(),
            Caller::Anonymous(ip) => ip.to_string(),
        }
    }
}

/// The API a request was routed to, and what to send upstream.
#[derive(Clone, Debug)]
pub struct RoutedRequest {
    pub api: Arc<Api>,
    /// The path after `/<provider>/<api>`, empty or starting with `/`.
    pub rest: String,
}

/// What the audit layer learns from the layers inside it: a request extension it inserts, which
/// the identity and routing layers fill in.
#[derive(Clone, Debug, Default)]
pub struct AuditNotes(Arc<Mutex<Notes>>);

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Notes {
    pub caller: Option<Caller>,
    /// The provider code and API name the request addressed, even when it was refused.
    pub addressed: Option<(String, String)>,
    /// The route it was matched to (provider code and API name as the route table writes them):
    /// what metrics are labelled with, never what the path says.
    pub route: Option<(String, String)>,
    /// The canonical form of the request path, once the routing layer has established it.
    pub canonical_path: Option<String>,
    /// The request body's length, once read (bodies of refused requests are not read).
    pub request_bytes: u64,
    /// SHA-256 of the body of a document exchange, once read.
    pub package_sha256: Option<String>,
}

impl AuditNotes {
    /// Applies `note` to the request's notes, if the request is audited.
    pub fn record<B>(request: &http::Request<B>, note: impl FnOnce(&mut Notes)) {
        if let Some(notes) = request.extensions().get::<AuditNotes>() {
            note(&mut notes.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        }
    }

    pub fn take(&self) -> Notes {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}
