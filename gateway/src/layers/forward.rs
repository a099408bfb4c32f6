//! Forwarding to the provider: `<upstream base path><rest>?<query>`, with the verified caller in
//! `X-Lgsp-Consumer` (and the client's address in `X-Lgsp-Client-Address`), hop-by-hop headers
//! removed both ways. Unreachable upstream: 502; too slow: 504.
//!
//! A national route goes to the national platform instead ([`crate::national`]):
//! `<NDXP url>/<api><rest>?<query>` over mutual TLS with the province's client certificate, the
//! verified caller in `X-Lgsp-Consumer`; the client's address stays inside the province. No
//! national platform loaded, a refused handshake (the NDXP's certificate does not verify against
//! its configured CAs) or no connection: 502, and nothing is sent; too slow: 504.
//!
//! A document exchange goes to the receiver's exchange port over TLS (a connection per package),
//! its certificate verified for the route's `serverName` against the platform trust bundle, the
//! sender's verified identity in `X-Lgsp-Consumer`.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use tower::Service;

use super::{BoxFuture, GatewayRequest, GatewayResponse};
use crate::body::{BodyBudget, BodyError, BodyPermit};
use crate::config::{LiveConfig, TlsState};
use crate::context::{Caller, Connection, RoutedRequest};
use crate::national::NationalPlatform;
use crate::problem::Problem;
use crate::routes::Target;
use arc_swap::{ArcSwap, ArcSwapOption};

/// The verified identity of the caller, set by the gateway only.
pub const CONSUMER_HEADER: &str = "x-lgsp-consumer";
/// The caller's IP address as the gateway saw it.
pub const CLIENT_ADDRESS_HEADER: &str = "x-lgsp-client-address";

/// RFC 9110 §7.6.1 connection-specific fields, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

#[derive(Clone, Debug)]
pub struct ForwardSettings {
    /// How long the upstream has for its whole answer.
    pub timeout: Duration,
    /// Largest upstream response body relayed.
    pub max_response_bytes: usize,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings { timeout: Duration::from_secs(30), max_response_bytes: 16 * 1024 * 1024 }
    }
}

/// The innermost service: a pooled HTTP/1.1 client to the providers, and the national platform's.
/// Shared: a request takes a reference, not a copy of the client.
#[derive(Clone)]
pub struct Forward(Arc<Forwarder>);

struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    /// The national platform in force (swapped by the reloader).
    national: Arc<ArcSwapOption<NationalPlatform>>,
    /// The TLS state in force: its platform trust verifies exchange receivers.
    upstream_tls: Arc<ArcSwap<TlsState>>,
    settings: ForwardSettings,
    /// Response bodies are held in memory too: they take from a budget of their own.
    budget: BodyBudget,
}

/// A response extension: the budget bytes its body holds, given back once it has been written.
#[derive(Clone, Debug)]
pub struct ResponsePermit(pub Arc<BodyPermit>);

impl Forward {
    pub fn new(settings: ForwardSettings, budget: BodyBudget, live: &LiveConfig) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.timeout.min(Duration::from_secs(5))));
        connector.set_nodelay(true);
        Forward(Arc::new(Forwarder {
            client: Client::builder(TokioExecutor::new()).build(connector),
            national: live.national.clone(),
            upstream_tls: live.tls.clone(),
            settings,
            budget,
        }))
    }
}

impl Service<GatewayRequest> for Forward {
    type Response = GatewayResponse;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: GatewayRequest) -> BoxFuture {
        let this = self.0.clone();
        Box::pin(async move { Ok(this.forward(request).await) })
    }
}

/// How a routed request leaves the gateway.
enum Via {
    /// The pooled HTTP client, to a provider's Service.
    Agency,
    /// The national platform's mutual-TLS client.
    National(Arc<NationalPlatform>),
    /// A new TLS connection to a receiver's exchange port, its certificate verified for
    /// `server_name` against the platform trust.
    Exchange { connect: String, server_name: String, tls: Arc<rustls::ClientConfig> },
}

/// Why an exchange connection failed, for the 502's detail.
#[derive(Debug, thiserror::Error)]
enum ExchangeFailure {
    #[error("cannot be reached: {0}")]
    Connect(std::io::Error),
    #[error("refused the secure connection: {0}")]
    Tls(std::io::Error),
    #[error("failed to answer: {0}")]
    Http(hyper::Error),
}

