//! The route set: which APIs the gateway serves, where they go, who may call them.
//!
//! The operator compiles every DataSharingService into one route table
//! ([`govpaas_crds::lgsp::RouteTable`], schema `govpaas.io/lgsp-routes/v1`), stored in a ConfigMap
//! of its namespace. The gateway reads any number of such tables — from the cluster
//! ([`crate::cluster`]) or from files ([`crate::config`]) — and merges them into one [`RouteSet`]:
//!
//! - [`parse_route_table`] reads and validates one table (the one loader of the schema);
//! - [`RouteSources`] keeps the last good version of every source and merges them. A table that
//!   fails to parse is refused: logged, counted in `lgsp_gateway_route_tables_refused` until its
//!   source has a good table again, and skipped (its source's last good version, if any, stays):
//!   one bad table never breaks the others. Two sources claiming the same API: the older source (by its
//!   creation time, then its name) keeps it, and the conflict is logged.
//!
//! An upstream is `http://<service>.<namespace>.svc:<port><path>`; a `--resolve` override
//! ([`Resolve`]) connects to another address for a host (the gateway running outside the cluster),
//! while the request still names the Service's host.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use govpaas_crds::lgsp;
use govpaas_pki::WorkloadIdentity;
use govpaas_pki::identity::{agency_code, path_segment};
use http::Uri;
use prometheus_client::metrics::gauge::Gauge;

/// Why a route table was refused.
#[derive(Debug, thiserror::Error)]
pub enum RouteTableError {
    #[error(transparent)]
    Table(#[from] lgsp::RouteTableError),
    #[error("API {api}: {reason}")]
    Invalid { api: String, reason: String },
}

/// A provider's rate limit, applied per consumer (or per client address for open data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_minute: NonZeroU32,
    pub burst: NonZeroU32,
}

/// Addresses to connect to instead of resolving a host (`--resolve host=ip:port`, like curl's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolve(pub BTreeMap<String, SocketAddr>);

impl Resolve {
    /// Parses `host=ip:port`.
    pub fn parse_entry(entry: &str) -> Result<(String, SocketAddr), String> {
        let (host, address) = entry.split_once('=').ok_or_else(|| format!("{entry:?}: expected <host>=<ip:port>"))?;
        let address = address.parse().map_err(|e| format!("{entry:?}: {address:?} is not an ip:port ({e})"))?;
        if host.is_empty() {
            return Err(format!("{entry:?}: no host"));
        }
        Ok((host.to_ascii_lowercase(), address))
    }
}

/// Where a route's requests go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A provider's Service in the cluster, over plain HTTP on the pod network.
    Agency {
        /// Where to connect: `http://host:port`, without a path (a `--resolve` address if one applies).
        origin: Uri,
        /// The `Host` the provider is sent: `<service>.<namespace>.svc:<port>`.
        host: String,
        /// The upstream base path without a trailing slash (`""` for the root).
        base_path: String,
    },
    /// The national platform (NDXP), over mutual TLS with the province's identity
    /// ([`crate::national`]): `<NDXP url>/<api><rest>`.
    National,
    /// A DocumentService's exchange endpoint, over TLS: the receiver's certificate is verified
    /// for `server_name` against the platform trust bundle.
    Exchange {
        /// Where to connect: `<service>.<namespace>.svc:<port>`, or a `--resolve` address.
        connect: String,
        /// The name the receiver's certificate carries (also the `Host` it is sent).
        server_name: String,
        /// The upstream base path without a trailing slash.
        base_path: String,
    },
}

/// One published API, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Api {
    /// The provider's agency code, first segment of the request path; [`lgsp::NATIONAL_PREFIX`]
    /// for an API of the national platform.
    pub provider: String,
    /// The API's name, second segment of the request path.
    pub name: String,
    pub target: Target,
    pub open_data: bool,
    pub rate_limit: RateLimit,
    /// Granted consumer identities, as URIs (every API and national grant; a version 2 exchange
    /// endpoint's listed senders).
    pub consumers: Vec<String>,
    /// A version 3 exchange endpoint: its senders are decided by its rules, not listed.
    pub exchange: Option<ExchangeAdmission>,
    /// The route table it came from (`namespace/name` of its DataSharingService).
    pub source: String,
}

/// Who may send to a version 3 exchange endpoint: an active sender its rules admit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeAdmission {
    /// The receiver's DocumentService, as the active set names it.
    pub service: String,
    /// The identity the receiver itself sends as, as a URI: it makes the receiver an active sender
    /// (never its own).
    pub identity: String,
    /// The receiver's rules about senders.
    pub rules: lgsp::SenderRules,
    /// The active senders of the route set this endpoint is in ([`RouteSources::merged`]).
    pub active: Arc<ActiveSenders>,
}

/// The identities of every version 3 exchange endpoint served → (their agency code, normalised;
/// their DocumentService).
pub type ActiveSenders = HashMap<String, (String, String)>;

impl Api {
    /// `H17.12/land-records`: how messages name the API.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider, self.name)
    }

    /// Whether the consumer of identity URI `uri` is granted this API (may send to this exchange
    /// endpoint).
    pub fn grants(&self, uri: &str) -> bool {
        match &self.exchange {
            // The active set holds one identity per endpoint, so the receiver's own is the only
            // one naming its agency and DocumentService.
            Some(admission) => {
                uri != admission.identity
                    && admission
                        .active
                        .get(uri)
                        .is_some_and(|(agency, service)| admission.rules.admits(agency, service))
            }
            None => self.consumers.iter().any(|consumer| consumer == uri),
        }
    }
}

