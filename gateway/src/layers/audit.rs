//! Writes one audit record per exchange, whatever became of it (refused, failed or answered).
//! If the record cannot be written the caller gets 503 instead of the answer: no exchange goes
//! unaudited (X-Road's message log fails closed the same way).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::StatusCode;
use tower::{Layer, Service};

use super::{BoxFuture, GatewayRequest, GatewayResponse};
use crate::audit::{AuditLog, Entry, Exchange};
use crate::context::{AuditNotes, Caller, Connection};
use crate::problem::problem;

#[derive(Clone)]
pub struct AuditLayer {
    pub log: Arc<AuditLog>,
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService { log: self.log.clone(), inner }
    }
}

#[derive(Clone)]
pub struct AuditService<S> {
    log: Arc<AuditLog>,
    inner: S,
}

impl<S> Service<GatewayRequest> for AuditService<S>
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

    fn call(&mut self, mut request: GatewayRequest) -> BoxFuture {
        let started = Instant::now();
        let notes = AuditNotes::default();
        request.extensions_mut().insert(notes.clone());
        let client = request.extensions().get::<Connection>().map(|c| c.0.remote.to_string()).unwrap_or_default();
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let request_bytes = request.body().len() as u64;
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let log = self.log.clone();
        Box::pin(async move {
            let response = inner.call(request).await?;
            let notes = notes.take();
            let (provider, api) = notes.addressed.unzip();
            let exchange = Exchange {
                caller: match notes.caller {
                    Some(Caller::Consumer(identity)) => Some(identity.uri()),
                    _ => None,
                },
                client,
                provider,
                api,
                method,
                path: String::new(),
                status: response.status().as_u16(),
                request_bytes,
                response_bytes: response.body().len() as u64,
                duration_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            }
            .with_path(&path);
            match log.append(Entry::Exchange(exchange)) {
                Ok(_) => Ok(response),
                Err(error) => {
                    tracing::error!(%error, "audit record not written; answering 503");
                    Ok(problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "audit-unavailable",
                        "Audit unavailable",
                        "the exchange could not be audited, so its answer is withheld",
                    ))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use bytes::Bytes;
    use tower::ServiceExt;

    #[tokio::test]
    async fn every_exchange_is_recorded_with_what_the_inner_layers_learned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let inner = tower::service_fn(|request: GatewayRequest| async move {
            AuditNotes::record(&request, |notes| {
                notes.caller = Some(consumer(CONSUMER));
                notes.addressed = Some(("H17.12".to_owned(), "land-records".to_owned()));
            });
            Ok::<_, Infallible>(problem(StatusCode::FORBIDDEN, "not-granted", "API not granted", "no"))
        });
        let service = AuditLayer { log: log.clone() }.layer(inner);
        let mut request = request("/H17.12/land-records/x?secret=1");
        *request.body_mut() = Bytes::from_static(b"12345");
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);

        let text = std::fs::read_to_string(&path).unwrap();
        let record: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(record["kind"], "exchange");
        assert_eq!(record["seq"], 2);
        assert_eq!(record["caller"], CONSUMER);
        assert_eq!(record["client"], client_addr().to_string());
        assert_eq!((record["provider"].as_str(), record["api"].as_str()), (Some("H17.12"), Some("land-records")));
        assert_eq!(record["path"], "/H17.12/land-records/x", "no query string in the audit");
        assert_eq!((record["status"].as_u64(), record["requestBytes"].as_u64()), (Some(403), Some(5)));
        assert_eq!(record["responseBytes"].as_u64(), Some(response.body().len() as u64));
    }
}
