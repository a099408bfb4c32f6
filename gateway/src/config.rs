//! The gateway's configuration files, and their atomic reload.
//!
//! The TLS files are mounted Secrets; routes come from the cluster ([`crate::cluster`]) or from
//! route table files ([`RoutesSource::Files`]). Mounted files which Kubernetes updates by swapping a
//! symlink: the reloader reads the files every `reload_interval` and compares their contents
//! (SHA-256), so it sees such swaps, edits within the same second, and a certificate and key that
//! arrive one poll apart. A new TLS state or route table is swapped in with `arc-swap`: new
//! connections get the new TLS configuration, new requests the new routes; connections and
//! requests in flight keep what they started with. A file that fails to load is logged and the
//! previous configuration kept; a refused route table is counted too
//! ([`RouteSources::report_refusals_to`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use govpaas_pki::TrustAnchors;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::audit::CheckpointSigner;
use crate::national::{self, NationalPlatform};
use crate::routes::{Resolve, RouteSet, RouteSources, SourceKey};

/// How long a TCP connect to the national platform may take.
const NATIONAL_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the route tables come from.
#[derive(Clone, Debug)]
pub enum RoutesSource {
    /// A route table file, or a directory whose `*.json` files are route tables.
    Files(PathBuf),
    /// The route table ConfigMaps of `namespace` ([`crate::cluster`]).
    Cluster {
        namespace: String,
        /// A kubeconfig; `None`: the in-cluster configuration (or `KUBECONFIG`, `~/.kube/config`).
        kubeconfig: Option<PathBuf>,
    },
}

/// Where the configuration files are.
#[derive(Clone, Debug)]
pub struct ConfigPaths {
    /// The gateway's certificate, followed by its chain (`tls.crt`).
    pub tls_crt: PathBuf,
    /// Its PKCS#8 key (`tls.key`); ECDSA P-256 also signs audit checkpoints.
    pub tls_key: PathBuf,
    /// The platform CA(s) that client certificates must chain to (`ca.crt`).
    pub client_ca: PathBuf,
    /// The route tables.
    pub routes: RoutesSource,
    /// `--resolve` overrides of upstream hosts.
    pub resolve: Resolve,
    /// The national platform's directory (a mounted Secret, [`crate::national`]); `None`: national
    /// routes are never served.
    pub national: Option<PathBuf>,
}

/// Everything the TLS files determine, swapped as one.
pub struct TlsState {
    /// Requires a client certificate that verifies against `anchors`.
    pub mutual: Arc<ServerConfig>,
    /// No client certificate (the open-data listener).
    pub open: Arc<ServerConfig>,
    pub anchors: Arc<TrustAnchors>,
    /// A TLS client trusting `anchors`: what verifies a document exchange's receiver.
    pub upstream_client: Arc<rustls::ClientConfig>,
    /// Signs audit checkpoints; `None` when the key is not ECDSA P-256.
    pub signer: Option<Arc<CheckpointSigner>>,
    /// SHA-256 of the gateway's certificate.
    pub certificate_fingerprint: String,
    /// When the gateway's certificate (or the first of its chain to) expires.
    pub certificate_not_after: Option<time::OffsetDateTime>,
}

/// Builds the TLS state from the three files.
pub fn load_tls(paths: &ConfigPaths) -> Result<TlsState, String> {
    let read = |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let (crt, key, ca) = (read(&paths.tls_crt)?, read(&paths.tls_key)?, read(&paths.client_ca)?);
    let anchors = TrustAnchors::from_pem(&ca).map_err(|e| format!("{}: {e}", paths.client_ca.display()))?;
    let with_alpn = |config: Arc<ServerConfig>| {
        let mut config = Arc::unwrap_or_clone(config);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    };
    let tls_error = |e: govpaas_pki::Error| format!("{} and {}: {e}", paths.tls_crt.display(), paths.tls_key.display());
    let mutual = with_alpn(govpaas_pki::tls::server_config(&crt, &key, Some(&anchors)).map_err(tls_error)?);
    let open = with_alpn(govpaas_pki::tls::server_config(&crt, &key, None).map_err(tls_error)?);
    let leaf = CertificateDer::pem_slice_iter(&crt)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| format!("{}: no certificate", paths.tls_crt.display()))?;
    let signer = match PrivatePkcs8KeyDer::from_pem_slice(&key)
        .map_err(|e| e.to_string())
        .and_then(|pkcs8| CheckpointSigner::new(&leaf, pkcs8.secret_pkcs8_der()).map_err(|e| e.to_string()))
    {
        Ok(signer) => Some(Arc::new(signer)),
        Err(reason) => {
            tracing::warn!(%reason, "the gateway's key cannot sign audit checkpoints");
            None
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crt).filter_map(Result::ok).collect();
    let upstream_client =
        govpaas_pki::tls::client_config(&anchors, None).map_err(|e| format!("{}: {e}", paths.client_ca.display()))?;
    Ok(TlsState {
        mutual,
        open,
        upstream_client,
        anchors: Arc::new(anchors),
        signer,
        certificate_fingerprint: govpaas_pki::verify::fingerprint(&leaf),
        certificate_not_after: govpaas_pki::verify::chain_not_after(&chain),
    })
}