/// The merged routes, indexed by (provider code, API name).
#[derive(Clone, Debug, Default)]
pub struct RouteSet {
    apis: HashMap<(String, String), Arc<Api>>,
    /// Counts the route sets this process built (0: none yet), for the metrics.
    generation: u64,
    /// When it was built.
    built_at: Option<std::time::SystemTime>,
}

/// The generation of the next route set built.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl RouteSet {
    /// A route set of `apis`, with the next generation number.
    fn built(apis: HashMap<(String, String), Arc<Api>>) -> Self {
        let generation = GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        RouteSet { apis, generation, built_at: Some(std::time::SystemTime::now()) }
    }

    /// Which route set this is, in the order this process built them.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When it was built (`None` for the empty set the gateway starts with).
    pub fn built_at(&self) -> Option<std::time::SystemTime> {
        self.built_at
    }

    /// Every API, for labels bounded by the route tables.
    pub fn apis(&self) -> impl Iterator<Item = &Arc<Api>> {
        self.apis.values()
    }

    /// The API `api` of agency `provider`, whichever form its code is written in (`H48.12` and the
    /// legacy `000.00.12.H48` name one agency: `govpaas_crds::agency::normalise`), or of the
    /// national platform when `provider` is [`lgsp::NATIONAL_PREFIX`].
    pub fn get(&self, provider: &str, api: &str) -> Option<&Arc<Api>> {
        self.apis.get(&(route_key(provider), api.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.apis.len()
    }

    pub fn is_empty(&self) -> bool {
        self.apis.is_empty()
    }
}

/// The provider part of a route's key: the normalised agency code, or the national prefix.
fn route_key(provider: &str) -> String {
    if provider == lgsp::NATIONAL_PREFIX { provider.to_owned() } else { govpaas_crds::agency::normalise(provider) }
}

/// Reads and validates one route table (a [`lgsp::RouteTable`] document): the APIs it provides
/// and the national-platform APIs it was granted. Any invalid route refuses the whole table.
pub fn parse_route_table(json: &[u8], resolve: &Resolve) -> Result<Vec<Api>, RouteTableError> {
    let text = std::str::from_utf8(json)
        .map_err(|e| RouteTableError::Invalid { api: "(table)".to_owned(), reason: format!("not UTF-8: {e}") })?;
    let table = lgsp::RouteTable::from_json(text)?;
    let source = format!("{}/{}", table.source.namespace, table.source.name);
    let mut apis = Vec::with_capacity(table.routes.len());
    for route in &table.routes {
        let label = format!("{}/{}", table.agency_code, route.api);
        let invalid = |reason: String| RouteTableError::Invalid { api: label.clone(), reason };
        agency_code(&table.agency_code).map_err(|e| invalid(e.to_string()))?;
        path_segment("API name", &route.api).map_err(|e| invalid(e.to_string()))?;
        if route.path_prefix != lgsp::api_path(&table.agency_code, &route.api) {
            return Err(invalid(format!(
                "pathPrefix {:?} is not {:?}",
                route.path_prefix,
                lgsp::api_path(&table.agency_code, &route.api)
            )));
        }
        let (origin, host, base_path) = upstream(&route.upstream, resolve).map_err(&invalid)?;
        let rate_limit = rate_limit(&route.rate_limit).map_err(&invalid)?;
        let mut consumers = Vec::with_capacity(route.consumers.len());
        for consumer in &route.consumers {
            let identity =
                WorkloadIdentity::parse(&consumer.identity).map_err(|e| invalid(format!("consumer: {e}")))?;
            consumers.push(identity.uri());
        }
        if apis.iter().any(|api: &Api| api.name == route.api) {
            return Err(invalid("listed twice".to_owned()));
        }
        apis.push(Api {
            provider: table.agency_code.clone(),
            name: route.api.clone(),
            target: Target::Agency { origin, host, base_path },
            open_data: route.open_data,
            rate_limit,
            consumers,
            exchange: None,
            source: source.clone(),
        });
    }
    for exchange in &table.exchange {
        let name = format!("{}/{}", lgsp::EXCHANGE_SEGMENT, exchange.service);
        let label = format!("{}/{name}", table.agency_code);
        let invalid = |reason: String| RouteTableError::Invalid { api: label.clone(), reason };
        agency_code(&table.agency_code).map_err(|e| invalid(e.to_string()))?;
        path_segment("DocumentService name", &exchange.service).map_err(|e| invalid(e.to_string()))?;
        let expected = lgsp::exchange_path(&table.agency_code, &exchange.service);
        if exchange.path_prefix != expected {
            return Err(invalid(format!("pathPrefix {:?} is not {expected:?}", exchange.path_prefix)));
        }
        let plain = lgsp::Upstream {
            namespace: exchange.upstream.namespace.clone(),
            service: exchange.upstream.service.clone(),
            port: exchange.upstream.port,
            path: exchange.upstream.path.clone(),
        };
        let (origin, _, base_path) = upstream(&plain, resolve).map_err(&invalid)?;
        let server_name = &exchange.upstream.server_name;
        rustls::pki_types::ServerName::try_from(server_name.as_str())
            .ok()
            .filter(|_| !server_name.is_empty() && server_name.parse::<std::net::IpAddr>().is_err())
            .ok_or_else(|| invalid(format!("serverName {server_name:?} is not a DNS name")))?;
        let mut senders = Vec::with_capacity(exchange.senders.len());
        for sender in &exchange.senders {
            let identity = WorkloadIdentity::parse(&sender.identity).map_err(|e| invalid(format!("sender: {e}")))?;
            senders.push(identity.uri());
        }
        // Version 3 (`RouteTable::from_json` checked that both are there): the endpoint's own
        // identity must be its DocumentService's, or a table could make another agency a sender.
        let admission = match (&exchange.identity, &exchange.admission) {
            (Some(identity), Some(rules)) => {
                let identity = WorkloadIdentity::parse(identity).map_err(|e| invalid(format!("identity: {e}")))?;
                let names_it = govpaas_crds::agency::normalise(identity.agency().agency_code())
                    == route_key(&table.agency_code)
                    && identity.kind() == lgsp::EXCHANGE_IDENTITY_KIND
                    && identity.name() == exchange.service;
                if !names_it {
                    return Err(invalid(format!(
                        "identity {} is not the sending identity of DocumentService {} of agency {}",
                        identity.uri(),
                        exchange.service,
                        table.agency_code
                    )));
                }
                Some(ExchangeAdmission {
                    service: exchange.service.clone(),
                    identity: identity.uri(),
                    rules: rules.clone(),
                    active: Arc::default(),
                })
            }
            _ => None,
        };
        if apis.iter().any(|api: &Api| api.provider == table.agency_code && api.name == name) {
            return Err(invalid("listed twice".to_owned()));
        }
        apis.push(Api {
            provider: table.agency_code.clone(),
            name,
            target: Target::Exchange {
                connect: origin.authority().map(|a| a.to_string()).unwrap_or_default(),
                server_name: server_name.clone(),
                base_path,
            },
            open_data: false,
            rate_limit: rate_limit(&exchange.rate_limit).map_err(&invalid)?,
            consumers: senders,
            exchange: admission,
            source: source.clone(),
        });
    }
    for national in &table.national {
        let label = format!("{}/{}", lgsp::NATIONAL_PREFIX, national.api);
        let invalid = |reason: String| RouteTableError::Invalid { api: label.clone(), reason };
        path_segment("API name", &national.api).map_err(|e| invalid(e.to_string()))?;
        if national.path_prefix != lgsp::national_path(&national.api) {
            return Err(invalid(format!(
                "pathPrefix {:?} is not {:?}",
                national.path_prefix,
                lgsp::national_path(&national.api)
            )));
        }
        let consumer = WorkloadIdentity::parse(&national.consumer).map_err(|e| invalid(format!("consumer: {e}")))?;
        if apis.iter().any(|api: &Api| api.target == Target::National && api.name == national.api) {
            return Err(invalid("listed twice".to_owned()));
        }
        apis.push(Api {
            provider: lgsp::NATIONAL_PREFIX.to_owned(),
            name: national.api.clone(),
            target: Target::National,
            open_data: false,
            rate_limit: rate_limit(&national.rate_limit).map_err(&invalid)?,
            consumers: vec![consumer.uri()],
            exchange: None,
            source: source.clone(),
        });
    }
    Ok(apis)
}

/// A rate limit of a route table, both numbers at least 1.
fn rate_limit(limit: &govpaas_crds::common::RateLimit) -> Result<RateLimit, String> {
    let positive = |value: i32, what: &str| {
        u32::try_from(value).ok().and_then(NonZeroU32::new).ok_or_else(|| format!("{what} must be ≥ 1"))
    };
    Ok(RateLimit {
        requests_per_minute: positive(limit.requests_per_minute, "rateLimit.requestsPerMinute")?,
        burst: positive(limit.burst, "rateLimit.burst")?,
    })
}

/// The Service behind a route → (where to connect, the `Host`, the base path). Plain HTTP: inside
/// the cluster the provider's Service is reached over the pod network, isolated by NetworkPolicy.
fn upstream(upstream: &lgsp::Upstream, resolve: &Resolve) -> Result<(Uri, String, String), String> {
    path_segment("upstream namespace", &upstream.namespace).map_err(|e| e.to_string())?;
    path_segment("upstream service", &upstream.service).map_err(|e| e.to_string())?;
    let port = u16::try_from(upstream.port)
        .ok()
        .filter(|port| *port > 0)
        .ok_or_else(|| format!("upstream port {} is not a port", upstream.port))?;
    if !upstream.path.is_empty() && !upstream.path.starts_with('/') || upstream.path.contains(['?', '#']) {
        return Err(format!("upstream path {:?} must be an absolute path without a query", upstream.path));
    }
    // The same rule as the API's `provides[].path` (no dot segments, no `//`, no encoded ASCII):
    // a table written by hand, or by an older operator, gets no route that climbs elsewhere.
    if !upstream.path.is_empty() {
        govpaas_crds::common::check_http_path(&upstream.path).map_err(|e| format!("upstream path: {e}"))?;
    }
    let host = format!("{}.{}.svc", upstream.service, upstream.namespace);
    let authority = match resolve.0.get(&host) {
        Some(address) => address.to_string(),
        None => format!("{host}:{port}"),
    };
    let origin = Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query("/")
        .build()
        .map_err(|e| format!("upstream {host}:{port}: {e}"))?;
    // The path must be a valid URI path too.
    let base = upstream.path.trim_end_matches('/').to_owned();
    if !base.is_empty() {
        base.parse::<http::uri::PathAndQuery>().map_err(|e| format!("upstream path {:?}: {e}", upstream.path))?;
    }
    Ok((origin, format!("{host}:{port}"), base))
}

/// One source of a route table: a ConfigMap, or a file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceKey {
    /// When the source was created (seconds since the epoch; `0` when unknown): older wins.
    pub created: i64,
    /// Its name (`namespace/name` of the ConfigMap, or the file's path).
    pub name: String,
}

