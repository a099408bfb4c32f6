//! Every request the operator sends to the API server, counted by verb and resource
//! (`govpaas_api_requests_total`): what the operator costs the API server, which every tenant
//! shares. A tower layer on the kube client's stack classifies each request from its method,
//! path, query and content type alone, before it is sent; the labels are bounded (the verbs
//! below, and the resources the operator's own code asks for), never object names.

use std::sync::Arc;

use http::header::CONTENT_TYPE;
use http::{Method, Request};

use super::Metrics;

/// What a request does, as the API server's audit names its verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Watch,
    List,
    Get,
    /// A server-side apply (a PATCH of `application/apply-patch+yaml`).
    Apply,
    /// Any other PATCH (merge, JSON or strategic merge).
    Patch,
    Create,
    Update,
    Delete,
    DeleteCollection,
    /// Anything else (OPTIONS, HEAD…).
    Other,
}

impl Verb {
    pub fn label(self) -> &'static str {
        match self {
            Verb::Watch => "watch",
            Verb::List => "list",
            Verb::Get => "get",
            Verb::Apply => "apply",
            Verb::Patch => "patch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Other => "other",
        }
    }

    /// Whether the request changes something (or could): every verb but reads and watches.
    pub fn writes(self) -> bool {
        !matches!(self, Verb::Watch | Verb::List | Verb::Get | Verb::Other)
    }
}

/// One request, classified: its verb and its resource as kubectl would name it
/// (`deployments.apps`, `secrets`, `tenants.govpaas.io/status`), or `discovery` for paths that name
/// no resource (`/version`, `/apis`, a group's list of resources).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    pub verb: Verb,
    pub resource: String,
}

/// Classifies a request to the API server.
pub fn classify(method: &Method, path: &str, query: Option<&str>, content_type: Option<&str>) -> ApiRequest {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    // `/api/v1/…` is the core group, `/apis/<group>/<version>/…` every other.
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    // What follows the version: [namespaces/<ns>/]<resource>[/<name>[/<subresource>]]. A
    // namespace's own subresources (`namespaces/<name>/status`, `/finalize`) read like a
    // namespaced resource list, so they are told apart by name.
    let (resource, named, subresource) = match rest {
        [] => ("", false, None),
        ["namespaces", _name, sub @ ("status" | "finalize")] => ("namespaces", true, Some(*sub)),
        ["namespaces", _ns, resource, tail @ ..] => split_tail(resource, tail),
        [resource, tail @ ..] => split_tail(resource, tail),
    };
    let query_has = |key: &str, value: &str| {
        query.is_some_and(|q| q.split('&').any(|pair| pair.split_once('=') == Some((key, value))))
    };
    let verb = match *method {
        Method::GET if query_has("watch", "true") || query_has("watch", "1") => Verb::Watch,
        Method::GET if named => Verb::Get,
        Method::GET => Verb::List,
        Method::POST => Verb::Create,
        Method::PUT => Verb::Update,
        Method::PATCH if content_type.is_some_and(|c| c.starts_with("application/apply-patch")) => Verb::Apply,
        Method::PATCH => Verb::Patch,
        Method::DELETE if named => Verb::Delete,
        Method::DELETE => Verb::DeleteCollection,
        _ => Verb::Other,
    };
    let resource = if resource.is_empty() {
        "discovery".to_owned()
    } else {
        let mut name = resource.to_owned();
        if !group.is_empty() {
            name.push('.');
            name.push_str(group);
        }
        if let Some(sub) = subresource {
            name.push('/');
            name.push_str(sub);
        }
        name
    };
    ApiRequest { verb, resource }
}

/// `<resource>[/<name>[/<subresource>]]` → (resource, whether an object is named, subresource).
fn split_tail<'a>(resource: &'a str, tail: &[&'a str]) -> (&'a str, bool, Option<&'a str>) {
    match tail {
        [] => (resource, false, None),
        [_name] => (resource, true, None),
        [_name, sub, ..] => (resource, true, Some(*sub)),
    }
}

