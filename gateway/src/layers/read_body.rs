//! Reads the request body, once the layers before it have authorised the request from its head
//! (identity, route, grant, rate limit): within `--max-body-bytes` (413), `--body-timeout-seconds`
//! (408) and the gateway-wide [`BodyBudget`] (503 with `Retry-After` when it stays exhausted for
//! the whole body timeout). The bytes stay taken from the budget until the answer is produced.
//! The body of a document exchange is hashed (SHA-256) for the audit.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

use super::{BoxFuture, GatewayRequest, GatewayResponse};
use crate::body::{BodyBudget, RequestBody};
use crate::context::{AuditNotes, RoutedRequest};
use crate::problem::Problem;
use crate::routes::Target;

#[derive(Clone, Debug)]
pub struct ReadBodyLayer {
    pub budget: BodyBudget,
    pub max_bytes: usize,
    pub timeout: Duration,
}

impl<S> Layer<S> for ReadBodyLayer {
    type Service = ReadBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ReadBody { settings: self.clone(), inner }
    }
}

#[derive(Clone, Debug)]
pub struct ReadBody<S> {
    settings: ReadBodyLayer,
    inner: S,
}

impl<S> Service<GatewayRequest> for ReadBody<S>
where
    S: Service<GatewayRequest, Response = GatewayResponse, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = GatewayResponse;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: GatewayRequest) -> BoxFuture {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = self.settings.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let (bytes, permit) = match body {
                RequestBody::Read(bytes) => (bytes, Default::default()),
                RequestBody::Unread(body) => {
                    match settings.budget.read(body, settings.max_bytes, settings.timeout).await {
                        Ok(read) => read,
                        Err(error) => return Ok(Problem::from(error).response()),
                    }
                }
            };
            let request = http::Request::from_parts(parts, RequestBody::Read(bytes.clone()));
            // A document package's hash goes into the audit: what was received is what was sent.
            let exchange = request
                .extensions()
                .get::<RoutedRequest>()
                .is_some_and(|routed| matches!(routed.api.target, Target::Exchange { .. }));
            let package_sha256 =
                exchange.then(|| hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref()));
            AuditNotes::record(&request, |notes| {
                notes.request_bytes = bytes.len() as u64;
                notes.package_sha256 = package_sha256;
            });
            drop(bytes);
            let response = inner.call(request).await;
            // The request's bytes were held until its answer came back.
            drop(permit);
            response
        })
    }
}