/// The last good table of every source, merged on demand.
#[derive(Debug, Default)]
pub struct RouteSources {
    tables: BTreeMap<String, (SourceKey, Vec<Api>)>,
    /// The sources whose latest content was refused.
    refused: BTreeSet<String>,
    /// Shows how many they are (`lgsp_gateway_route_tables_refused`).
    refused_gauge: Gauge,
    resolve: Resolve,
}

impl RouteSources {
    pub fn new(resolve: Resolve) -> Self {
        RouteSources { resolve, ..RouteSources::default() }
    }

    /// Shows the number of sources whose latest table was refused on `gauge` from now on.
    pub fn report_refusals_to(&mut self, gauge: Gauge) {
        self.refused_gauge = gauge;
        self.count_refused();
    }

    fn count_refused(&self) {
        self.refused_gauge.set(self.refused.len() as i64);
    }

    /// Reads a source's new content. A table that fails to parse is refused ([`Self::refuse`]).
    /// Returns whether anything changed.
    pub fn update(&mut self, key: SourceKey, json: &[u8]) -> bool {
        match parse_route_table(json, &self.resolve) {
            Ok(apis) => {
                if self.refused.remove(&key.name) {
                    self.count_refused();
                }
                let changed = self.tables.get(&key.name) != Some(&(key.clone(), apis.clone()));
                self.tables.insert(key.name.clone(), (key, apis));
                changed
            }
            Err(error) => {
                self.refuse(&key.name, &error);
                false
            }
        }
    }

