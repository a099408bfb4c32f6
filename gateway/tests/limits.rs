//! Bounded resources under attack, measured on the gateway binary running as its own process:
//! its memory under a flood of large bodies from clients without certificates, and its
//! connections under a flood of idle and slow ones.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::nginx::Nginx;
use common::process::{GatewayFiles, GatewayProcess};
use common::*;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::rt::TokioIo;

/// The chart's memory limit for the gateway (charts/govpaas/values.yaml, gateway.resources).
const CHART_MEMORY_LIMIT_KIB: u64 = 256 * 1024;
const MIB: usize = 1024 * 1024;

/// An open-data API `bulk` without a meaningful rate limit (so bodies are read), and the
/// granted-only API `land-records`; both on nginx.
fn flood_routes() -> String {
    let route = |api: &str, open: bool| {
        serde_json::json!({
            "api": api, "pathPrefix": format!("/{PROVIDER}/{api}/"),
            "upstream": {"namespace": "stnmt", "service": "land", "port": 8080, "path": "/api/v1"},
            "rateLimit": {"requestsPerMinute": 100000, "burst": 10000}, "openData": open,
            "consumers": [],
        })
    };
    serde_json::json!({
        "schema": "govpaas.io/lgsp-routes/v1",
        "source": {"namespace": "stnmt", "name": "land", "uid": "u1"},
        "agencyCode": PROVIDER,
        "routes": [route("bulk", true), route("land-records", false)],
    })
    .to_string()
}

