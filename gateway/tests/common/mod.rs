//! A province in a test: a PKI made by govpaas-pki, a tiny hyper upstream that echoes what it
//! received, the gateway in-process on ephemeral ports, and real rustls clients over TCP.

#![allow(dead_code)]

pub mod ndxp;
pub mod nginx;
pub mod process;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use govpaas_gateway::config::{ConfigPaths, RoutesSource};
use govpaas_gateway::{RunningGateway, Settings};
use govpaas_pki::{
    CertificateAuthority, ClientCertificateRequest, IssuancePolicy, PlatformCaRequest, ServerCertificateRequest,
    TenantCaRequest, TrustAnchors, generate_platform_ca,
};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const BASE: &str = "quangnam.gov.vn";
pub const GATEWAY_HOST: &str = "lgsp.h49.quangnam.gov.vn";
/// The provider: Sở Tài nguyên và Môi trường.
pub const PROVIDER: &str = "H49.14";

pub fn policy() -> IssuancePolicy {
    IssuancePolicy::default()
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn platform() -> CertificateAuthority {
    generate_platform_ca(&PlatformCaRequest::new(BASE, "Trung tâm Dữ liệu tỉnh Quảng Nam"), &policy(), now()).unwrap()
}

pub fn tenant(platform: &CertificateAuthority, code: &str, domain: &str) -> CertificateAuthority {
    let request = TenantCaRequest {
        base_domain: BASE.to_owned(),
        agency_code: code.to_owned(),
        display_name: format!("Cơ quan {code}"),
        domain: domain.to_owned(),
    };
    platform.issue_tenant_ca(&request, &policy(), now()).unwrap()
}

/// A client certificate: (`tls.crt` with chain, `tls.key`).
#[derive(Clone)]
pub struct ClientCert {
    pub identity: String,
    pub crt: String,
    pub key: String,
}

pub fn client_cert(tenant: &CertificateAuthority, name: &str) -> ClientCert {
    workload_cert(tenant, "dss", name)
}

/// A client certificate for the tenant's workload `kind`/`name` (`dss` for a DataSharingService,
/// `docs` for a DocumentService).
pub fn workload_cert(tenant: &CertificateAuthority, kind: &str, name: &str) -> ClientCert {
    let identity = tenant.agency().unwrap().workload(kind, name).unwrap();
    let issued = tenant
        .issue_client_certificate(&ClientCertificateRequest { identity: identity.clone() }, &policy(), now())
        .unwrap();
    ClientCert {
        identity: identity.uri(),
        crt: issued.chain_pem().to_owned(),
        key: issued.private_key_pem().expose().to_owned(),
    }
}

/// What a compromised tenant CA could sign: a client certificate claiming `identity` (of another
/// agency), signed by hand with the tenant CA's key, bypassing the issuance checks.
pub fn forged_client_cert(tenant: &CertificateAuthority, identity: &str) -> ClientCert {
    let ca_key = rcgen::KeyPair::from_pem(tenant.private_key_pem().expose()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(tenant.certificate_pem(), ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "forged");
    params.subject_alt_names = vec![rcgen::SanType::URI(identity.try_into().unwrap())];
    params.not_before = now() - time::Duration::HOUR;
    params.not_after = now() + time::Duration::DAY;
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer).unwrap();
    ClientCert {
        identity: identity.to_owned(),
        crt: format!("{}{}", cert.pem(), tenant.certificate_pem()),
        key: key.serialize_pem(),
    }
}

/// The province: its platform CA, the gateway's tenant (H49) and the agencies calling it.
pub struct Province {
    pub platform: CertificateAuthority,
    pub gateway_tenant: CertificateAuthority,
    /// Sở Tài chính, granted the provider's APIs.
    pub finance: CertificateAuthority,
    /// Sở Y tế, granted nothing.
    pub health: CertificateAuthority,
}

impl Province {
    pub fn new() -> Self {
        let platform = platform();
        Province {
            gateway_tenant: tenant(&platform, "H49", "h49.quangnam.gov.vn"),
            finance: tenant(&platform, "H49.12", "stc.quangnam.gov.vn"),
            health: tenant(&platform, "H49.13", "syt.quangnam.gov.vn"),
            platform,
        }
    }

    /// A fresh server certificate for the gateway: (`tls.crt`, `tls.key`).
    pub fn gateway_certificate(&self) -> (String, String) {
        let issued = self
            .gateway_tenant
            .issue_server_certificate(&ServerCertificateRequest::new([GATEWAY_HOST]), &policy(), now())
            .unwrap();
        (issued.chain_pem().to_owned(), issued.private_key_pem().expose().to_owned())
    }

    pub fn trust(&self) -> TrustAnchors {
        TrustAnchors::from_pem(self.platform.certificate_pem().as_bytes()).unwrap()
    }
}

/// The upstream: echoes method, path, query and the gateway's identity headers as JSON;
/// `/api/v1/slow` answers after a second and a half.
pub async fn upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: Request<hyper::body::Incoming>| async move {
                    if request.uri().path().ends_with("/slow") {
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                    }
                    let header = |name: &str| request.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
                    let echo = serde_json::json!({
                        "method": request.method().as_str(),
                        "path": request.uri().path(),
                        "query": request.uri().query(),
                        "consumer": header("x-lgsp-consumer"),
                        "clientAddress": header("x-lgsp-client-address"),
                        "consumerHeaders": request.headers().get_all("x-lgsp-consumer").iter().count(),
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(echo.to_string()))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    addr
}

/// The provider's route table (schema `govpaas.io/lgsp-routes/v1`, as the operator writes it): its
/// Services `land` and `gone` in namespace `stnmt`, which [`resolve`] sends to the upstream and to
/// a closed port.
pub fn routes_json(_upstream: SocketAddr, land_consumers: &[&str]) -> String {
    let consumers: Vec<serde_json::Value> = land_consumers
        .iter()
        .map(|identity| serde_json::json!({"identity": identity, "agencyCode": "H49.12", "service": "x"}))
        .collect();
    let route = |api: &str, service: &str, path: &str, rate: (i32, i32), open: bool| {
        serde_json::json!({
            "api": api, "pathPrefix": format!("/{PROVIDER}/{api}/"),
            "upstream": {"namespace": "stnmt", "service": service, "port": 8080, "path": path},
            "rateLimit": {"requestsPerMinute": rate.0, "burst": rate.1}, "openData": open,
            "consumers": if open { Vec::new() } else { consumers.clone() },
        })
    };
    serde_json::json!({
        "schema": "govpaas.io/lgsp-routes/v1",
        "source": {"namespace": "stnmt", "name": "land", "uid": "u1"},
        "agencyCode": PROVIDER,
        "routes": [
            route("land-records", "land", "/api/v1", (6000, 100), false),
            route("limited", "land", "/api/v1", (60, 2), false),
            route("land-prices", "land", "/open", (60, 3), true),
            route("gone", "gone", "/x", (60, 3), false),
        ],
    })
    .to_string()
}

/// `--resolve`: the Service `land` is the upstream, `gone` a port nobody listens on.
pub fn resolve(upstream: SocketAddr) -> govpaas_gateway::routes::Resolve {
    govpaas_gateway::routes::Resolve(
        [("land.stnmt.svc".to_owned(), upstream), ("gone.stnmt.svc".to_owned(), "127.0.0.1:1".parse().unwrap())].into(),
    )
}

/// Writes `contents` to `path` through a rename, as Kubernetes swaps a mounted file.
pub fn replace_file(path: &Path, contents: &str) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, path).unwrap();
}

