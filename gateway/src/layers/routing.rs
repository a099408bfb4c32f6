//! Which API a request addresses: `/<provider agency code>/<api>/<rest>`. The route table is
//! read once per request from the atomically swapped current table, so a swap never changes a
//! request already routed.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::StatusCode;

use super::{Check, GatewayRequest, Refusal};
use crate::context::{AuditNotes, RoutedRequest};
use crate::problem::refusal;
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
    govpaas_pki::identity::agency_code(provider).map_err(|e| format!("{path:?}: {e}"))?;
    govpaas_pki::identity::path_segment("API name", api).map_err(|e| format!("{path:?}: {e}"))?;
    // A dot segment could climb out of the provider's base path upstream.
    let dot_segment = |segment: &str| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    };
    if rest.split('/').any(dot_segment) {
        return Err(format!("{path:?}: '.' and '..' path segments are not allowed"));
    }
    Ok((provider, api, rest))
}

impl Check for RoutingCheck {
    fn check(&self, request: &mut GatewayRequest) -> Result<(), Refusal> {
        let path = request.uri().path().to_owned();
        let (provider, api, rest) = split_path(&path)
            .map_err(|detail| refusal(StatusCode::BAD_REQUEST, "malformed-path", "Malformed API path", detail))?;
        AuditNotes::record(request, |notes| notes.addressed = Some((provider.to_owned(), api.to_owned())));
        let table = self.routes.load();
        let Some(route) = table.get(provider, api) else {
            return Err(refusal(
                StatusCode::NOT_FOUND,
                "no-such-api",
                "No such API",
                format!("agency {provider} publishes no API named {api:?} on this gateway"),
            ));
        };
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

    #[test]
    fn paths_split_into_provider_api_and_rest() {
        assert_eq!(split_path("/H17.12/land-records"), Ok(("H17.12", "land-records", "")));
        assert_eq!(split_path("/H17.12/land-records/"), Ok(("H17.12", "land-records", "/")));
        assert_eq!(split_path("/H17.12/land-records/a/b"), Ok(("H17.12", "land-records", "/a/b")));
        for bad in ["/", "/H17.12", "/H17.12/", "//x", "/h17/x", "/H17/Bad_Name", "/H17/x/../../etc", "/H17/x/%2E%2e/y"]
        {
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

        check.routes.store(Arc::new(RouteSet::default()));
        assert_eq!(check.check(&mut request("/H17.12/land-records")).unwrap_err().status(), StatusCode::NOT_FOUND);
    }
}
