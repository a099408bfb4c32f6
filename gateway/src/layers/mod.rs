//! The request pipeline, one small tower layer per concern, outermost first:
//!
//! ```text
//! audit → identity → routing → grant → rate limit → read body → forward
//! ```
//!
//! Requests arrive with their body unread ([`crate::body::RequestBody`]): every decision up to
//! the rate limit is made from the request head, and only an authorised request's body is read
//! (bounded per request and gateway-wide). Every failure is an answer (`Infallible` errors):
//! refusals are problem-details responses, and the audit layer sees every one of them.

pub mod audit;
pub mod forward;
pub mod grant;
pub mod identity;
pub mod rate_limit;
pub mod read_body;
pub mod routing;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower::{Layer, Service};

pub type GatewayRequest = Request<crate::body::RequestBody>;
pub type GatewayResponse = Response<Bytes>;
/// A layer's own answer to a request it does not let through (boxed: the rare path).
pub type Refusal = Box<GatewayResponse>;
pub type BoxFuture = Pin<Box<dyn Future<Output = Result<GatewayResponse, Infallible>> + Send>>;

/// The caller and the route that the identity and routing layers put on `request`; a layer that
/// needs them (`layer`, for the message) and finds them missing was stacked in the wrong order.
pub fn caller_and_route<'a>(
    request: &'a GatewayRequest,
    layer: &str,
) -> Result<(&'a crate::context::Caller, &'a crate::context::RoutedRequest), Refusal> {
    match (request.extensions().get(), request.extensions().get()) {
        (Some(caller), Some(routed)) => Ok((caller, routed)),
        _ => Err(crate::problem::Problem::Internal(format!("the {layer} ran before identity and routing")).into()),
    }
}

/// A step that looks at (and may amend) a request, then lets it through or answers it itself.
pub trait Check: Clone + Send + Sync + 'static {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal>;
}

/// Turns a [`Check`] into a tower layer.
#[derive(Clone, Debug)]
pub struct CheckLayer<C>(pub C);

impl<C: Check, S> Layer<S> for CheckLayer<C> {
    type Service = CheckService<C, S>;

    fn layer(&self, inner: S) -> Self::Service {
        CheckService { check: self.0.clone(), inner }
    }
}

#[derive(Clone, Debug)]
pub struct CheckService<C, S> {
    check: C,
    inner: S,
}

impl<C, S> Service<GatewayRequest> for CheckService<C, S>
where
    C: Check,
    S: Service<GatewayRequest, Response = GatewayResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = GatewayResponse;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: GatewayRequest) -> BoxFuture {
        match self.check.check(&mut request) {
            // The check is done before the call returns: the inner service that `poll_ready`
            // prepared is called at once, without a clone of the stack below.
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(refusal) => Box::pin(std::future::ready(Ok(*refusal))),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;

    use super::*;
    use crate::context::{Caller, Connection, RoutedRequest};
    use crate::routes::{Api, RateLimit};

    pub fn client_addr() -> SocketAddr {
        "192.0.2.7:40000".parse().unwrap()
    }

    /// A live configuration of a platform CA of its own, no routes and no national platform; the
    /// directory holding its files goes with it.
    pub fn live_config() -> (crate::config::LiveConfig, tempfile::TempDir) {
        let (policy, now) = (govpaas_pki::IssuancePolicy::default(), time::OffsetDateTime::now_utc());
        let ca = govpaas_pki::generate_platform_ca(
            &govpaas_pki::PlatformCaRequest::new("quangnam.gov.vn", "govpaas"),
            &policy,
            now,
        )
        .unwrap();
        let server = ca
            .issue_server_certificate(
                &govpaas_pki::ServerCertificateRequest::new(["lgsp.quangnam.gov.vn"]),
                &policy,
                now,
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), server.chain_pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), server.private_key_pem().expose()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.certificate_pem()).unwrap();
        let paths = crate::config::ConfigPaths {
            tls_crt: dir.path().join("tls.crt"),
            tls_key: dir.path().join("tls.key"),
            client_ca: dir.path().join("ca.crt"),
            routes: crate::config::RoutesSource::Files(dir.path().join("empty")),
            resolve: Default::default(),
            national: None,
        };
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let (_, live) = crate::config::Reloader::start(paths).unwrap();
        (live, dir)
    }

    pub fn request(path: &str) -> GatewayRequest {
        let mut request = Request::builder().uri(path).body(crate::body::RequestBody::empty()).unwrap();
        request.extensions_mut().insert(Connection::open(client_addr()));
        request
    }

    pub fn api(open_data: bool, consumers: &[&str]) -> std::sync::Arc<Api> {
        std::sync::Arc::new(Api {
            provider: "H17.12".to_owned(),
            name: "land-records".to_owned(),
            target: crate::routes::Target::Agency {
                origin: "http://127.0.0.1:9/".parse().unwrap(),
                host: "land.stnmt.svc:8080".to_owned(),
                base_path: "/api".to_owned(),
            },
            open_data,
            rate_limit: RateLimit { requests_per_minute: 60.try_into().unwrap(), burst: 2.try_into().unwrap() },
            consumers: consumers.iter().map(|c| (*c).to_owned()).collect(),
            exchange: None,
            source: "stnmt/land".to_owned(),
        })
    }

    pub fn routed(caller: Caller, api: std::sync::Arc<Api>) -> GatewayRequest {
        let mut request = request("/H17.12/land-records/x");
        request.extensions_mut().insert(caller);
        request.extensions_mut().insert(RoutedRequest { api, rest: "/x".to_owned() });
        request
    }

    pub const CONSUMER: &str = "spiffe://quangnam.gov.vn/agency/H49.12/dss/land";
    pub const OTHER: &str = "spiffe://quangnam.gov.vn/agency/H50/dss/x";

    pub fn consumer(uri: &str) -> Caller {
        Caller::consumer(govpaas_pki::WorkloadIdentity::parse(uri).unwrap())
    }
}
