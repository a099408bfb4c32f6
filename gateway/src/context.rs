//! What the layers tell each other: facts about the connection (set by the listener), the caller
//! and the route (set by the layers that establish them).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use govpaas_pki::{TrustAnchors, WorkloadIdentity};
use http::HeaderValue;
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
        /// The consumer read from the chain, verified once per connection, and until when that
        /// verification holds (the chain's earliest notAfter).
        identity: OnceLock<Result<(Arc<Consumer>, OffsetDateTime), String>>,
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
    /// `remote` as the audit records it, formatted once for all the connection's requests.
    pub client: String,
    /// `remote`'s IP address as the `X-Lgsp-Client-Address` header's value.
    pub client_address_header: HeaderValue,
}

impl ConnectionInfo {
    pub fn new(remote: SocketAddr, listener: Listener) -> Self {
        let client_address_header =
            HeaderValue::from_str(&remote.ip().to_string()).expect("an IP address is a header value");
        ConnectionInfo { remote, listener, client: remote.to_string(), client_address_header }
    }
}

impl Connection {
    pub fn mutual(remote: SocketAddr, peer_chain: Vec<CertificateDer<'static>>, anchors: Arc<TrustAnchors>) -> Self {
        Connection(Arc::new(ConnectionInfo::new(
            remote,
            Listener::Mutual { peer_chain, anchors, identity: OnceLock::new() },
        )))
    }

    pub fn open(remote: SocketAddr) -> Self {
        Connection(Arc::new(ConnectionInfo::new(remote, Listener::Open)))
    }
}

/// A verified consumer: its identity, and its URI formatted once per connection for what every
/// request reads it for (the grant, the rate limit's key, the upstream header, the audit record).
#[derive(Debug, PartialEq, Eq)]
pub struct Consumer {
    pub identity: WorkloadIdentity,
    pub uri: Arc<str>,
    /// `uri` as the `X-Lgsp-Consumer` header's value (`None`: not a valid header value).
    pub header: Option<HeaderValue>,
}

impl Consumer {
    pub fn new(identity: WorkloadIdentity) -> Arc<Self> {
        let uri: Arc<str> = identity.uri().into();
        let header = HeaderValue::from_str(&uri).ok();
        Arc::new(Consumer { identity, uri, header })
    }
}

/// Who is calling: a verified system of an agency, or (open data) a client address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Consumer(Arc<Consumer>),
    Anonymous(std::net::IpAddr),
}

impl Caller {
    pub fn consumer(identity: WorkloadIdentity) -> Self {
        Caller::Consumer(Consumer::new(identity))
    }

    /// The key rate limits are kept under.
    pub fn rate_key(&self) -> Arc<str> {
        match self {
            Caller::Consumer(consumer) => consumer.uri.clone(),
            Caller::Anonymous(ip) => ip.to_string().into(),
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
    /// The client went away before its answer (the exchange went on without it).
    pub client_gone: bool,
}

impl AuditNotes {
    /// Applies `note` to the request's notes, if the request is audited.
    pub fn record<B>(request: &http::Request<B>, note: impl FnOnce(&mut Notes)) {
        if let Some(notes) = request.extensions().get::<AuditNotes>() {
            note(&mut notes.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        }
    }

    /// Applies `note` to these notes.
    pub fn update(&self, note: impl FnOnce(&mut Notes)) {
        note(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    pub fn take(&self) -> Notes {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}