/// The route table files under `path`: the file itself, or a directory's `*.json` files (not
/// hidden ones, such as the `..data` of a mounted ConfigMap), in name order.
pub fn route_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", path.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with('.') && name.ends_with(".json") && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Reads the route table files into `sources` (a file that cannot be read or parsed is refused;
/// a file that is gone is forgotten). Returns whether the route set changed.
pub fn load_route_files(path: &Path, sources: &mut RouteSources) -> Result<bool, String> {
    let files = route_files(path)?;
    let mut changed = false;
    let mut names = std::collections::BTreeSet::new();
    for file in files {
        let name = file.display().to_string();
        match std::fs::read(&file) {
            Ok(json) => changed |= sources.update(SourceKey { created: 0, name: name.clone() }, &json),
            Err(error) => sources.refuse(&name, &error),
        }
        names.insert(name);
    }
    changed |= sources.retain(&names);
    Ok(changed)
}

/// The configuration in force, read by every new connection and request.
pub struct LiveConfig {
    pub tls: Arc<ArcSwap<TlsState>>,
    pub routes: Arc<ArcSwap<RouteSet>>,
    /// The national platform, when its directory holds one.
    pub national: Arc<ArcSwapOption<NationalPlatform>>,
}

/// What one poll changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub tls: bool,
    pub routes: bool,
    pub national: bool,
}

/// Watches the files; see the module comment.
pub struct Reloader {
    paths: ConfigPaths,
    tls_seen: Option<[u8; 32]>,
    routes_seen: Option<[u8; 32]>,
    /// The national directory's digest; `None` while it holds no national platform.
    national_seen: Option<[u8; 32]>,
    /// The route tables read from files (unused with the cluster source).
    sources: RouteSources,
}

/// The route files' digest (their names and contents: a file added, changed or removed changes
/// it); `None` with the cluster source, or when a file vanished while being read (the next poll
/// sees the directory settled).
fn routes_digest(paths: &ConfigPaths) -> Option<[u8; 32]> {
    let RoutesSource::Files(path) = &paths.routes else { return None };
    let files = route_files(path).ok()?;
    digest(&files.iter().collect::<Vec<_>>())
}

fn digest(paths: &[&PathBuf]) -> Option<[u8; 32]> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in paths {
        let bytes = std::fs::read(path).ok()?;
        ctx.update(path.as_os_str().as_encoded_bytes());
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
    }
    ctx.finish().as_ref().try_into().ok()
}

impl Reloader {
    /// Loads the initial configuration; the gateway does not start without a valid one.
    pub fn start(paths: ConfigPaths) -> Result<(Self, LiveConfig), String> {
        let tls = load_tls(&paths)?;
        let mut sources = RouteSources::new(paths.resolve.clone());
        if let RoutesSource::Files(path) = &paths.routes {
            load_route_files(path, &mut sources)?;
        }
        let routes = sources.merged();
        let mut reloader = Reloader {
            tls_seen: digest(&[&paths.tls_crt, &paths.tls_key, &paths.client_ca]),
            routes_seen: routes_digest(&paths),
            national_seen: None,
            paths,
            sources,
        };
        tracing::info!(apis = routes.len(), certificate = %tls.certificate_fingerprint, "configuration loaded");
        let live = LiveConfig {
            tls: Arc::new(ArcSwap::from_pointee(tls)),
            routes: Arc::new(ArcSwap::from_pointee(routes)),
            national: Arc::new(ArcSwapOption::empty()),
        };
        // A national platform that does not load yet does not stop the gateway: local routes
        // work without it, and the next poll tries again.
        reloader.poll_national(&live);
        Ok((reloader, live))
    }

