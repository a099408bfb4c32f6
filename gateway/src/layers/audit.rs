//! Writes one audit record per exchange, whatever became of it (refused, failed or answered),
//! and whatever the client does: the exchange runs in the request's own task, but a client that
//! closes its connection or resets its HTTP/2 stream before the answer does not cancel it — what
//! is left of it is spawned as a task of its own ([`Unabandoned`]), and its record is written
//! (marked `clientGone`): the provider did receive and execute it.
//! If the record cannot be written the caller gets 503 instead of the answer: no exchange goes
//! unaudited (X-Road's message log fails closed the same way).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tower::{Layer, Service};

use super::{BoxFuture, GatewayRequest, GatewayResponse};
use crate::audit::{AuditLog, Entry, Exchange};
use crate::context::{AuditNotes, Caller, Connection};
use crate::metrics::{Metrics, StatusLabels};
use crate::problem::{Problem, ProblemKind};

#[derive(Clone)]
pub struct AuditLayer {
    pub log: Arc<AuditLog>,
    /// Where exchanges whose clients went away finish; the gateway waits for every exchange
    /// (those still in their request's task too) at shutdown.
    pub exchanges: TaskTracker,
    pub metrics: Metrics,
    /// Exchanges in flight at once (they outlive clients that went away): over it, 503.
    pub in_flight: Arc<Semaphore>,
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            log: self.log.clone(),
            exchanges: self.exchanges.clone(),
            metrics: self.metrics.clone(),
            in_flight: self.in_flight.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AuditService<S> {
    log: Arc<AuditLog>,
    exchanges: TaskTracker,
    metrics: Metrics,
    in_flight: Arc<Semaphore>,
    inner: S,
}

impl<S> Service<GatewayRequest> for AuditService<S>
where
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
        let started = Instant::now();
        let notes = AuditNotes::default();
        request.extensions_mut().insert(notes.clone());
        let connection = request.extensions().get::<Connection>().cloned();
        let client = || connection.as_ref().map(|c| c.0.client.clone()).unwrap_or_default();
        let method = request.method().clone();
        let uri = request.uri().clone();
        let log = self.log.clone();
        let metrics = self.metrics.clone();
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            // Too many exchanges in flight: answered (and recorded) without running it.
            let busy = Problem::Busy(
                "the gateway runs as many exchanges at once as it allows (--max-exchanges); retry shortly".to_owned(),
            );
            let exchange = Exchange {
                client: client(),
                method: method.as_str().to_owned(),
                status: busy.status().as_u16(),
                ..Exchange::default()
            }
            .with_path(uri.path());
            return Box::pin(async move {
                metrics.exchanges.get_or_create(&StatusLabels { status: busy.status().as_u16() }).inc();
                let written = log.append_durable(Entry::Exchange(exchange)).await;
                metrics.audit_written(&written);
                let response = match written {
                    Ok(_) => busy.response(),
                    Err(_) => Problem::AuditUnavailable.response(),
                };
                observe(&metrics, None, &response, started);
                Ok(response)
            });
        };
        // Announced now, so that a sync running meanwhile may wait for this record too.
        let expected = log.expect_record();
        let client = client();
        // `poll_ready` readied `inner` for this call: no clone of the stack is needed.
        let answered = self.inner.call(request);
        let exchange_notes = notes.clone();
        let exchange = async move {
            let _permit = permit;
            let Ok(response) = answered.await;
            let notes = exchange_notes.take();
            let (provider, api) = notes.addressed.unzip();
            let exchange = Exchange {
                caller: match &notes.caller {
                    Some(Caller::Consumer(consumer)) => Some(consumer.uri.to_string()),
                    _ => None,
                },
                client,
                provider,
                api,
                method: method.as_str().to_owned(),
                path: String::new(),
                status: response.status().as_u16(),
                request_bytes: notes.request_bytes,
                response_bytes: response.body().len() as u64,
                duration_micros: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                client_gone: notes.client_gone,
                package_sha256: notes.package_sha256,
            }
            .with_path(notes.canonical_path.as_deref().unwrap_or(uri.path()));
            if exchange.client_gone {
                metrics.client_gone.inc();
            }
            let written = log.append_expected(expected, Entry::Exchange(exchange)).await;
            metrics.audit_written(&written);
            let response = match written {
                Ok(_) => response,
                Err(error) => {
                    tracing::error!(%error, "audit record not written; answering 503");
                    Problem::AuditUnavailable.response()
                }
            };
            metrics.exchanges.get_or_create(&StatusLabels { status: response.status().as_u16() }).inc();
            observe(&metrics, notes.route.as_ref(), &response, started);
            Ok(response)
        };
        Box::pin(Unabandoned {
            exchange: Some(Box::pin(exchange)),
            notes,
            exchanges: self.exchanges.clone(),
            _tracked: self.exchanges.token(),
        })
    }
}

