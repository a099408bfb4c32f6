//! The route table: which APIs the gateway serves, where they go, who may call them.
//!
//! Provisional schema (version 1). The operator will compile DataSharingServices into this
//! document; once the shared serde types exist in `govpaas-crds` (`crds/src/lgsp.rs`), only
//! [`parse_route_table`] changes.
//!
//! ```json
//! { "version": 1,
//!   "apis": [ { "provider": "H17.12", "name": "land-records",
//!               "upstream": "http://10.0.0.7:8080/api/v1",
//!               "openData": false,
//!               "rateLimit": { "requestsPerMinute": 600, "burst": 20 },
//!               "consumers": ["spiffe://quangnam.gov.vn/agency/H49.12/dss/land"] } ] }
//! ```

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use govpaas_pki::WorkloadIdentity;
use govpaas_pki::identity::{agency_code, path_segment};
use http::Uri;
use serde::Deserialize;

/// The only schema version this gateway reads.
pub const ROUTE_TABLE_VERSION: u32 = 1;

/// Why a route table was refused (the previous one stays in force).
#[derive(Debug, thiserror::Error)]
pub enum RouteTableError {
    #[error("not a valid route table document: {0}")]
    Json(#[from] serde_json::Error),
    #[error("route table version {found} is not supported (this gateway reads version {ROUTE_TABLE_VERSION})")]
    Version { found: u32 },
    #[error("API {api}: {reason}")]
    Invalid { api: String, reason: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RouteTableDocument {
    version: u32,
    #[serde(default)]
    apis: Vec<ApiDocument>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApiDocument {
    provider: String,
    name: String,
    upstream: String,
    #[serde(default)]
    open_data: bool,
    rate_limit: RateLimit,
    #[serde(default)]
    consumers: Vec<String>,
}

/// A provider's rate limit, applied per consumer (or per client address for open data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

/// One published API, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Api {
    /// The provider's agency code, first segment of the request path.
    pub provider: String,
    /// The API's name, second segment of the request path.
    pub name: String,
    /// `http://host:port`, without a path.
    pub upstream_origin: Uri,
    /// The upstream base path without a trailing slash (`""` for the root).
    pub upstream_base_path: String,
    pub open_data: bool,
    pub rate_limit: RateLimit,
    /// Granted consumer identities, as URIs.
    pub consumers: Vec<String>,
}

impl Api {
    /// `H17.12/land-records`: how messages name the API.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider, self.name)
    }

    pub fn grants(&self, identity: &WorkloadIdentity) -> bool {
        let uri = identity.uri();
        self.consumers.contains(&uri)
    }
}

/// The validated table, indexed by (provider code, API name).
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    apis: HashMap<(String, String), Arc<Api>>,
}

impl RouteTable {
    pub fn get(&self, provider: &str, api: &str) -> Option<&Arc<Api>> {
        self.apis.get(&(provider.to_owned(), api.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.apis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apis.is_empty()
    }
}

/// Parses and validates a route table document. The one function to switch to the shared CRD
/// types later.
pub fn parse_route_table(json: &[u8]) -> Result<RouteTable, RouteTableError> {
    let doc: RouteTableDocument = serde_json::from_slice(json)?;
    if doc.version != ROUTE_TABLE_VERSION {
        return Err(RouteTableError::Version { found: doc.version });
    }
    let mut apis = HashMap::with_capacity(doc.apis.len());
    for api in doc.apis {
        let label = format!("{}/{}", api.provider, api.name);
        let invalid = |reason: String| RouteTableError::Invalid { api: label.clone(), reason };
        agency_code(&api.provider).map_err(|e| invalid(e.to_string()))?;
        path_segment("API name", &api.name).map_err(|e| invalid(e.to_string()))?;
        let (upstream_origin, upstream_base_path) = parse_upstream(&api.upstream).map_err(&invalid)?;
        let mut consumers = Vec::with_capacity(api.consumers.len());
        for consumer in &api.consumers {
            let identity = WorkloadIdentity::parse(consumer).map_err(|e| invalid(format!("consumer: {e}")))?;
            consumers.push(identity.uri());
        }
        let key = (api.provider.clone(), api.name.clone());
        let parsed = Api {
            provider: api.provider,
            name: api.name,
            upstream_origin,
            upstream_base_path,
            open_data: api.open_data,
            rate_limit: api.rate_limit,
            consumers,
        };
        if apis.insert(key, Arc::new(parsed)).is_some() {
            return Err(invalid("listed twice".to_owned()));
        }
    }
    Ok(RouteTable { apis })
}

/// `http://host:port/base` → (`http://host:port`, `/base`). Only plain HTTP: inside the cluster
/// the provider's Service is reached over the pod network, isolated by NetworkPolicy.
fn parse_upstream(upstream: &str) -> Result<(Uri, String), String> {
    let uri: Uri = upstream.parse().map_err(|e| format!("upstream {upstream:?} is not a URI: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("upstream {upstream:?} must be an http:// URL"));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("upstream {upstream:?} has no host"));
    };
    if authority.as_str().contains('@') {
        return Err(format!("upstream {upstream:?} must not carry credentials"));
    }
    if uri.query().is_some() {
        return Err(format!("upstream {upstream:?} must not have a query"));
    }
    let origin = Uri::builder()
        .scheme("http")
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| format!("upstream {upstream:?}: {e}"))?;
    Ok((origin, uri.path().trim_end_matches('/').to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSUMER: &str = "spiffe://quangnam.gov.vn/agency/H49.12/dss/land";

    fn doc(api: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "version": 1, "apis": [api] })).unwrap()
    }

    fn api() -> serde_json::Value {
        serde_json::json!({
            "provider": "H17.12", "name": "land-records", "upstream": "http://10.0.0.7:8080/api/v1/",
            "rateLimit": { "requestsPerMinute": 60, "burst": 5 }, "consumers": [CONSUMER],
        })
    }

    #[test]
    fn a_valid_table_is_indexed_by_provider_and_name() {
        let table = parse_route_table(&doc(api())).unwrap();
        let api = table.get("H17.12", "land-records").unwrap();
        assert_eq!(api.upstream_origin.to_string(), "http://10.0.0.7:8080/");
        assert_eq!(api.upstream_base_path, "/api/v1");
        assert!(!api.open_data);
        assert_eq!(api.consumers, [CONSUMER]);
        assert!(api.grants(&WorkloadIdentity::parse(CONSUMER).unwrap()));
        assert!(table.get("H17.12", "other").is_none());
    }

    #[test]
    fn bad_documents_are_refused_with_the_api_named() {
        let cases = [
            (serde_json::json!({ "upstream": "https://x:1/" }), "must be an http:// URL"),
            (serde_json::json!({ "upstream": "http://u:p@x:1/" }), "credentials"),
            (serde_json::json!({ "provider": "h17" }), "agency code"),
            (serde_json::json!({ "name": "Land Records" }), "API name"),
            (serde_json::json!({ "consumers": ["https://example.org/x"] }), "consumer"),
        ];
        for (patch, expected) in cases {
            let mut api = api();
            for (k, v) in patch.as_object().unwrap() {
                api[k] = v.clone();
            }
            let err = parse_route_table(&doc(api)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let zero_rate = serde_json::json!({ "requestsPerMinute": 0, "burst": 1 });
        let mut bad = api();
        bad["rateLimit"] = zero_rate;
        assert!(matches!(parse_route_table(&doc(bad)), Err(RouteTableError::Json(_))));
        let twice = serde_json::json!({ "version": 1, "apis": [api(), api()] });
        let err = parse_route_table(&serde_json::to_vec(&twice).unwrap()).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
        let err = parse_route_table(br#"{"version": 2, "apis": []}"#).unwrap_err();
        assert!(matches!(err, RouteTableError::Version { found: 2 }));
        assert!(parse_route_table(b"{not json").is_err());
    }
}