/// A gateway running in this process, with its files in a temporary directory.
pub struct Harness {
    pub province: Province,
    pub gateway: Option<RunningGateway>,
    pub dir: tempfile::TempDir,
    pub paths: ConfigPaths,
    pub upstream: SocketAddr,
}

impl Harness {
    pub async fn start(land_consumers: &[&str]) -> Self {
        Self::start_with(land_consumers, None, |_| {}).await
    }

    /// [`Harness::start`] with another provider behind the Service `land` (nginx…) and settings
    /// of its own.
    pub async fn start_with(
        land_consumers: &[&str],
        provider: Option<SocketAddr>,
        tune: impl FnOnce(&mut Settings),
    ) -> Self {
        let province = Province::new();
        let upstream = match provider {
            Some(addr) => addr,
            None => upstream().await,
        };
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths {
            tls_crt: dir.path().join("tls.crt"),
            tls_key: dir.path().join("tls.key"),
            client_ca: dir.path().join("ca.crt"),
            routes: RoutesSource::Files(dir.path().join("routes.json")),
            resolve: resolve(upstream),
            national: None,
        };
        let (crt, key) = province.gateway_certificate();
        std::fs::write(&paths.tls_crt, crt).unwrap();
        std::fs::write(&paths.tls_key, key).unwrap();
        std::fs::write(&paths.client_ca, province.platform.certificate_pem()).unwrap();
        std::fs::write(dir.path().join("routes.json"), routes_json(upstream, land_consumers)).unwrap();
        let mut settings = Settings::new(paths.clone(), "127.0.0.1:0".parse().unwrap(), dir.path().join("audit.jsonl"));
        settings.open_data_listen = Some("127.0.0.1:0".parse().unwrap());
        settings.reload_interval = Duration::from_millis(100);
        settings.checkpoint_interval = Duration::from_secs(3600);
        settings.forward.timeout = Duration::from_secs(5);
        tune(&mut settings);
        let gateway = govpaas_gateway::start(settings).await.unwrap();
        Harness { province, gateway: Some(gateway), dir, paths, upstream }
    }