impl Forwarder {
    async fn forward(&self, request: GatewayRequest) -> GatewayResponse {
        let via = match request.extensions().get::<RoutedRequest>().map(|r| &r.api.target) {
            Some(Target::National) => match self.national.load_full() {
                Some(platform) => Via::National(platform),
                None => {
                    return Problem::UpstreamUnavailable(
                        "the national platform is not configured on this gateway (Platform spec.lgsp.ndxp)".to_owned(),
                    )
                    .response();
                }
            },
            Some(Target::Exchange { connect, server_name, .. }) => Via::Exchange {
                connect: connect.clone(),
                server_name: server_name.clone(),
                tls: self.upstream_tls.load().upstream_client.clone(),
            },
            _ => Via::Agency,
        };
        let national = match &via {
            Via::National(platform) => Some(platform.as_ref()),
            _ => None,
        };
        let upstream = match upstream_request(request, national) {
            Ok(upstream) => upstream,
            Err(refusal) => return *refusal,
        };
        let (target, who) = match &via {
            Via::Agency => (upstream.uri().to_string(), "the provider"),
            Via::National(_) => (upstream.uri().to_string(), "the national platform"),
            Via::Exchange { server_name, .. } => (format!("https://{server_name}{}", upstream.uri()), "the receiver"),
        };
        let exchange = async {
            let response = match via {
                Via::Agency => self.client.request(upstream).await.map_err(|e| BodyError::Broken(e.into()))?,
                Via::National(platform) => {
                    platform.client.request(upstream).await.map_err(|e| BodyError::Broken(e.into()))?
                }
                Via::Exchange { connect, server_name, tls } => send_over_tls(&connect, &server_name, tls, upstream)
                    .await
                    .map_err(|e| BodyError::Broken(e.into()))?,
            };
            let (parts, body) = response.into_parts();
            let (body, permit) =
                self.budget.read(body, self.settings.max_response_bytes, self.settings.timeout).await?;
            let mut response = Response::from_parts(parts, body);
            response.extensions_mut().insert(ResponsePermit(Arc::new(permit)));
            Ok::<_, BodyError>(response)
        };
        match tokio::time::timeout(self.settings.timeout, exchange).await {
            Ok(Ok(mut response)) => {
                strip_hop_by_hop(response.headers_mut());
                response.headers_mut().remove(header::CONTENT_LENGTH);
                response
            }
            Ok(Err(BodyError::Busy)) => Problem::Busy(
                "the gateway holds as many response bodies as its memory allows; retry shortly".to_owned(),
            )
            .response(),
            Ok(Err(error)) => {
                let detail = match &error {
                    BodyError::Broken(e) => match e.downcast_ref::<hyper_util::client::legacy::Error>() {
                        Some(e) if e.is_connect() => match connect_failure(e) {
                            Some(tls) => format!("{who} at {target} refused the secure connection: {tls}"),
                            None => format!("{who} at {target} cannot be reached"),
                        },
                        _ => match e.downcast_ref::<ExchangeFailure>() {
                            Some(failure) => format!("{who} at {target} {failure}"),
                            None => format!("{who} at {target} failed to answer: {e}"),
                        },
                    },
                    BodyError::TooLarge { limit } => {
                        format!("the answer of {who} exceeds {limit} bytes, the most the gateway relays")
                    }
                    other => format!("{who} at {target} failed to answer: {other}"),
                };
                Problem::UpstreamUnavailable(detail).response()
            }
            Err(_) => {
                Problem::UpstreamTimeout(format!("{who} at {target} did not answer within {:?}", self.settings.timeout))
                    .response()
            }
        }
    }
}

/// Sends `request` (origin-form) over a new TLS connection to `connect`, verifying the server's
/// certificate for `server_name`. One connection per package: exchanges are few and large, and a
/// fresh handshake checks the receiver's certificate as it is now.
async fn send_over_tls(
    connect: &str,
    server_name: &str,
    tls: Arc<rustls::ClientConfig>,
    request: Request<Full<Bytes>>,
) -> Result<Response<hyper::body::Incoming>, ExchangeFailure> {
    let tcp = tokio::net::TcpStream::connect(connect).await.map_err(ExchangeFailure::Connect)?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| ExchangeFailure::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())))?;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(ExchangeFailure::Tls)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(ExchangeFailure::Http)?;
    tokio::spawn(connection);
    sender.send_request(request).await.map_err(ExchangeFailure::Http)
}

fn internal(detail: &str) -> Box<GatewayResponse> {
    Problem::Internal(detail.to_owned()).into()
}

/// The TLS error under a failed connect, if that is what failed (a certificate that does not
/// verify, a handshake refused): what an operator needs to see in the 502's detail. The connector
/// nests it in `io::Error`s, whose `source` skips the error they wrap: those are opened by hand.
fn connect_failure(error: &hyper_util::client::legacy::Error) -> Option<String> {
    fn find(error: &(dyn std::error::Error + 'static)) -> Option<String> {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            return find(inner);
        }
        error.source().and_then(find)
    }
    std::error::Error::source(error).and_then(find)
}

