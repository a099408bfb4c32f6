//! The national data exchange platform (NDXP): where national routes go, and with which identity.
//!
//! The operator writes one Secret in its namespace (mounted into the gateway as a directory, see
//! docs/lgsp.md) with four keys:
//!
//! - [`URL_FILE`]: the NDXP's base URL (`https://…`, `Platform spec.lgsp.ndxp.url`);
//! - [`CERTIFICATE_FILE`], [`KEY_FILE`]: the province's client certificate (and chain) and its key —
//!   the identity the national platform knows the province by;
//! - [`CA_FILE`]: the CAs that sign the NDXP's server certificate (`lgsp.ndxp.caConfigMap`); the
//!   NDXP is verified against these alone, never the system's roots, never skipped.
//!
//! A national request `/ndxp/<api><rest>` goes to `<url>/<api><rest>` over mutual TLS with that
//! identity; the calling agency's verified identity travels in `X-Lgsp-Consumer`
//! ([`crate::layers::forward::CONSUMER_HEADER`]). The directory is polled with the other files
//! ([`crate::config::Reloader`]): a new certificate or URL is swapped in atomically, a directory
//! that fails to load is logged and the previous upstream kept, and a directory that is gone (no
//! national platform configured) leaves national routes answering 502.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The key of the NDXP's base URL.
pub const URL_FILE: &str = "url";
/// The key of the province's client certificate, followed by its chain.
pub const CERTIFICATE_FILE: &str = "tls.crt";
/// The key of its PKCS#8 private key.
pub const KEY_FILE: &str = "tls.key";
/// The key of the CAs the NDXP's server certificate must chain to.
pub const CA_FILE: &str = "ca.crt";

/// The national platform as loaded: where it is, and a pooled mutual-TLS client to it.
pub struct NationalPlatform {
    /// `https://host[:port]` of the NDXP.
    pub origin: Uri,
    /// The `Host` it is sent.
    pub host: String,
    /// The URL's path without a trailing slash (`""` for the root).
    pub base_path: String,
    /// Pooled HTTPS (HTTP/1.1) client presenting the province's certificate.
    pub client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// SHA-256 of the province's client certificate.
    pub identity_fingerprint: String,
    /// When it (or the first certificate of its chain to) expires.
    pub identity_not_after: Option<time::OffsetDateTime>,
}

impl std::fmt::Debug for NationalPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NationalPlatform")
            .field("origin", &self.origin)
            .field("base_path", &self.base_path)
            .field("identity_fingerprint", &self.identity_fingerprint)
            .finish_non_exhaustive()
    }
}

/// The files of `dir`, in the order their digest is taken.
pub fn files(dir: &Path) -> [PathBuf; 4] {
    [dir.join(URL_FILE), dir.join(CERTIFICATE_FILE), dir.join(KEY_FILE), dir.join(CA_FILE)]
}

/// Whether `dir` holds a national platform at all: its URL file exists.
pub fn is_configured(dir: &Path) -> bool {
    dir.join(URL_FILE).is_file()
}

/// Parses the NDXP's base URL: absolute `https://`, a host, no query or fragment.
pub fn parse_url(text: &str) -> Result<(Uri, String, String), String> {
    let text = text.trim();
    let uri: Uri = text.parse().map_err(|e| format!("{URL_FILE} {text:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!(
            "{URL_FILE} {text:?} must be an https:// URL: the national platform is reached over mutual TLS"
        ));
    }
    let authority = uri.authority().ok_or_else(|| format!("{URL_FILE} {text:?} names no host"))?.clone();
    if authority.as_str().contains('@') {
        return Err(format!("{URL_FILE} {text:?} must not carry credentials"));
    }
    if uri.query().is_some() || text.contains('#') {
        return Err(format!(
            "{URL_FILE} {text:?} must have no query or fragment: each request's path is appended to it"
        ));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    if !base_path.is_empty() {
        govpaas_crds::common::check_http_path(&base_path).map_err(|e| format!("{URL_FILE} {text:?}: {e}"))?;
    }
    let origin = Uri::builder()
        .scheme("https")
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .map_err(|e| format!("{URL_FILE} {text:?}: {e}"))?;
    Ok((origin, authority.to_string(), base_path))
}

/// Loads the national platform from `dir`; `connect_timeout` bounds a TCP connect.
pub fn load(dir: &Path, connect_timeout: Duration) -> Result<NationalPlatform, String> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let url = String::from_utf8(read(URL_FILE)?).map_err(|_| format!("{URL_FILE} is not UTF-8"))?;
    let (origin, host, base_path) = parse_url(&url)?;
    let (crt, key, ca) = (read(CERTIFICATE_FILE)?, read(KEY_FILE)?, read(CA_FILE)?);
    let anchors = govpaas_pki::TrustAnchors::from_pem(&ca).map_err(|e| format!("{CA_FILE}: {e}"))?;
    let config = govpaas_pki::tls::client_config(&anchors, Some((&crt, &key)))
        .map_err(|e| format!("{CERTIFICATE_FILE} and {KEY_FILE}: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crt).filter_map(Result::ok).collect();
    let leaf = chain.first().ok_or_else(|| format!("{CERTIFICATE_FILE}: no certificate"))?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(std::sync::Arc::unwrap_or_clone(config))
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(NationalPlatform {
        origin,
        host,
        base_path,
        client: Client::builder(TokioExecutor::new()).build(connector),
        identity_fingerprint: govpaas_pki::verify::fingerprint(leaf),
        identity_not_after: govpaas_pki::verify::chain_not_after(&chain),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_an_https_origin_and_a_base_path() {
        let (origin, host, base) = parse_url("https://ndxp.gov.vn:8443/api/v2/\n").unwrap();
        assert_eq!(
            (origin.to_string().as_str(), host.as_str(), base.as_str()),
            ("https://ndxp.gov.vn:8443/", "ndxp.gov.vn:8443", "/api/v2")
        );
        let (_, _, root) = parse_url("https://ndxp.gov.vn").unwrap();
        assert_eq!(root, "");
        for bad in [
            "http://ndxp.gov.vn/api",
            "https:///api",
            "https://user:secret@ndxp.gov.vn/api",
            "https://ndxp.gov.vn/api?token=1",
            "https://ndxp.gov.vn/api/../admin",
            "ndxp.gov.vn/api",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn a_directory_missing_a_file_does_not_load_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_configured(dir.path()));
        std::fs::write(dir.path().join(URL_FILE), "https://ndxp.gov.vn/api").unwrap();
        assert!(is_configured(dir.path()));
        let error = load(dir.path(), Duration::from_secs(1)).unwrap_err();
        assert!(error.contains("tls.crt"), "{error}");
    }
}