    /// Refuses the latest content of source `name` (unreadable, or not a valid table): logged and
    /// counted until the source has a good table again; its last good table (if any) stays.
    pub fn refuse(&mut self, name: &str, error: &dyn std::fmt::Display) {
        let kept = self.tables.contains_key(name);
        tracing::error!(source = %name, %error, kept_previous = kept, "route table refused");
        self.refused.insert(name.to_owned());
        self.count_refused();
    }

    /// Forgets a source that is gone.
    pub fn remove(&mut self, name: &str) -> bool {
        if self.refused.remove(name) {
            self.count_refused();
        }
        self.tables.remove(name).is_some()
    }

    /// Forgets every source not in `names` (after a fresh listing).
    pub fn retain(&mut self, names: &BTreeSet<String>) -> bool {
        self.refused.retain(|name| names.contains(name));
        self.count_refused();
        let before = self.tables.len();
        self.tables.retain(|name, _| names.contains(name));
        before != self.tables.len()
    }

    /// How many sources' latest table was refused.
    pub fn refused(&self) -> usize {
        self.refused.len()
    }

    pub fn sources(&self) -> usize {
        self.tables.len()
    }

    /// Every source's APIs in one set; an API claimed twice stays with the older source.
    pub fn merged(&self) -> RouteSet {
        let mut ordered: Vec<&(SourceKey, Vec<Api>)> = self.tables.values().collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        let mut apis: HashMap<(String, String), Arc<Api>> = HashMap::new();
        let mut owner: HashMap<(String, String), &str> = HashMap::new();
        for (key, table) in ordered {
            for api in table {
                let id = (route_key(&api.provider), api.name.clone());
                // A national API is granted consumer by consumer, each in its own table: one route
                // whose consumers are all of them (the oldest table's rate limit).
                if api.target == Target::National
                    && let Some(merged) = apis.get_mut(&id)
                {
                    let merged = Arc::make_mut(merged);
                    for consumer in &api.consumers {
                        if !merged.consumers.contains(consumer) {
                            merged.consumers.push(consumer.clone());
                        }
                    }
                    continue;
                }
                if let Some(first) = owner.get(&id) {
                    tracing::warn!(
                        api = %api.label(), kept = %first, ignored = %key.name,
                        "two route tables claim the same API: the older one keeps it"
                    );
                    continue;
                }
                owner.insert(id.clone(), &key.name);
                apis.insert(id, Arc::new(api.clone()));
            }
        }
        // The version 3 exchange endpoints served are the active senders; each endpoint decides
        // from this one set.
        let active: Arc<ActiveSenders> = Arc::new(
            apis.values()
                .filter_map(|api| {
                    let admission = api.exchange.as_ref()?;
                    Some((admission.identity.clone(), (route_key(&api.provider), admission.service.clone())))
                })
                .collect(),
        );
        for api in apis.values_mut() {
            if api.exchange.is_some()
                && let Some(admission) = Arc::make_mut(api).exchange.as_mut()
            {
                admission.active = active.clone();
            }
        }
        RouteSet::built(apis)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const CONSUMER: &str = "spiffe://quangnam.gov.vn/agency/H49.12/dss/land";

    /// A one-route table of DataSharingService `ns/name`, JSON.
    pub fn table(namespace: &str, code: &str, api: serde_json::Value) -> Vec<u8> {
        let mut route = serde_json::json!({
            "api": "land-records", "pathPrefix": format!("/{code}/land-records/"),
            "upstream": {"namespace": namespace, "service": "land", "port": 8080, "path": "/api/v1/"},
            "rateLimit": {"requestsPerMinute": 60, "burst": 5}, "openData": false,
            "consumers": [{"identity": CONSUMER, "agencyCode": "H49.12", "service": "land"}],
        });
        for (k, v) in api.as_object().unwrap() {
            route[k] = v.clone();
        }
        serde_json::to_vec(&serde_json::json!({
            "schema": lgsp::SCHEMA_V1,
            "source": {"namespace": namespace, "name": "dss", "uid": "u"},
            "agencyCode": code, "routes": [route],
        }))
        .unwrap()
    }

    /// A table of DataSharingService `ns/name` that provides nothing and was granted the national
    /// `apis`, JSON.
    pub fn national_table(namespace: &str, name: &str, apis: &[&str]) -> Vec<u8> {
        let consumer = format!("spiffe://quangnam.gov.vn/agency/H49.12/dss/{name}");
        let national: Vec<serde_json::Value> = apis
            .iter()
            .map(|api| {
                serde_json::json!({"api": api, "pathPrefix": lgsp::national_path(api), "consumer": consumer,
                                   "rateLimit": {"requestsPerMinute": 120, "burst": 4}})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schema": lgsp::SCHEMA_V1,
            "source": {"namespace": namespace, "name": name, "uid": "u"},
            "agencyCode": "H49.12", "national": national,
        }))
        .unwrap()
    }