/// The request to send upstream: to the route's provider, or to `national` for a national route.
fn upstream_request(
    request: GatewayRequest,
    national: Option<&NationalPlatform>,
) -> Result<Request<Full<Bytes>>, Box<GatewayResponse>> {
    let (mut parts, body) = request.into_parts();
    // Taken, not copied: nothing of the client's request's extensions goes upstream.
    let mut extensions = std::mem::take(&mut parts.extensions);
    let (Some(routed), Some(caller), Some(connection)) =
        (extensions.remove::<RoutedRequest>(), extensions.remove::<Caller>(), extensions.remove::<Connection>())
    else {
        return Err(internal("forwarding before identity and routing"));
    };
    let crate::body::RequestBody::Read(body) = body else {
        return Err(internal("forwarding before the body was read"));
    };
    // The scheme and authority: `None` for origin-form, sent on a connection of its own.
    let (origin, host, prefix, api) = match (&routed.api.target, national) {
        (Target::Agency { origin, host, base_path }, _) => {
            (Some((Scheme::HTTP, origin)), host.as_str(), base_path.as_str(), None)
        }
        (Target::National, Some(platform)) => (
            Some((Scheme::HTTPS, &platform.origin)),
            platform.host.as_str(),
            platform.base_path.as_str(),
            Some(routed.api.name.as_str()),
        ),
        (Target::National, None) => return Err(internal("a national route without the national platform")),
        (Target::Exchange { server_name, base_path, .. }, _) => (None, server_name.as_str(), base_path.as_str(), None),
    };
    // `<prefix>[/<api>]<rest>[?<query>]`, written once into a buffer of the right size.
    let query = parts.uri.query();
    let mut path = String::with_capacity(
        prefix.len() + api.map_or(0, |a| a.len() + 1) + routed.rest.len() + query.map_or(0, |q| q.len() + 1) + 1,
    );
    path.push_str(prefix);
    if let Some(api) = api {
        path.push('/');
        path.push_str(api);
    }
    path.push_str(&routed.rest);
    if path.is_empty() {
        path.push('/');
    }
    if let Some(query) = query {
        path.push('?');
        path.push_str(query);
    }
    let mut uri = http::uri::Parts::default();
    uri.path_and_query =
        Some(PathAndQuery::try_from(path).map_err(|e| internal(&format!("cannot build the upstream URI: {e}")))?);
    if let Some((scheme, origin)) = origin {
        uri.scheme = Some(scheme);
        uri.authority = origin.authority().cloned();
    }
    parts.uri = Uri::from_parts(uri).map_err(|e| internal(&format!("cannot build the upstream URI: {e}")))?;
    parts.version = http::Version::HTTP_11;
    let headers = &mut parts.headers;
    strip_hop_by_hop(headers);
    // Again here, where requests leave: whatever a layer did, no client's claim goes on.
    crate::headers::strip_identity_headers(headers);
    // The provider is addressed by its Service's name, even when `--resolve` connects elsewhere.
    let host = HeaderValue::from_str(host).map_err(|_| internal("host is not a header value"))?;
    headers.insert(header::HOST, host);
    headers.remove(header::CONTENT_LENGTH);
    if let Caller::Consumer(consumer) = &caller {
        let value = consumer.header.clone().ok_or_else(|| internal("identity is not a header value"))?;
        headers.insert(HeaderName::from_static(CONSUMER_HEADER), value);
    }
    // A Pod's address means nothing outside the province: the national platform is not told.
    if national.is_none() {
        headers.insert(HeaderName::from_static(CLIENT_ADDRESS_HEADER), connection.0.client_address_header.clone());
    }
    Ok(Request::from_parts(parts, Full::new(body)))
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The names a `Connection` header lists are connection-specific too (rare: collected only then).
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use http::StatusCode;

    #[test]
    fn the_upstream_request_carries_the_rest_the_query_and_the_verified_identity() {
        let mut request = routed(consumer(CONSUMER), api(false, &[CONSUMER]));
        *request.uri_mut() = "/H17.12/land-records/x?page=2".parse().unwrap();
        request.headers_mut().insert("connection", "close, x-secret".parse().unwrap());
        request.headers_mut().insert("x-secret", "1".parse().unwrap());
        request.headers_mut().insert("accept", "application/json".parse().unwrap());
        let upstream = upstream_request(request, None).unwrap();
        assert_eq!(upstream.uri(), "http://127.0.0.1:9/api/x?page=2");
        assert_eq!(upstream.headers()[CONSUMER_HEADER], CONSUMER);
        assert_eq!(upstream.headers()[CLIENT_ADDRESS_HEADER], "192.0.2.7");
        assert_eq!(upstream.headers()["accept"], "application/json");
        assert_eq!(upstream.headers()["host"], "land.stnmt.svc:8080");
        assert!(upstream.headers().get("connection").is_none() && upstream.headers().get("x-secret").is_none());
    }

    #[tokio::test]
    async fn an_unreachable_upstream_is_a_502() {
        // Bind then drop a listener: nothing accepts on that port.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut api = (*api(false, &[CONSUMER])).clone();
        let Target::Agency { origin, .. } = &mut api.target else { unreachable!() };
        *origin = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let request = routed(consumer(CONSUMER), std::sync::Arc::new(api));
        let (live, _files) = live_config();
        let forward = Forward::new(ForwardSettings::default(), BodyBudget::new(1 << 20), &live);
        let response = forward.0.forward(request).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let detail = crate::problem::detail_of(&response)["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("cannot be reached"), "{detail}");
    }
}
