//! Error responses as RFC 9457 problem details (`application/problem+json`).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// A problem-details response: `title` is fixed per kind of problem, `detail` says what happened
/// to this request.
pub fn problem(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Response<Bytes> {
    let body = serde_json::json!({
        "type": format!("https://govpaas.io/problems/lgsp/{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    response
}

/// [`problem`], boxed, for a layer that refuses a request.
pub fn refusal(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Box<Response<Bytes>> {
    Box::new(problem(status, kind, title, detail))
}

#[cfg(test)]
pub(crate) fn detail_of(response: &Response<Bytes>) -> serde_json::Value {
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
    serde_json::from_slice(response.body()).unwrap()
}