/// Counts a request on its way out; for [`tower::util::MapRequestLayer`] on the kube client.
pub fn counter<B>(metrics: Arc<Metrics>) -> impl Fn(Request<B>) -> Request<B> + Clone {
    move |request: Request<B>| {
        let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let classified = classify(request.method(), request.uri().path(), request.uri().query(), content_type);
        metrics.api_request(&classified);
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, path_and_query: &str, content_type: Option<&str>) -> (&'static str, String) {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let request = classify(&method, path, query, content_type);
        (request.verb.label(), request.resource)
    }

    #[test]
    fn requests_are_classified_by_verb_and_resource() {
        let apply = Some("application/apply-patch+yaml");
        let merge = Some("application/merge-patch+json");
        let cases = [
            (Method::GET, "/api/v1/secrets?labelSelector=a%3Db&watch=true&resourceVersion=5", None, "watch", "secrets"),
            (Method::GET, "/api/v1/namespaces/ns/secrets?limit=500", None, "list", "secrets"),
            (Method::GET, "/api/v1/namespaces/ns/secrets/tls", None, "get", "secrets"),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/ns/deployments/web?fieldManager=x&force=true",
                apply,
                "apply",
                "deployments.apps",
            ),
            (
                Method::PATCH,
                "/apis/govpaas.io/v1alpha1/tenants/a/status?fieldManager=x",
                apply,
                "apply",
                "tenants.govpaas.io/status",
            ),
            (Method::PATCH, "/apis/govpaas.io/v1alpha1/namespaces/ns/portals/p", merge, "patch", "portals.govpaas.io"),
            (Method::POST, "/api/v1/namespaces/ns/events", Some("application/json"), "create", "events"),
            (Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events", None, "create", "events.events.k8s.io"),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l",
                None,
                "update",
                "leases.coordination.k8s.io",
            ),
            (
                Method::DELETE,
                "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/np",
                None,
                "delete",
                "networkpolicies.networking.k8s.io",
            ),
            (Method::DELETE, "/api/v1/namespaces/ns/configmaps", None, "deletecollection", "configmaps"),
            (Method::GET, "/api/v1/namespaces", None, "list", "namespaces"),
            (Method::GET, "/api/v1/namespaces/ns", None, "get", "namespaces"),
            (Method::PATCH, "/api/v1/namespaces/ns", apply, "apply", "namespaces"),
            (Method::PUT, "/api/v1/namespaces/ns/finalize", None, "update", "namespaces/finalize"),
            (Method::GET, "/api/v1/namespaces/ns/status", None, "get", "namespaces/status"),
            (Method::GET, "/version", None, "list", "discovery"),
            (Method::GET, "/apis/govpaas.io/v1alpha1", None, "list", "discovery"),
            (Method::GET, "/api/v1/namespaces/ns/pods?watch=false", None, "list", "pods"),
        ];
        for (method, path, content_type, verb, resource) in cases {
            assert_eq!(of(method, path, content_type), (verb, resource.to_owned()), "{path}");
        }
    }

    #[test]
    fn only_changes_count_as_writes() {
        for verb in [Verb::Apply, Verb::Patch, Verb::Create, Verb::Update, Verb::Delete, Verb::DeleteCollection] {
            assert!(verb.writes(), "{verb:?}");
        }
        for verb in [Verb::Watch, Verb::List, Verb::Get, Verb::Other] {
            assert!(!verb.writes(), "{verb:?}");
        }
    }

    #[test]
    fn the_counter_layer_counts_what_passes_through() {
        let metrics = Arc::new(Metrics::new(Arc::default()));
        let count = counter::<()>(metrics.clone());
        let get = || Request::builder().method(Method::GET).uri("https://k/api/v1/namespaces/a/secrets/b").body(());
        let _ = count(get().unwrap());
        let passed = count(get().unwrap());
        assert_eq!(passed.uri().path(), "/api/v1/namespaces/a/secrets/b", "the request goes on unchanged");
        let text = metrics.render();
        assert!(text.contains("govpaas_api_requests_total{verb=\"get\",resource=\"secrets\"} 2"), "{text}");
    }
}
