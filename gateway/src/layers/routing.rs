//! Which API a request addresses: `/<provider agency code>/<api>/<rest>`, read from the
//! request's canonical path ([`crate::path::canonicalise`]), which replaces the path the client
//! sent: the path routed and authorised is the path forwarded. The route table is read once per
//! request from the atomically swapped current table, so a swap never changes a request already
//! routed.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{Check, GatewayRequest, Refusal};
use crate::context::{AuditNotes, RoutedRequest};
use crate::path::canonicalise;
use crate::problem::Problem;
use crate::routes::RouteSet;

#[derive(Clone, Debug)]
pub struct RoutingCheck {
    pub routes: Arc<ArcSwap<RouteSet>>,
}

/// `(provider, api, rest)` of a request path, `rest` empty or starting with `/`.
pub fn split_path(path: &str) -> Result<(&str, &str, &str), String> {
    let expected = "expected /<provider agency code>/<api name>/<path>";
    let trimmed = path.strip_prefix('/').ok_or_else(|| expected.to_owned())?;
    let (provider, after) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let (api, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    if provider.is_empty() || api.is_empty() {
        return Err(format!("{path:?}: {expected}"));
    }
    // The national prefix is lower case, so no agency code can take it.
    if provider != govpaas_crds::lgsp::NATIONAL_PREFIX {
        govpaas_pki::identity::agency_code(provider).map_err(|e| format!("{path:?}: {e}"))?;
    }
    govpaas_pki::identity::path_segment("API name", api).map_err(|e| format!("{path:?}: {e}"))?;
    Ok((provider, api, rest))
}

/// At most 256 bytes of a refused path, for the answer's detail.
fn cut(path: &str) -> &str {
    let mut end = path.len().min(256);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

impl Check for RoutingCheck {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal> {
        let malformed = |detail| -> Refusal { Problem::MalformedPath(detail).into() };
        let sent = request.uri().path();
        let path = canonicalise(sent).map_err(|e| malformed(format!("{:?}: {e}", cut(sent))))?;
        if path != sent {
            let path_and_query = match request.uri().query() {
                Some(query) => format!("{path}?{query}"),
                None => path.clone(),
            };
            let uri = http::Uri::builder()
                .path_and_query(path_and_query)
                .build()
                .map_err(|e| malformed(format!("{path:?}: {e}")))?;
            *request.uri_mut() = uri;
        }
        AuditNotes::record(request, |notes| notes.canonical_path = Some(path.clone()));
        let (provider, api, rest) = split_path(&path).map_err(malformed)?;
        // `/<code>/edoc/<DocumentService><rest>`: an exchange endpoint, named `edoc/<service>`.
        let exchange;
        let (api, rest) = if api == govpaas_crds::lgsp::EXCHANGE_SEGMENT {
            let after = rest.strip_prefix('/').unwrap_or_default();
            let (service, rest) = after.find('/').map_or((after, ""), |i| (&after[..i], &after[i..]));
            govpaas_pki::identity::path_segment("DocumentService name", service)
                .map_err(|e| malformed(format!("{path:?}: {e}")))?;
            exchange = format!("{api}/{service}");
            (exchange.as_str(), rest)
        } else {
            (api, rest)
        };
        AuditNotes::record(request, |notes| notes.addressed = Some((provider.to_owned(), api.to_owned())));
        let table = self.routes.load();
        let Some(route) = table.get(provider, api) else {
            let detail = if provider == govpaas_crds::lgsp::NATIONAL_PREFIX {
                format!("no agency of this province was granted the national API {api:?} on this gateway")
            } else if let Some(service) = api.strip_prefix("edoc/") {
                format!("agency {provider} has no document exchange endpoint {service:?} on this gateway")
            } else {
                format!("agency {provider} publishes no API named {api:?} on this gateway")
            };
            return Err(Problem::NoSuchApi(detail).into());
        };
        AuditNotes::record(request, |notes| notes.route = Some((route.provider.clone(), route.name.clone())));
        // `//host/…` as a request target reads as a network-path reference to some servers and
        // frameworks: never forward one (only possible when the upstream base path is the root).
        let root = match &route.target {
            crate::routes::Target::Agency { base_path, .. } | crate::routes::Target::Exchange { base_path, .. } => {
                base_path.is_empty()
            }
            crate::routes::Target::National => false,
        };
        if root && rest.starts_with("//") {
            return Err(malformed(format!(
                "{path:?}: the provider would receive a path starting with '//', which some servers read as another host"
            )));
        }
        let routed = RoutedRequest { api: route.clone(), rest: rest.to_owned() };
        request.extensions_mut().insert(routed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::testing::*;
    use crate::problem::detail_of;
    use crate::routes::{RouteSources, SourceKey};
    use http::StatusCode;

    #[test]
    fn paths_split_into_provider_api_and_rest() {
        assert_eq!(split_path("/H17.12/land-records"), Ok(("H17.12", "land-records", "")));
        assert_eq!(split_path("/H17.12/land-records/"), Ok(("H17.12", "land-records", "/")));
        assert_eq!(split_path("/H17.12/land-records/a/b"), Ok(("H17.12", "land-records", "/a/b")));
        for bad in ["/", "/H17.12", "/H17.12/", "//x", "/h17/x", "/H17/Bad_Name"] {
            assert!(split_path(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn requests_are_routed_from_the_current_table() {
        let mut sources = RouteSources::default();
        let json = crate::routes::tests::table("stnmt", "H17.12", serde_json::json!({}));
        assert!(sources.update(SourceKey { created: 0, name: "t".into() }, &json));
        let table = sources.merged();
        let check = RoutingCheck { routes: Arc::new(ArcSwap::from_pointee(table)) };
        let mut ok = request("/H17.12/land-records/parcels/7?x=1");
        check.check(&mut ok).unwrap();
        let routed = ok.extensions().get::<RoutedRequest>().unwrap();
        assert_eq!((routed.api.label(), routed.rest.as_str()), ("H17.12/land-records".to_owned(), "/parcels/7"));

        let missing = check.check(&mut request("/H17.12/other")).unwrap_err();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert!(detail_of(&missing)["detail"].as_str().unwrap().contains("H17.12"));
        let malformed = check.check(&mut request("/only-one-segment")).unwrap_err();
        assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);

        // The canonical path replaces the one sent; one that could change meaning is refused.
        let mut encoded = request("/H17.12/land-records/%7Eparcels/%c3%a9?q=%2F");
        check.check(&mut encoded).unwrap();
        assert_eq!(encoded.uri(), "/H17.12/land-records/~parcels/%C3%A9?q=%2F");
        assert_eq!(encoded.extensions().get::<RoutedRequest>().unwrap().rest, "/~parcels/%C3%A9");
        for traversal in
            ["/H17.12/land-records/..%2F..%2Fadmin/x", "/H17.12/land-records/%2e%2e/x", "/H17.12/x/../land-records/"]
        {
            let refused = check.check(&mut request(traversal)).unwrap_err();
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{traversal}");
            assert!(
                detail_of(&refused)["detail"].as_str().unwrap().contains("could change")
                    || detail_of(&refused)["detail"].as_str().unwrap().contains("segments"),
                "{traversal}"
            );
        }

        check.routes.store(Arc::new(RouteSet::default()));
        assert_eq!(check.check(&mut request("/H17.12/land-records")).unwrap_err().status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn national_paths_route_to_the_national_api_granted() {
        let mut sources = RouteSources::default();
        let json = crate::routes::tests::national_table("so-a", "mot-cua", &["csdlqg-dan-cu"]);
        assert!(sources.update(SourceKey { created: 0, name: "t".into() }, &json));
        let check = RoutingCheck { routes: Arc::new(ArcSwap::from_pointee(sources.merged())) };
        let mut request = request("/ndxp/csdlqg-dan-cu/cong-dan/001?ho=Nguyen");
        check.check(&mut request).unwrap();
        let routed = request.extensions().get::<RoutedRequest>().unwrap();
        assert_eq!((routed.api.label(), routed.rest.as_str()), ("ndxp/csdlqg-dan-cu".to_owned(), "/cong-dan/001"));
        assert_eq!(routed.api.target, crate::routes::Target::National);

        let unknown = check.check(&mut self::request("/ndxp/csdlqg-dat-dai/x")).unwrap_err();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert!(detail_of(&unknown)["detail"].as_str().unwrap().contains("national API"), "{:?}", detail_of(&unknown));
        let climbing = check.check(&mut self::request("/ndxp/csdlqg-dan-cu/%2e%2e/admin")).unwrap_err();
        assert_eq!(climbing.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn exchange_paths_route_to_the_receivers_endpoint() {
        let table = serde_json::json!({
            "schema": govpaas_crds::lgsp::SCHEMA_V2,
            "source": {"kind": "DocumentService", "namespace": "stc", "name": "van-thu", "uid": "u"},
            "agencyCode": "H17.12",
            "exchange": [{"service": "van-thu", "pathPrefix": "/H17.12/edoc/van-thu/",
                          "upstream": {"namespace": "stc", "service": "van-thu-docs", "port": 443, "path": "",
                                       "serverName": "van-thu-docs.stc.quangnam.gov.vn"},
                          "rateLimit": {"requestsPerMinute": 60, "burst": 5}, "senders": []}],
        });
        let mut sources = RouteSources::default();
        assert!(sources.update(SourceKey { created: 0, name: "t".into() }, &serde_json::to_vec(&table).unwrap()));
        let check = RoutingCheck { routes: Arc::new(ArcSwap::from_pointee(sources.merged())) };
        let mut routed = request("/H17.12/edoc/van-thu/goi-tin/1");
        check.check(&mut routed).unwrap();
        let routed = routed.extensions().get::<RoutedRequest>().unwrap().clone();
        assert_eq!((routed.api.label(), routed.rest.as_str()), ("H17.12/edoc/van-thu".to_owned(), "/goi-tin/1"));
        let missing = check.check(&mut request("/H17.12/edoc/luu-tru/")).unwrap_err();
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        for bad in ["/H17.12/edoc/", "/H17.12/edoc", "/H17.12/edoc/Van_Thu/x"] {
            assert_eq!(check.check(&mut request(bad)).unwrap_err().status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        // The receiver's base path is its root: a rest starting with `//` would name another host.
        assert_eq!(
            check.check(&mut request("/H17.12/edoc/van-thu//evil.example/x")).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn a_path_the_provider_could_read_as_another_host_is_refused() {
        let mut sources = RouteSources::default();
        let root = serde_json::json!({"upstream": {"namespace": "stnmt", "service": "land", "port": 8080, "path": ""}});
        sources
            .update(SourceKey { created: 0, name: "t".into() }, &crate::routes::tests::table("stnmt", "H17.12", root));
        let check = RoutingCheck { routes: Arc::new(ArcSwap::from_pointee(sources.merged())) };
        let refused = check.check(&mut request("/H17.12/land-records//evil.example/x")).unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        check.check(&mut request("/H17.12/land-records/a//b")).unwrap();
    }

    proptest::proptest! {
        /// Any path: no panic; a routed request carries its canonical path, and its rest (what is
        /// forwarded after the base path) is canonical too.
        #[test]
        fn routing_forwards_only_canonical_paths(raw in "(/|[A-Za-z0-9.%;~-]{1,6}|%2[eEfF]|%5[cC]|\\.\\.){0,12}") {
            let mut sources = RouteSources::default();
            sources.update(SourceKey { created: 0, name: "t".into() }, &crate::routes::tests::table("stnmt", "H17.12", serde_json::json!({})));
            let check = RoutingCheck { routes: Arc::new(ArcSwap::from_pointee(sources.merged())) };
            let path = format!("/H17.12/land-records/{raw}");
            let Ok(uri) = path.parse::<http::Uri>() else { return Ok(()) };
            let mut routed = request("/");
            *routed.uri_mut() = uri;
            if check.check(&mut routed).is_ok() {
                let canonical = routed.uri().path().to_owned();
                proptest::prop_assert_eq!(crate::path::canonicalise(&canonical), Ok(canonical.clone()));
                let rest = &routed.extensions().get::<RoutedRequest>().unwrap().rest;
                proptest::prop_assert!(canonical.ends_with(rest.as_str()));
                proptest::prop_assert!(rest.is_empty() || crate::path::canonicalise(rest) == Ok(rest.clone()));
            }
        }
    }
}
