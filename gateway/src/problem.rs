//! Every answer the gateway gives in place of the provider's: one enum, [`Problem`], whose variant
//! names the problem (its `type` URI, and what a metric would be labelled with — never the
//! detail), answered as RFC 9457 problem details (`application/problem+json`).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// A response extension: the kind of problem the gateway answered with (absent when the provider
/// answered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProblemKind(pub &'static str);

/// Why the gateway answers itself. The payload is the answer's `detail`: what happened to this
/// request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The path is not `/<code>/<api>/…`, or could change meaning when decoded.
    #[error("{0}")]
    MalformedPath(String),
    #[error("{0}")]
    NoSuchApi(String),
    /// The client certificate establishes no agency identity.
    #[error("{0}")]
    IdentityRefused(String),
    /// The client certificate expired during a long-lived connection.
    #[error("{0}")]
    CertificateExpired(String),
    #[error("{0}")]
    NotGranted(String),
    /// A granted-only API called on the open-data listener.
    #[error("{0}")]
    NotOpenData(String),
    #[error("{detail}")]
    RateLimited { detail: String, retry_after: Duration },
    #[error("the gateway accepts request bodies of at most {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(Duration),
    #[error("the request body could not be read: {0}")]
    BodyBroken(String),
    /// The body budget stayed exhausted.
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    UpstreamUnavailable(String),
    #[error("{0}")]
    UpstreamTimeout(String),
    #[error("the exchange could not be audited, so its answer is withheld")]
    AuditUnavailable,
    /// A bug: layers stacked in the wrong order and the like.
    #[error("{0}")]
    Internal(String),
}

impl Problem {
    pub fn status(&self) -> StatusCode {
        match self {
            Problem::MalformedPath(_) | Problem::BodyBroken(_) => StatusCode::BAD_REQUEST,
            Problem::NoSuchApi(_) => StatusCode::NOT_FOUND,
            Problem::IdentityRefused(_)
            | Problem::CertificateExpired(_)
            | Problem::NotGranted(_)
            | Problem::NotOpenData(_) => StatusCode::FORBIDDEN,
            Problem::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Problem::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Problem::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Problem::Busy(_) | Problem::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Problem::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            Problem::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Problem::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The last segment of the problem's `type` URI.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::MalformedPath(_) => "malformed-path",
            Problem::NoSuchApi(_) => "no-such-api",
            Problem::IdentityRefused(_) => "identity-refused",
            Problem::CertificateExpired(_) => "certificate-expired",
            Problem::NotGranted(_) => "not-granted",
            Problem::NotOpenData(_) => "not-open-data",
            Problem::RateLimited { .. } => "rate-limited",
            Problem::BodyTooLarge { .. } => "body-too-large",
            Problem::BodyTimeout(_) => "body-timeout",
            Problem::BodyBroken(_) => "body-broken",
            Problem::Busy(_) => "busy",
            Problem::UpstreamUnavailable(_) => "upstream-unavailable",
            Problem::UpstreamTimeout(_) => "upstream-timeout",
            Problem::AuditUnavailable => "audit-unavailable",
            Problem::Internal(_) => "internal",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Problem::MalformedPath(_) => "Malformed API path",
            Problem::NoSuchApi(_) => "No such API",
            Problem::IdentityRefused(_) => "Client certificate refused",
            Problem::CertificateExpired(_) => "Client certificate expired",
            Problem::NotGranted(_) => "API not granted",
            Problem::NotOpenData(_) => "Not open data",
            Problem::RateLimited { .. } => "Rate limit exceeded",
            Problem::BodyTooLarge { .. } => "Request body too large",
            Problem::BodyTimeout(_) => "Request body too slow",
            Problem::BodyBroken(_) => "Request body broken",
            Problem::Busy(_) => "Gateway busy",
            Problem::UpstreamUnavailable(_) => "Upstream unavailable",
            Problem::UpstreamTimeout(_) => "Upstream timeout",
            Problem::AuditUnavailable => "Audit unavailable",
            Problem::Internal(_) => "Internal error",
        }
    }

    /// When the client may try again (`Retry-After`, whole seconds, at least 1).
    fn retry_after(&self) -> Option<u64> {
        match self {
            Problem::RateLimited { retry_after, .. } => {
                Some((retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1))
            }
            Problem::Busy(_) => Some(1),
            _ => None,
        }
    }

    /// The problem-details answer.
    pub fn response(&self) -> Response<Bytes> {
        let body = serde_json::json!({
            "type": format!("https://govpaas.io/problems/lgsp/{}", self.kind()),
            "title": self.title(),
            "status": self.status().as_u16(),
            "detail": self.to_string(),
        });
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = self.status();
        // The metrics' outcome: the gateway answered this itself, and why.
        response.extensions_mut().insert(ProblemKind(self.kind()));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = self.retry_after() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<Problem> for Box<Response<Bytes>> {
    fn from(problem: Problem) -> Self {
        Box::new(problem.response())
    }
}

#[cfg(test)]
pub(crate) fn detail_of(response: &Response<Bytes>) -> serde_json::Value {
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    serde_json::from_slice(response.body()).unwrap()
}