    #[test]
    fn national_grants_are_served_as_one_route_per_api_to_every_granted_consumer() {
        let mut sources = RouteSources::new(Resolve::default());
        assert!(
            sources.update(SourceKey { created: 1, name: "a".into() }, &national_table("so-a", "mot-cua", &["dan-cu"]))
        );
        assert!(sources.update(
            SourceKey { created: 2, name: "b".into() },
            &national_table("so-b", "ho-tich", &["dan-cu", "dat-dai"])
        ));
        let merged = sources.merged();
        let population = merged.get(lgsp::NATIONAL_PREFIX, "dan-cu").expect("the national route");
        assert_eq!(population.target, Target::National);
        assert_eq!(population.label(), "ndxp/dan-cu");
        assert_eq!(
            population.consumers,
            [
                "spiffe://quangnam.gov.vn/agency/H49.12/dss/mot-cua",
                "spiffe://quangnam.gov.vn/agency/H49.12/dss/ho-tich"
            ]
        );
        assert_eq!(population.rate_limit.requests_per_minute.get(), 120);
        let land = merged.get(lgsp::NATIONAL_PREFIX, "dat-dai").unwrap();
        assert_eq!(land.consumers, ["spiffe://quangnam.gov.vn/agency/H49.12/dss/ho-tich"]);
        // No agency code can name the national prefix (it is lower case).
        assert!(merged.get("NDXP", "dan-cu").is_none());
        // A table taken back takes its consumer's grant with it.
        assert!(sources.remove("b"));
        let merged = sources.merged();
        assert_eq!(merged.get(lgsp::NATIONAL_PREFIX, "dan-cu").unwrap().consumers.len(), 1);
        assert!(merged.get(lgsp::NATIONAL_PREFIX, "dat-dai").is_none());
    }

    /// A DocumentService's v2 table with its exchange endpoint, JSON.
    fn exchange_table(exchange: serde_json::Value) -> Vec<u8> {
        let mut endpoint = serde_json::json!({
            "service": "van-thu", "pathPrefix": "/H49.12/edoc/van-thu/",
            "upstream": {"namespace": "stc", "service": "van-thu-docs", "port": 443, "path": "/edxml",
                         "serverName": "van-thu-docs.stc.quangnam.gov.vn"},
            "rateLimit": {"requestsPerMinute": 60, "burst": 5},
            "senders": [{"identity": CONSUMER, "agencyCode": "H49.12", "service": "land"}],
        });
        for (k, v) in exchange.as_object().unwrap() {
            endpoint[k] = v.clone();
        }
        serde_json::to_vec(&serde_json::json!({
            "schema": lgsp::SCHEMA_V2,
            "source": {"kind": "DocumentService", "namespace": "stc", "name": "van-thu", "uid": "u"},
            "agencyCode": "H49.12", "exchange": [endpoint],
        }))
        .unwrap()
    }

    #[test]
    fn an_exchange_endpoint_is_a_tls_route_to_the_receivers_service() {
        let resolve = Resolve(BTreeMap::from([("van-thu-docs.stc.svc".to_owned(), "127.0.0.1:9443".parse().unwrap())]));
        let apis = parse_route_table(&exchange_table(serde_json::json!({})), &resolve).unwrap();
        let endpoint = &apis[0];
        assert_eq!(endpoint.label(), "H49.12/edoc/van-thu");
        assert_eq!(endpoint.consumers, [CONSUMER]);
        let Target::Exchange { connect, server_name, base_path } = &endpoint.target else {
            panic!("an exchange route")
        };
        assert_eq!(connect, "127.0.0.1:9443", "a --resolve address");
        assert_eq!(server_name, "van-thu-docs.stc.quangnam.gov.vn");
        assert_eq!(base_path, "/edxml");
        let in_cluster = parse_route_table(&exchange_table(serde_json::json!({})), &Resolve::default()).unwrap();
        let Target::Exchange { connect, .. } = &in_cluster[0].target else { unreachable!() };
        assert_eq!(connect, "van-thu-docs.stc.svc:443");
        let mut sources = RouteSources::new(Resolve::default());
        sources.update(SourceKey { created: 0, name: "e".into() }, &exchange_table(serde_json::json!({})));
        assert!(sources.merged().get("000.00.12.H49", "edoc/van-thu").is_some());
    }

