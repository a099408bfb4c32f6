//! A mock national data exchange platform (NDXP) that is a real HTTPS server: nginx with a
//! PKI of its own, requiring a client certificate its CA issued, logging what it received (the
//! client certificate's verification, fingerprint and subject, the consumer header, the path).
//! Shared by the gateway's tests and the end-to-end tests (which include this file by path).

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use super::nginx::{logged, spawn};

/// The API the NDXP answers itself.
pub const POPULATION: &str = "csdlqg-dan-cu";
/// An API nginx answers through a backend that accepts connections and never answers.
pub const SLOW: &str = "cham";

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A CA of the test's own (the national platform's, or an impostor's).
pub fn ca(name: &str) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    params.not_before = now() - time::Duration::HOUR;
    params.not_after = now() + time::Duration::DAY;
    let certificate = params.self_signed(&key).unwrap();
    let issuer = rcgen::Issuer::new(params, key);
    (certificate, issuer)
}

/// A leaf of `issuer`: a server certificate for `localhost`, or a client certificate; returns
/// (certificate PEM, key PEM, certificate DER).
pub fn leaf(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>, name: &str, server: bool) -> (String, String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    params.not_before = now() - time::Duration::HOUR;
    params.not_after = now() + time::Duration::DAY;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    if server {
        params.subject_alt_names = vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    } else {
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    }
    params.use_authority_key_identifier_extension = true;
    let certificate = params.signed_by(&key, issuer).unwrap();
    (certificate.pem(), key.serialize_pem(), certificate.der().to_vec())
}

/// nginx as the NDXP, on a free loopback port; stopped when dropped.
pub struct MockNdxp {
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
    child: Child,
    /// Accepts connections for the slow API and never answers.
    _silent: std::net::TcpListener,
}

/// What the NDXP logged of one request.
#[derive(Debug)]
pub struct Received {
    pub request_uri: String,
    /// `SUCCESS` when a client certificate verified.
    pub client_verify: String,
    /// SHA-1 of the client certificate, hexadecimal.
    pub client_sha1: String,
    /// The client certificate's subject (RFC 2253).
    pub client_subject: String,
    pub consumer: String,
    pub client_address: String,
}

impl MockNdxp {
    /// Serves `/api/<POPULATION>/…` itself and `/api/<SLOW>/…` from a silent backend, with
    /// `server` (certificate, key) as its certificate, and requires a client certificate that
    /// chains to `client_ca`.
    pub fn start(server: &(String, String), client_ca: &str) -> MockNdxp {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::write(dir.path().join("server.crt"), &server.0).unwrap();
        std::fs::write(dir.path().join("server.key"), &server.1).unwrap();
        std::fs::write(dir.path().join("clients.crt"), client_ca).unwrap();
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let server = format!(
            r#"    log_format received escape=json '$request_uri\t$ssl_client_verify\t$ssl_client_fingerprint\t$ssl_client_s_dn\t$http_x_lgsp_consumer\t$http_x_lgsp_client_address';
    server {{
        listen {addr} ssl;
        ssl_certificate {d}/server.crt;
        ssl_certificate_key {d}/server.key;
        ssl_client_certificate {d}/clients.crt;
        ssl_verify_client on;
        ssl_verify_depth 3;
        location /api/{POPULATION}/ {{
            return 200 '{{"ndxp":"{POPULATION}","uri":"$uri","args":"$args","consumer":"$http_x_lgsp_consumer"}}';
        }}
        location /api/{SLOW}/ {{
            proxy_pass http://{silent_addr};
            proxy_read_timeout 60s;
        }}
        location / {{
            return 404 '{{"ndxp":"unknown"}}';
        }}
    }}
"#
        );
        let child = spawn(dir.path(), addr, &server);
        MockNdxp { addr, dir, child, _silent: silent }
    }

    /// Its base URL, as `Platform spec.lgsp.ndxp.url` names it.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/api", self.addr.port())
    }

    /// Everything it logged (nginx logs a request once it has answered it).
    pub fn received(&self) -> Vec<Received> {
        logged(self.dir.path())
            .into_iter()
            .map(|fields| {
                let mut fields = fields.into_iter();
                let mut next = || fields.next().unwrap_or_default();
                Received {
                    request_uri: next(),
                    client_verify: next(),
                    client_sha1: next(),
                    client_subject: next(),
                    consumer: next(),
                    client_address: next(),
                }
            })
            .collect()
    }

    /// The requests logged once there are `count`, at most five seconds.
    pub fn received_at_least(&self, count: usize) -> Vec<Received> {
        for _ in 0..100 {
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the NDXP logged fewer than {count} requests: {:?}", self.received());
    }
}

impl Drop for MockNdxp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