    pub fn gateway(&self) -> &RunningGateway {
        self.gateway.as_ref().unwrap()
    }

    /// The route table file.
    pub fn routes_path(&self) -> PathBuf {
        self.dir.path().join("routes.json")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.audit_path())
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// The value of `series` (a name, with its labels if it has any) in the gateway's `/metrics`,
    /// served on the probes' port: start the harness with `settings.health_listen`.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let health = self.gateway().health_listen.expect("the probes' port (settings.health_listen)");
        let mut tcp = TcpStream::connect(health).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Polls until `done` holds (the reloader runs every 100 ms), at most five seconds.
    pub async fn eventually(&self, what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..100 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what} did not happen within five seconds");
    }
}

/// A TLS client: trusts `trust`, presents `cert` if given.
pub fn client_config(trust: &TrustAnchors, cert: Option<&ClientCert>) -> Arc<rustls::ClientConfig> {
    govpaas_pki::tls::client_config(trust, cert.map(|c| (c.crt.as_bytes(), c.key.as_bytes()))).unwrap()
}

pub async fn connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config).connect(ServerName::try_from(GATEWAY_HOST).unwrap(), tcp).await
}

/// The server certificate a connection was served.
pub fn served_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned()
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

/// Sends one request over a new connection; `Err` when TLS or HTTP fails.
pub async fn send(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, String> {
    let stream = connect(addr, config).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    let mut request = Request::builder().uri(path).header("host", GATEWAY_HOST);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response =
        sender.send_request(request.body(Full::new(Bytes::new())).unwrap()).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(format!("{body:?}")));
    Ok(Answer { status, headers, body })
}

/// Sends `head` (a request line and headers, without the blank line) byte for byte over a new
/// connection, as an attacker's client would, with `Connection: close`; returns the status and
/// the body. Nothing normalises the target on the way.
pub async fn send_raw(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    head: &str,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = connect(addr, config).await.map_err(|e| e.to_string())?;
    let request = format!("{head}\r\nHost: {GATEWAY_HOST}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// `govpaas-gateway audit verify` of `dir`'s `audit.jsonl` against its `tls.crt` (the signer) and
/// `ca.crt` (the platform CA): whether it verified, and what it printed.
pub fn audit_verify(dir: &Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_govpaas-gateway"))
        .args(["audit", "verify", "--log"])
        .arg(dir.join("audit.jsonl"))
        .arg("--certificate")
        .arg(dir.join("tls.crt"))
        .arg("--ca")
        .arg(dir.join("ca.crt"))
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}