    /// Loads the national platform's directory when it changed: swapped in, or — when it fails
    /// to load — logged with the previous one kept; a directory that no longer holds one
    /// (the Platform's `lgsp.ndxp` removed) stops national routes.
    fn poll_national(&mut self, live: &LiveConfig) -> bool {
        let Some(dir) = &self.paths.national else { return false };
        if !national::is_configured(dir) {
            if self.national_seen.take().is_some() || live.national.load().is_some() {
                tracing::info!(dir = %dir.display(), "no national platform configured any more: national routes answer 502");
                live.national.store(None);
                return true;
            }
            return false;
        }
        let files = national::files(dir);
        let now = digest(&files.iter().collect::<Vec<_>>());
        if now.is_none() || now == self.national_seen {
            return false;
        }
        self.national_seen = now;
        match national::load(dir, NATIONAL_CONNECT_TIMEOUT) {
            Ok(platform) => {
                tracing::info!(
                    origin = %platform.origin, identity = %platform.identity_fingerprint,
                    "national platform loaded"
                );
                live.national.store(Some(Arc::new(platform)));
                true
            }
            Err(error) => {
                tracing::error!(%error, dir = %dir.display(), "national platform files refused; the previous configuration stays");
                false
            }
        }
    }

    /// Shows the number of route table files whose latest content was refused on `gauge`.
    pub fn report_refusals_to(&mut self, gauge: prometheus_client::metrics::gauge::Gauge) {
        self.sources.report_refusals_to(gauge);
    }

    /// Reloads whatever changed since the last poll.
    pub fn poll(&mut self, live: &LiveConfig) -> Reloaded {
        let mut reloaded = Reloaded::default();
        let paths = &self.paths;
        let tls_now = digest(&[&paths.tls_crt, &paths.tls_key, &paths.client_ca]);
        if tls_now.is_some() && tls_now != self.tls_seen {
            self.tls_seen = tls_now;
            match load_tls(paths) {
                Ok(tls) => {
                    tracing::info!(certificate = %tls.certificate_fingerprint, "TLS configuration reloaded");
                    live.tls.store(Arc::new(tls));
                    reloaded.tls = true;
                }
                Err(error) => tracing::error!(%error, "TLS files refused; the previous configuration stays"),
            }
        }
        let routes_now = routes_digest(paths);
        if let (Some(_), RoutesSource::Files(path)) = (routes_now, &paths.routes)
            && routes_now != self.routes_seen
        {
            self.routes_seen = routes_now;
            match load_route_files(path, &mut self.sources) {
                Ok(true) => {
                    let routes = self.sources.merged();
                    tracing::info!(apis = routes.len(), tables = self.sources.sources(), "routes reloaded");
                    live.routes.store(Arc::new(routes));
                    reloaded.routes = true;
                }
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "route tables unreadable; the current routes stay"),
            }
        }
        reloaded.national = self.poll_national(live);
        reloaded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_directory_is_reloaded_and_a_removed_table_stops_being_served() {
        let dir = tempfile::tempdir().unwrap();
        let ca = govpaas_pki::generate_platform_ca(
            &govpaas_pki::PlatformCaRequest::new("quangnam.gov.vn", "govpaas"),
            &govpaas_pki::IssuancePolicy::default(),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
        let server = ca
            .issue_server_certificate(
                &govpaas_pki::ServerCertificateRequest::new(["lgsp.quangnam.gov.vn"]),
                &govpaas_pki::IssuancePolicy::default(),
                time::OffsetDateTime::now_utc(),
            )
            .unwrap();
        std::fs::write(dir.path().join("tls.crt"), server.chain_pem()).unwrap();
        std::fs::write(dir.path().join("tls.key"), server.private_key_pem().expose()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.certificate_pem()).unwrap();
        let routes = dir.path().join("routes");
        std::fs::create_dir(&routes).unwrap();
        let table = |ns: &str, code: &str| crate::routes::tests::table(ns, code, serde_json::json!({}));
        std::fs::write(routes.join("a.json"), table("a", "H17.12")).unwrap();
        std::fs::write(routes.join("b.json"), table("b", "H17.13")).unwrap();
        let paths = ConfigPaths {
            tls_crt: dir.path().join("tls.crt"),
            tls_key: dir.path().join("tls.key"),
            client_ca: dir.path().join("ca.crt"),
            routes: RoutesSource::Files(routes.clone()),
            resolve: Resolve::default(),
            national: None,
        };
        let (mut reloader, live) = Reloader::start(paths).unwrap();
        assert_eq!(live.routes.load().len(), 2);
        assert_eq!(reloader.poll(&live), Reloaded::default(), "nothing changed");

        std::fs::remove_file(routes.join("b.json")).unwrap();
        assert!(reloader.poll(&live).routes);
        assert!(live.routes.load().get("H17.13", "land-records").is_none(), "the removed table is not served");
        std::fs::write(routes.join("c.json"), table("c", "H17.14")).unwrap();
        assert!(reloader.poll(&live).routes);
        assert!(live.routes.load().get("H17.14", "land-records").is_some());
        std::fs::remove_file(routes.join("a.json")).unwrap();
        std::fs::remove_file(routes.join("c.json")).unwrap();
        assert!(reloader.poll(&live).routes);
        assert!(live.routes.load().is_empty(), "an emptied directory serves nothing");
    }
}