/// An exchange run by its request's task, which the client cannot cancel: dropped before its
/// answer (the client went away), it marks the exchange `clientGone` and spawns what is left of
/// it. Cheaper than a task and a channel per exchange, when clients wait for their answers.
struct Unabandoned {
    exchange: Option<BoxFuture>,
    notes: AuditNotes,
    exchanges: TaskTracker,
    /// The gateway's shutdown waits for this exchange too.
    _tracked: TaskTrackerToken,
}

impl Future for Unabandoned {
    type Output = Result<GatewayResponse, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(exchange) = self.exchange.as_mut() else {
            return Poll::Ready(
                Ok(Problem::Internal("the exchange was polled after its answer".to_owned()).response()),
            );
        };
        let answer = std::task::ready!(exchange.as_mut().poll(cx));
        self.exchange = None;
        Poll::Ready(answer)
    }
}

impl Drop for Unabandoned {
    fn drop(&mut self) {
        let Some(exchange) = self.exchange.take() else { return };
        AuditNotes::update(&self.notes, |notes| notes.client_gone = true);
        // The client may be gone: the exchange goes on, and its record is written all the same.
        // (Spawned before `_tracked` is dropped, so the tracker never counts it finished.)
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(self.exchanges.spawn_on(exchange, &runtime)),
            Err(_) => tracing::error!("an exchange abandoned outside the runtime could not finish"),
        }
    }
}

/// Counts `response` to a request on `route` and its latency.
fn observe(metrics: &Metrics, route: Option<&(String, String)>, response: &GatewayResponse, started: Instant) {
    let problem = response.extensions().get::<ProblemKind>().map(|kind| kind.0);
    metrics.request(route, response.status().as_u16(), problem, started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use http::StatusCode;
    use tower::ServiceExt;

    fn layer(log: &Arc<AuditLog>) -> AuditLayer {
        AuditLayer {
            log: log.clone(),
            exchanges: TaskTracker::new(),
            metrics: Metrics::default(),
            in_flight: Arc::new(Semaphore::new(16)),
        }
    }

    #[tokio::test]
    async fn every_exchange_is_recorded_with_what_the_inner_layers_learned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let inner = tower::service_fn(|request: GatewayRequest| async move {
            AuditNotes::record(&request, |notes| {
                notes.request_bytes = 5;
                notes.caller = Some(consumer(CONSUMER));
                notes.addressed = Some(("H17.12".to_owned(), "land-records".to_owned()));
            });
            Ok::<_, Infallible>(Problem::NotGranted("no".to_owned()).response())
        });
        let service = layer(&log).layer(inner);
        let request = request("/H17.12/land-records/x?secret=1");
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
        assert!(record.get("clientGone").is_none(), "only written when the client was gone");
    }

    #[tokio::test]
    async fn an_exchange_whose_client_went_away_still_completes_and_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let inner = tower::service_fn(|_: GatewayRequest| async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"done")))
        });
        let audit = layer(&log);
        let exchanges = audit.exchanges.clone();
        let service = audit.layer(inner);
        // The client gives up after 20 ms: its future is dropped.
        let gave_up =
            tokio::time::timeout(std::time::Duration::from_millis(20), service.oneshot(request("/H17.12/x/y")));
        assert!(gave_up.await.is_err());
        exchanges.close();
        exchanges.wait().await;
        let text = std::fs::read_to_string(&path).unwrap();
        let record: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!((record["status"].as_u64(), record["clientGone"].as_bool()), (Some(200), Some(true)));
    }

    #[tokio::test]
    async fn over_the_exchanges_in_flight_the_gateway_answers_busy_and_records_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let inner = tower::service_fn(|_: GatewayRequest| async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            Ok::<_, Infallible>(http::Response::new(bytes::Bytes::from_static(b"done")))
        });
        let mut audit = layer(&log);
        audit.in_flight = Arc::new(Semaphore::new(1));
        let service = audit.layer(inner);
        let first = tokio::spawn(service.clone().oneshot(request("/H17.12/x/1")));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let second = service.clone().oneshot(request("/H17.12/x/2")).await.unwrap();
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(second.headers().contains_key(http::header::RETRY_AFTER));
        assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::OK);
        let third = service.oneshot(request("/H17.12/x/3")).await.unwrap();
        assert_eq!(third.status(), StatusCode::OK, "the place came back");
        let text = std::fs::read_to_string(&path).unwrap();
        let statuses: Vec<(String, u64)> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["kind"] == "exchange")
            .map(|r| (r["path"].as_str().unwrap().to_owned(), r["status"].as_u64().unwrap()))
            .collect();
        assert!(statuses.contains(&("/H17.12/x/2".to_owned(), 503)), "{statuses:?}");
    }
}