    /// A DocumentService's v3 table: endpoint `service` of agency `code` in namespace `ns`, sending
    /// as its own identity, with `admission`.
    fn exchange_table_v3(ns: &str, code: &str, service: &str, admission: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schema": lgsp::SCHEMA_V3,
            "source": {"kind": "DocumentService", "namespace": ns, "name": service, "uid": format!("u-{ns}")},
            "agencyCode": govpaas_crds::agency::normalise(code),
            "exchange": [{
                "service": service, "pathPrefix": lgsp::exchange_path(&govpaas_crds::agency::normalise(code), service),
                "upstream": {"namespace": ns, "service": format!("{service}-docs"), "port": 443, "path": "/edxml",
                             "serverName": format!("{service}-docs.{ns}.quangnam.gov.vn")},
                "rateLimit": {"requestsPerMinute": 60, "burst": 5},
                "identity": format!("spiffe://quangnam.gov.vn/agency/{code}/docs/{service}"),
                "admission": admission,
            }],
        }))
        .unwrap()
    }

    #[test]
    fn a_version_3_endpoint_admits_the_active_senders_its_rules_allow() {
        let identity = |code: &str, service: &str| format!("spiffe://quangnam.gov.vn/agency/{code}/docs/{service}");
        let mut sources = RouteSources::new(Resolve::default());
        // The receiver takes only Hải Châu's agency (written in the legacy code form) and the
        // province office's `van-thu`; every other sender is refused by default.
        let rules = serde_json::json!({"defaultDecision": "Deny", "senders": [
            {"agencyCode": "000.00.31.H49", "service": "*", "decision": "Approve"},
            {"agencyCode": "H49", "service": "van-thu", "decision": "Approve"},
        ]});
        for (created, ns, code, service, admission) in [
            (1, "stc", "H49.12", "van-thu", rules),
            (2, "hai-chau", "H49.31", "van-ban", serde_json::json!({})),
            (3, "ubnd", "H49", "van-thu", serde_json::json!({})),
            (4, "ubnd", "H49", "luu-tru", serde_json::json!({})),
            (5, "syt", "H49.14", "van-ban", serde_json::json!({})),
        ] {
            let table = exchange_table_v3(ns, code, service, admission);
            assert!(sources.update(SourceKey { created, name: format!("{ns}.{service}") }, &table), "{ns}/{service}");
        }
        let merged = sources.merged();
        let receiver = merged.get("H49.12", "edoc/van-thu").expect("the receiver's endpoint");
        assert!(receiver.grants(&identity("H49.31", "van-ban")), "the agency's star");
        assert!(receiver.grants(&identity("H49", "van-thu")), "named");
        assert!(!receiver.grants(&identity("H49", "luu-tru")), "another of the named one's agency");
        assert!(!receiver.grants(&identity("H49.14", "van-ban")), "no rule: the default");
        assert!(!receiver.grants(&identity("H49.12", "van-thu")), "never itself");
        assert!(!receiver.grants(&identity("H49.31", "khac")), "admitted by the rules, but not an active sender");
        assert!(!receiver.grants("spiffe://quangnam.gov.vn/agency/H49.31/dss/van-ban"), "a data sharing identity");
        // Every other endpoint approves by default: each takes every other active sender.
        let open = merged.get("H49.14", "edoc/van-ban").unwrap();
        assert!(open.grants(&identity("H49.12", "van-thu")) && open.grants(&identity("H49", "luu-tru")));

        // A sender whose table goes (exchange turned off, DocumentService deleted) is refused at once,
        // by every endpoint, with no other table rewritten.
        assert!(sources.remove("hai-chau.van-ban"));
        let merged = sources.merged();
        assert!(!merged.get("H49.12", "edoc/van-thu").unwrap().grants(&identity("H49.31", "van-ban")));
        assert!(!merged.get("H49.14", "edoc/van-ban").unwrap().grants(&identity("H49.31", "van-ban")));
    }

    #[test]
    fn a_version_3_table_naming_another_identity_is_refused() {
        let table = |identity: &str| {
            let mut value: serde_json::Value =
                serde_json::from_slice(&exchange_table_v3("stc", "H49.12", "van-thu", serde_json::json!({}))).unwrap();
            value["exchange"][0]["identity"] = identity.into();
            serde_json::to_vec(&value).unwrap()
        };
        assert!(
            parse_route_table(
                &table("spiffe://quangnam.gov.vn/agency/000.00.12.H49/docs/van-thu"),
                &Resolve::default()
            )
            .is_ok()
        );
        for other in [
            "spiffe://quangnam.gov.vn/agency/H49.31/docs/van-thu",
            "spiffe://quangnam.gov.vn/agency/H49.12/docs/khac",
            "spiffe://quangnam.gov.vn/agency/H49.12/dss/van-thu",
            "https://evil.example/",
        ] {
            assert!(parse_route_table(&table(other), &Resolve::default()).is_err(), "{other}");
        }
    }

    #[test]
    fn an_invalid_exchange_endpoint_refuses_the_whole_table() {
        let upstream = |name: &str| serde_json::json!({"upstream": {"namespace": "stc", "service": "van-thu-docs", "port": 443, "path": "/edxml", "serverName": name}});
        for bad in [
            serde_json::json!({"pathPrefix": "/H49.12/edoc/other/"}),
            serde_json::json!({"service": "../x", "pathPrefix": "/H49.12/edoc/../x/"}),
            upstream("10.0.0.1"),
            upstream(""),
            serde_json::json!({"senders": [{"identity": "https://evil.example/", "agencyCode": "X", "service": "x"}]}),
            serde_json::json!({"rateLimit": {"requestsPerMinute": 0, "burst": 1}}),
        ] {
            assert!(parse_route_table(&exchange_table(bad.clone()), &Resolve::default()).is_err(), "{bad}");
        }
        // Version 1 has no exchange endpoints.
        let v1 = String::from_utf8(exchange_table(serde_json::json!({})))
            .unwrap()
            .replace("lgsp-routes/v2", "lgsp-routes/v1");
        assert!(parse_route_table(v1.as_bytes(), &Resolve::default()).is_err());
    }

    #[test]
    fn an_invalid_national_grant_refuses_the_whole_table() {
        let good = national_table("so-a", "mot-cua", &["dan-cu"]);
        assert!(parse_route_table(&good, &Resolve::default()).is_ok());
        let mut bad: serde_json::Value = serde_json::from_slice(&good).unwrap();
        bad["national"][0]["pathPrefix"] = "/ndxp/other/".into();
        assert!(parse_route_table(&serde_json::to_vec(&bad).unwrap(), &Resolve::default()).is_err());
        let mut bad: serde_json::Value = serde_json::from_slice(&good).unwrap();
        bad["national"][0]["consumer"] = "https://evil.example/".into();
        assert!(parse_route_table(&serde_json::to_vec(&bad).unwrap(), &Resolve::default()).is_err());
        let mut bad: serde_json::Value = serde_json::from_slice(&good).unwrap();
        bad["national"][0]["rateLimit"]["burst"] = 0.into();
        assert!(parse_route_table(&serde_json::to_vec(&bad).unwrap(), &Resolve::default()).is_err());
        let twice = national_table("so-a", "mot-cua", &["dan-cu", "dan-cu"]);
        assert!(parse_route_table(&twice, &Resolve::default()).is_err());
        // An older operator's table, without a rate limit, reads with the default one.
        let mut old: serde_json::Value = serde_json::from_slice(&good).unwrap();
        old["national"][0].as_object_mut().unwrap().remove("rateLimit");
        let apis = parse_route_table(&serde_json::to_vec(&old).unwrap(), &Resolve::default()).unwrap();
        assert_eq!(apis[0].rate_limit.requests_per_minute.get(), 600);
    }

    #[test]
    fn an_agency_code_in_the_legacy_form_finds_the_same_api() {
        let mut sources = RouteSources::new(Resolve::default());
        assert!(
            sources
                .update(SourceKey { created: 1, name: "a".into() }, &table("so-tp", "H49.14", serde_json::json!({})))
        );
        let merged = sources.merged();
        assert!(merged.get("H49.14", "land-records").is_some());
        assert!(merged.get("000.00.14.H49", "land-records").is_some());
        assert!(merged.get("H49.15", "land-records").is_none());
    }

    #[test]
    fn an_upstream_path_that_climbs_is_refused() {
        for bad in ["/api/../admin", "/api/%2e%2e/admin", "//admin"] {
            let upstream = serde_json::json!({"namespace": "so-tp", "service": "land", "port": 8080, "path": bad});
            let json = table("so-tp", "H49.14", serde_json::json!({"upstream": upstream}));
            assert!(parse_route_table(&json, &Resolve::default()).is_err(), "{bad}");
        }
        let fine = serde_json::json!({"namespace": "so-tp", "service": "land", "port": 8080, "path": "/api/v1/"});
        assert!(
            parse_route_table(&table("so-tp", "H49.14", serde_json::json!({"upstream": fine})), &Resolve::default())
                .is_ok()
        );
    }

    #[test]
    fn a_valid_table_names_the_service_and_its_consumers() {
        let apis = parse_route_table(&table("stnmt", "H17.12", serde_json::json!({})), &Resolve::default()).unwrap();
        let api = &apis[0];
        assert_eq!((api.provider.as_str(), api.name.as_str()), ("H17.12", "land-records"));
        let Target::Agency { origin, host, base_path } = &api.target else { panic!("an agency route") };
        assert_eq!(origin.to_string(), "http://land.stnmt.svc:8080/");
        assert_eq!(host, "land.stnmt.svc:8080");
        assert_eq!(base_path, "/api/v1");
        assert!(!api.open_data);
        assert_eq!(api.consumers, [CONSUMER]);
        assert!(api.grants(&WorkloadIdentity::parse(CONSUMER).unwrap().uri()));
        assert_eq!(api.source, "stnmt/dss");

        let resolve = Resolve(BTreeMap::from([("land.stnmt.svc".to_owned(), "127.0.0.1:9000".parse().unwrap())]));
        let apis = parse_route_table(&table("stnmt", "H17.12", serde_json::json!({})), &resolve).unwrap();
        let Target::Agency { origin, host, .. } = &apis[0].target else { panic!("an agency route") };
        assert_eq!(origin.to_string(), "http://127.0.0.1:9000/");
        assert_eq!(host, "land.stnmt.svc:8080", "the Host stays the Service's");
        assert_eq!(Resolve::parse_entry("A.b.svc=127.0.0.1:1").unwrap().0, "a.b.svc");
        assert!(Resolve::parse_entry("a.b.svc").is_err() && Resolve::parse_entry("a=b").is_err());
    }

    #[test]
    fn bad_tables_are_refused_with_the_api_named() {
        let cases = [
            (serde_json::json!({"pathPrefix": "/H17.12/other/"}), "pathPrefix"),
            (serde_json::json!({"api": "Land Records"}), "API name"),
            (
                serde_json::json!({"consumers": [{"identity": "https://x/y", "agencyCode": "X", "service": "y"}]}),
                "consumer",
            ),
            (serde_json::json!({"rateLimit": {"requestsPerMinute": 0, "burst": 1}}), "requestsPerMinute"),
            (serde_json::json!({"upstream": {"namespace": "a", "service": "b", "port": 0, "path": ""}}), "port"),
            (serde_json::json!({"upstream": {"namespace": "a", "service": "b", "port": 1, "path": "x?y"}}), "path"),
        ];
        for (patch, expected) in cases {
            let err = parse_route_table(&table("stnmt", "H17.12", patch), &Resolve::default()).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let other_schema = String::from_utf8(table("a", "H17", serde_json::json!({}))).unwrap().replace("/v1", "/v9");
        assert!(matches!(
            parse_route_table(other_schema.as_bytes(), &Resolve::default()),
            Err(RouteTableError::Table(lgsp::RouteTableError::UnknownSchema(_)))
        ));
        assert!(parse_route_table(b"{not json", &Resolve::default()).is_err());
    }

    fn key(created: i64, name: &str) -> SourceKey {
        SourceKey { created, name: name.to_owned() }
    }

    #[test]
    fn sources_merge_a_bad_table_is_skipped_and_the_older_source_keeps_a_contested_api() {
        let mut sources = RouteSources::default();
        let refused = Gauge::default();
        sources.report_refusals_to(refused.clone());
        assert!(sources.update(key(10, "b"), &table("b", "H17.12", serde_json::json!({}))));
        assert!(sources.update(key(20, "c"), &table("c", "H17.13", serde_json::json!({}))));
        assert!(!sources.update(key(20, "c"), &table("c", "H17.13", serde_json::json!({}))), "no change");
        // A newer source claims H17.12/land-records too: the older keeps it.
        assert!(sources.update(key(30, "a"), &table("a", "H17.12", serde_json::json!({}))));
        let merged = sources.merged();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged.get("H17.12", "land-records").unwrap().source, "b/dss");
        // A broken version of c: skipped, its last good table stays; b and a are untouched.
        assert!(!sources.update(key(20, "c"), b"{broken"));
        assert!(sources.merged().get("H17.13", "land-records").is_some());
        assert_eq!((sources.refused(), refused.get()), (1, 1), "c is refused");
        // A broken new source never breaks the others.
        assert!(!sources.update(key(40, "d"), b"{broken"));
        assert_eq!(sources.merged().len(), 2);
        assert_eq!(refused.get(), 2);
        // c is fixed (its good table again): no longer refused.
        assert!(!sources.update(key(20, "c"), &table("c", "H17.13", serde_json::json!({}))));
        assert_eq!(refused.get(), 1);
        // b goes: a's claim now stands.
        assert!(sources.remove("b"));
        assert_eq!(sources.merged().get("H17.12", "land-records").unwrap().source, "a/dss");
        assert!(sources.retain(&["c".to_owned()].into()));
        assert_eq!(sources.merged().len(), 1);
        assert_eq!(refused.get(), 0, "d is gone, and its refusal with it");
    }

    proptest::proptest! {
        /// Whatever a ConfigMap holds: no panic, and a table that parses only yields APIs whose
        /// names are path segments and whose prefix is theirs.
        #[test]
        fn the_parser_never_panics_and_accepts_only_valid_routes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            api in ".{0,24}",
            prefix in ".{0,32}",
            path in ".{0,24}",
            namespace in ".{0,16}",
            port in proptest::prelude::any::<i32>(),
            rpm in proptest::prelude::any::<i32>(),
        ) {
            let _ = parse_route_table(&bytes, &Resolve::default());
            let json = table(&namespace, "H17.12", serde_json::json!({
                "api": api, "pathPrefix": prefix,
                "upstream": {"namespace": namespace, "service": "land", "port": port, "path": path},
                "rateLimit": {"requestsPerMinute": rpm, "burst": 1},
            }));
            if let Ok(apis) = parse_route_table(&json, &Resolve::default()) {
                for api in apis {
                    proptest::prop_assert!(path_segment("API name", &api.name).is_ok());
                    proptest::prop_assert_eq!(prefix.clone(), format!("/H17.12/{}/", api.name));
                    let Target::Agency { base_path, .. } = &api.target else { panic!("an agency route") };
                    proptest::prop_assert!(base_path.is_empty() || base_path.starts_with('/'));
                }
            }
        }
    }
}