/// POSTs a body of `size` bytes (declared, and streamed in 64 KiB chunks) over a new
/// connection from `local`; the answer's status, or the error.
async fn post(
    local: &str,
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
    size: usize,
) -> Result<u16, String> {
    let tcp = tcp_from(local, addr).await;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(rustls::pki_types::ServerName::try_from(GATEWAY_HOST).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    let frames = futures::stream::iter(
        std::iter::repeat_n(chunk, size / (64 * 1024)).map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(c))),
    );
    let request = Request::post(path)
        .header("host", GATEWAY_HOST)
        .header("content-length", size)
        .body(StreamBody::new(frames))
        .unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_large_bodies_without_certificates_stays_under_the_memory_limit() {
    let nginx = Nginx::start();
    let province = Province::new();
    let dir = tempfile::tempdir().unwrap();
    let files = GatewayFiles::write(dir.path(), &province, &flood_routes());
    let gateway = GatewayProcess::start(&files, &[("land.stnmt.svc", nginx.addr)], &[]);
    let anonymous = client_config(&province.trust(), None);
    let started_kib = gateway.status_kib("VmRSS");

    // 24 anonymous clients × 16 MiB to an open-data API (read, within the budget), and 24 to a
    // granted-only API (refused from the head, bodies never read), from four addresses (one
    // address may hold 32 connections to the open-data listener).
    let started = Instant::now();
    let mut flood = Vec::new();
    for i in 0..48 {
        let (config, open) = (anonymous.clone(), gateway.open_data_listen);
        let api = if i % 2 == 0 { "bulk" } else { "land-records" };
        let local = format!("127.0.0.{}", 10 + i % 4);
        flood.push(tokio::spawn(async move {
            (api, post(&local, open, config, &format!("/{PROVIDER}/{api}/upload"), 16 * MIB).await)
        }));
    }
    let mut peak_sampled = 0;
    while !flood.iter().all(|task| task.is_finished()) {
        peak_sampled = peak_sampled.max(gateway.status_kib("VmRSS"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut outcomes = Vec::new();
    for task in flood {
        outcomes.push(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let peak = gateway.status_kib("VmHWM");
    eprintln!(
        "flood of 48 × 16 MiB in {elapsed:?}: gateway RSS {started_kib} KiB at start, peak {peak} KiB (sampled {peak_sampled} KiB); outcomes {outcomes:?}"
    );
    assert!(peak < CHART_MEMORY_LIMIT_KIB, "peak RSS {peak} KiB is above the chart's limit of 256 MiB");
    let served = outcomes.iter().filter(|(api, outcome)| *api == "bulk" && *outcome == Ok(200)).count();
    assert!(served >= 4, "the open-data bodies are served within the budget: {outcomes:?}");
    for (api, outcome) in &outcomes {
        match *api {
            "bulk" => assert!(matches!(outcome, Ok(200) | Ok(503)), "{outcome:?}"),
            // Refused from the head: 403, or the connection closed while the client still sent.
            _ => assert!(matches!(outcome, Ok(403) | Err(_)), "{outcome:?}"),
        }
    }
    assert!(outcomes.iter().any(|(api, outcome)| *api == "land-records" && *outcome == Ok(403)), "{outcomes:?}");
    // nginx received the open-data uploads only.
    let received = nginx.received_at_least(served);
    assert!(received.iter().all(|r| r.request_uri == "/api/v1/upload" && r.location == "api"), "{received:?}");
}

/// A TCP connection from `local` (any 127.0.0.0/8 address is loopback on Linux).
async fn tcp_from(local: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the gateway closed `stream` (EOF or reset) within `wait`.
async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (a 408, a GOAWAY…): keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_over_the_caps_leave_the_mutual_tls_listener_reachable() {
    use tokio::io::AsyncWriteExt;
    let nginx = Nginx::start();
    let province = Province::new();
    let dir = tempfile::tempdir().unwrap();
    let finance = client_cert(&province.finance, "budget-portal");
    let files = GatewayFiles::write(dir.path(), &province, &routes_json(nginx.addr, &[&finance.identity]));
    let gateway = GatewayProcess::start(
        &files,
        &[("land.stnmt.svc", nginx.addr)],
        &[
            "--open-data-max-connections=60",
            "--open-data-max-connections-per-address=20",
            "--idle-timeout-seconds=3",
            "--header-timeout-seconds=3",
            "--handshake-timeout-seconds=3",
        ],
    );
    let open = gateway.open_data_listen;
    let anonymous = client_config(&province.trust(), None);
    let fds_before = gateway.open_fds();

    // From 127.0.0.2: 10 connections idle after the TLS handshake, 10 idle without a handshake,
    // 10 sending a request head a byte at a time — 30, over the 20 allowed from one address.
    let mut idle_tls = Vec::new();
    for _ in 0..10 {
        let tcp = tcp_from("127.0.0.2", open).await;
        let tls = tokio_rustls::TlsConnector::from(anonymous.clone())
            .connect(rustls::pki_types::ServerName::try_from(GATEWAY_HOST).unwrap(), tcp)
            .await
            .unwrap();
        idle_tls.push(tls);
    }
    let mut idle_tcp = Vec::new();
    for _ in 0..10 {
        idle_tcp.push(tcp_from("127.0.0.2", open).await);
    }
    let mut over_cap = Vec::new();
    for _ in 0..10 {
        over_cap.push(tcp_from("127.0.0.2", open).await);
    }
    // The ten over the per-address cap are closed at once.
    // Checked together, well within the 3 s timeouts (which would close them anyway).
    let closed_at_once =
        futures::future::join_all(over_cap.iter_mut().map(|stream| closed_within(stream, Duration::from_millis(1500))))
            .await
            .into_iter()
            .filter(|closed| *closed)
            .count();
    assert_eq!(closed_at_once, 10, "connections over the per-address cap are closed at once");
    // A slow client on another address: a request head one byte every 500 ms.
    let mut slow = tokio_rustls::TlsConnector::from(anonymous.clone())
        .connect(rustls::pki_types::ServerName::try_from(GATEWAY_HOST).unwrap(), tcp_from("127.0.0.3", open).await)
        .await
        .unwrap();
    let slow_head = format!("GET /{PROVIDER}/land-prices/x HTTP/1.1\r\nHost: {GATEWAY_HOST}\r\n");
    let slow_writer = tokio::spawn(async move {
        for byte in slow_head.bytes() {
            if slow.write_all(&[byte]).await.is_err() {
                return (slow, true);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (slow, false)
    });
    // An HTTP/2 connection (ALPN h2, connection preface and settings exchanged) that never opens a
    // stream: closed like the others (a GOAWAY, then the connection ends).
    let mut h2 = (*anonymous).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let h2_stream = tokio_rustls::TlsConnector::from(Arc::new(h2))
        .connect(rustls::pki_types::ServerName::try_from(GATEWAY_HOST).unwrap(), tcp_from("127.0.0.6", open).await)
        .await
        .unwrap();
    assert_eq!(h2_stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (_sender, h2_connection): (hyper::client::conn::http2::SendRequest<http_body_util::Empty<Bytes>>, _) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(h2_stream))
            .await
            .unwrap();
    let h2_connection = tokio::spawn(h2_connection);
    // More addresses fill the listener's cap of 60: 20 each from 127.0.0.4 and .5 (the last
    // two over it, with the twenty of .2, the slow one and the HTTP/2 one).
    let mut filling = Vec::new();
    for local in ["127.0.0.4", "127.0.0.5"] {
        for _ in 0..20 {
            filling.push(tcp_from(local, open).await);
        }
    }
    let over_listener =
        futures::future::join_all(filling.iter_mut().map(|stream| closed_within(stream, Duration::from_millis(1500))))
            .await
            .into_iter()
            .filter(|closed| *closed)
            .count();
    assert!((1..=10).contains(&over_listener), "the listener's cap closes the connections over it: {over_listener}");

    // Meanwhile an agency with its certificate is served on the mutual-TLS listener, in time.
    let mutual = client_config(&province.trust(), Some(&finance));
    let asked = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        send(gateway.listen, mutual.clone(), &format!("/{PROVIDER}/land-records/x"), &[]),
    )
    .await
    .expect("the mutual-TLS client was answered within 5 s")
    .unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    eprintln!("the certificate-holding client was served in {:?} during the flood", asked.elapsed());

    // Every idle or slow connection is closed by its timeout (3 s here), the slow head included.
    for stream in &mut idle_tls {
        assert!(closed_within(stream, Duration::from_secs(6)).await, "an idle TLS connection stayed open");
    }
    for stream in &mut idle_tcp {
        assert!(closed_within(stream, Duration::from_secs(6)).await, "a connection without handshake stayed open");
    }
    let h2_closed = tokio::time::timeout(Duration::from_secs(6), h2_connection).await;
    assert!(h2_closed.is_ok(), "an HTTP/2 connection without streams stayed open");
    let (mut slow, cut_while_writing) = slow_writer.await.unwrap();
    assert!(cut_while_writing || closed_within(&mut slow, Duration::from_secs(6)).await, "the slow head was not cut");
    // The descriptors came back.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_after = gateway.open_fds();
    assert!(fds_after <= fds_before + 2, "descriptors: {fds_before} before, {fds_after} after");
}
