//! A client of the LGSP gateway, as an agency's Pod is: shared by the end-to-end tests that call it
//! (`lgsp.rs`, `national.rs`, `document_exchange.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use govpaas_pki::TrustAnchors;
use govpaas_tests::secret_data;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::ServerName;

/// A real rustls client: trusts the platform bundle, presents the client certificate of `secret`.
pub fn client_config(secret: &Secret) -> Arc<rustls::ClientConfig> {
    let trust = TrustAnchors::from_pem(&secret_data(secret, "ca.crt")).expect("ca.crt is the trust bundle");
    let (crt, key) = (secret_data(secret, "tls.crt"), secret_data(secret, "tls.key"));
    govpaas_pki::tls::client_config(&trust, Some((&crt, &key))).expect("a client configuration")
}

/// `GET https://<host><path>` through the gateway at `address`: (status, JSON body).
pub async fn call(
    address: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Result<(StatusCode, serde_json::Value), String> {
    send(address, host, config, Method::GET, path, Bytes::new()).await
}

/// `<method> https://<host><path>` with `body` through the gateway at `address`: (status, JSON
/// body, or the body as a string when it is not JSON).
pub async fn send(
    address: SocketAddr,
    host: &str,
    config: Arc<rustls::ClientConfig>,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<(StatusCode, serde_json::Value), String> {
    let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| e.to_string())?;
    let server_name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(config).connect(server_name, tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| format!("{e:?}"))?;
    tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
    let body = serde_json::from_slice(&body).unwrap_or_else(|_| serde_json::Value::String(format!("{body:?}")));
    Ok((status, body))
}

/// Writes `keys` of `secret` into `dir`, as the kubelet mounts a Secret.
pub fn mount(secret: &Secret, keys: &[&str], dir: &Path) {
    std::fs::create_dir_all(dir).expect("the mount directory");
    for key in keys {
        std::fs::write(dir.join(key), secret_data(secret, key)).expect("writing a mounted file");
    }
}
