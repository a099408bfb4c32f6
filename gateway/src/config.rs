//! The gateway's configuration files, and their atomic reload.
//!
//! In the cluster they are mounted Secrets and ConfigMaps, which Kubernetes updates by swapping a
//! symlink: the reloader reads the files every `reload_interval` and compares their contents
//! (SHA-256), so it sees such swaps, edits within the same second, and a certificate and key that
//! arrive one poll apart. A new TLS state or route table is swapped in with `arc-swap`: new
//! connections get the new TLS configuration, new requests the new routes; connections and
//! requests in flight keep what they started with. A file that fails to load is logged and the
//! previous configuration kept.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use govpaas_pki::TrustAnchors;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::audit::CheckpointSigner;
use crate::routes::{RouteTable, parse_route_table};

/// Where the configuration files are.
#[derive(Clone, Debug)]
pub struct ConfigPaths {
    /// The gateway's certificate, followed by its chain (`tls.crt`).
    pub tls_crt: PathBuf,
    /// Its PKCS#8 key (`tls.key`); ECDSA P-256 also signs audit checkpoints.
    pub tls_key: PathBuf,
    /// The platform CA(s) that client certificates must chain to (`ca.crt`).
    pub client_ca: PathBuf,
    /// The route table (JSON).
    pub routes: PathBuf,
}

/// Everything the TLS files determine, swapped as one.
pub struct TlsState {
    /// Requires a client certificate that verifies against `anchors`.
    pub mutual: Arc<ServerConfig>,
    /// No client certificate (the open-data listener).
    pub open: Arc<ServerConfig>,
    pub anchors: Arc<TrustAnchors>,
    /// Signs audit checkpoints; `None` when the key is not ECDSA P-256.
    pub signer: Option<Arc<CheckpointSigner>>,
    /// SHA-256 of the gateway's certificate.
    pub certificate_fingerprint: String,
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
    Ok(TlsState {
        mutual,
        open,
        anchors: Arc::new(anchors),
        signer,
        certificate_fingerprint: govpaas_pki::verify::fingerprint(&leaf),
    })
}

/// Reads and validates the route table file.
pub fn load_routes(paths: &ConfigPaths) -> Result<RouteTable, String> {
    let json = std::fs::read(&paths.routes).map_err(|e| format!("{}: {e}", paths.routes.display()))?;
    parse_route_table(&json).map_err(|e| format!("{}: {e}", paths.routes.display()))
}

/// The configuration in force, read by every new connection and request.
pub struct LiveConfig {
    pub tls: ArcSwap<TlsState>,
    pub routes: Arc<ArcSwap<RouteTable>>,
}

/// What one poll changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    pub tls: bool,
    pub routes: bool,
}

/// Watches the files; see the module comment.
pub struct Reloader {
    paths: ConfigPaths,
    tls_seen: Option<[u8; 32]>,
    routes_seen: Option<[u8; 32]>,
}

fn digest(paths: &[&PathBuf]) -> Option<[u8; 32]> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for path in paths {
        let bytes = std::fs::read(path).ok()?;
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(&bytes);
    }
    ctx.finish().as_ref().try_into().ok()
}

impl Reloader {
    /// Loads the initial configuration; the gateway does not start without a valid one.
    pub fn start(paths: ConfigPaths) -> Result<(Self, LiveConfig), String> {
        let tls = load_tls(&paths)?;
        let routes = load_routes(&paths)?;
        let reloader = Reloader {
            tls_seen: digest(&[&paths.tls_crt, &paths.tls_key, &paths.client_ca]),
            routes_seen: digest(&[&paths.routes]),
            paths,
        };
        tracing::info!(apis = routes.len(), certificate = %tls.certificate_fingerprint, "configuration loaded");
        let live = LiveConfig { tls: ArcSwap::from_pointee(tls), routes: Arc::new(ArcSwap::from_pointee(routes)) };
        Ok((reloader, live))
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
        let routes_now = digest(&[&paths.routes]);
        if routes_now.is_some() && routes_now != self.routes_seen {
            self.routes_seen = routes_now;
            match load_routes(paths) {
                Ok(routes) => {
                    tracing::info!(apis = routes.len(), "route table reloaded");
                    live.routes.store(Arc::new(routes));
                    reloaded.routes = true;
                }
                Err(error) => tracing::error!(%error, "route table refused; the previous one stays"),
            }
        }
        reloaded
    }
}
