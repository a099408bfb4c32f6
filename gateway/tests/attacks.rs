//! The gateway attacked as a client would, on loopback with real rustls clients, and nginx as
//! the provider: asserting what the provider received, not only what the client was answered.

mod common;

use common::nginx::Nginx;
use common::*;
use std::time::Duration;

/// Paths that, forwarded as written, an ordinary provider resolves outside the published API
/// (nginx: `/api/v1/../../admin/x` → `/admin/x`), or might on another server (Tomcat's `..;`,
/// IIS's `\`, a second decoding of `%252F`, Windows trimming `.. `, an overlong UTF-8 `.`).
const TRAVERSALS: [&str; 15] = [
    "/..%2F..%2Fadmin/x",
    "/..%2f..%2fadmin/x",
    "/%2e%2e/%2e%2e/admin/x",
    "/.%2E/.%2E/admin/x",
    "/%2E./%2E./admin/x",
    "/..%5C..%5Cadmin/x",
    "/..\\..\\admin/x",
    "/..;/..;/admin/x",
    "/%252e%252e%252fadmin/x",
    "/../../admin/x",
    "/./../admin/x",
    "/a/%00/x",
    "/..%20/..%20/admin/x",
    "/.../.../admin/x",
    "/%C0%AE%C0%AE/%C0%AE%C0%AE/admin/x",
];

#[tokio::test]
async fn an_encoded_traversal_is_refused_and_never_reaches_the_provider() {
    let nginx = Nginx::start();
    let mut h = Harness::start_with(&[], Some(nginx.addr), |_| {}).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    let mutual = client_config(&h.province.trust(), Some(&finance));
    let anonymous = client_config(&h.province.trust(), None);
    let (listen, open) = (h.gateway().listen, h.gateway().open_data_listen.unwrap());
    h.eventually("the grant", async || {
        send(listen, mutual.clone(), &format!("/{PROVIDER}/land-records/"), &[]).await.unwrap().status == 200
    })
    .await;

    // A legitimate path with encoded unreserved characters reaches the provider in canonical form.
    let before = nginx.received_at_least(1).len();
    let (status, body) =
        send_raw(listen, mutual.clone(), &format!("GET /{PROVIDER}/land-records/%7eparcels/%41%62?q=%2F HTTP/1.1"))
            .await
            .unwrap();
    assert_eq!(status, 200, "{body}");
    let last = nginx.received_at_least(before + 1).pop().unwrap();
    assert_eq!((last.request_uri.as_str(), last.location.as_str()), ("/api/v1/~parcels/Ab?q=%2F", "api"));

    let before = before + 1;
    for traversal in TRAVERSALS {
        for (listener, config, api) in
            [(listen, mutual.clone(), "land-records"), (open, anonymous.clone(), "land-prices")]
        {
            let target = format!("/{PROVIDER}/{api}{traversal}");
            let (status, body) = send_raw(listener, config, &format!("GET {target} HTTP/1.1")).await.unwrap();
            assert_eq!(status, 400, "{target}: {body}");
            let problem: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{target}: {body}"));
            assert_eq!(problem["title"], "Malformed API path", "{target}");
        }
    }
    // A last legitimate request: once nginx logged it, it has logged everything before it.
    let marker = format!("GET /{PROVIDER}/land-records/marker HTTP/1.1");
    assert_eq!(send_raw(listen, mutual.clone(), &marker).await.unwrap().0, 200);
    let received = nginx.received_at_least(before + 1);
    assert_eq!(received.len(), before + 1, "the provider received a refused path: {:?}", &received[before..]);
    assert!(received.iter().all(|r| r.location != "other"), "{received:?}");

    // Every refusal is audited (on both listeners), with the path as it was sent.
    let gateway = h.gateway.take().unwrap();
    gateway.shutdown().await;
    let refused: Vec<_> = h.audit_records().into_iter().filter(|r| r["status"] == 400).collect();
    assert_eq!(refused.len(), TRAVERSALS.len() * 2, "{refused:#?}");
    assert!(refused.iter().any(|r| r["path"] == format!("/{PROVIDER}/land-prices/..%2F..%2Fadmin/x")));
}

#[tokio::test]
async fn identity_and_address_headers_from_the_client_never_reach_the_provider() {
    let nginx = Nginx::start();
    let h = Harness::start_with(&[], Some(nginx.addr), |_| {}).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    let mutual = client_config(&h.province.trust(), Some(&finance));
    let anonymous = client_config(&h.province.trust(), None);
    let (listen, open) = (h.gateway().listen, h.gateway().open_data_listen.unwrap());
    h.eventually("the grant", async || {
        send(listen, mutual.clone(), &format!("/{PROVIDER}/land-records/"), &[]).await.unwrap().status == 200
    })
    .await;
    let spoofed = [
        ("X-Lgsp-Consumer", "spiffe://quangnam.gov.vn/agency/H49.14/dss/admin"),
        ("Client-Cert", ":MIIBspoofed=:"),
        ("Client-Cert-Chain", ":MIIBspoofed=:"),
        ("X-Real-IP", "10.0.0.1"),
        ("True-Client-IP", "10.0.0.2"),
        ("X-Original-URL", "/admin/x"),
        ("CF-Connecting-IP", "10.0.0.3"),
        ("X-Forwarded-For", "10.0.0.4"),
    ];
    // The provider does log these headers when they arrive (sent to it directly).
    let direct = spoofed.iter().map(|(n, v)| format!("{n}: {v}\r\n")).collect::<String>();
    let mut tcp = std::net::TcpStream::connect(nginx.addr).unwrap();
    let head = format!("GET /api/v1/direct HTTP/1.1\r\nHost: x\r\n{direct}Connection: close\r\n\r\n");
    std::io::Write::write_all(&mut tcp, head.as_bytes()).unwrap();
    std::io::Read::read_to_end(&mut tcp, &mut Vec::new()).unwrap();
    let mut logged = nginx.received_at_least(2).len();
    while nginx.received().last().unwrap().request_uri != "/api/v1/direct" {
        logged = nginx.received_at_least(logged + 1).len();
    }
    let direct = nginx.received().pop().unwrap();
    assert!(common::nginx::LOGGED_HEADERS.iter().all(|name| direct.header(name).is_some()), "{direct:?}");

    for (listener, config, api, consumer) in
        [(listen, mutual, "land-records", Some(finance.identity.as_str())), (open, anonymous, "land-prices", None)]
    {
        let answer = send(listener, config, &format!("/{PROVIDER}/{api}/x"), &spoofed).await.unwrap();
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        logged += 1;
        let received = nginx.received_at_least(logged).pop().unwrap();
        assert_eq!(received.header("x-lgsp-consumer"), consumer, "{received:?}");
        for name in common::nginx::LOGGED_HEADERS.iter().filter(|n| **n != "x-lgsp-consumer") {
            assert_eq!(received.header(name), None, "{name} reached the provider: {received:?}");
        }
    }
}

#[tokio::test]
async fn an_exchange_is_recorded_when_the_client_disconnects_or_resets_its_stream_before_the_answer() {
    use tokio::io::AsyncWriteExt;
    let mut h = Harness::start(&[]).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    let mutual = client_config(&h.province.trust(), Some(&finance));
    let listen = h.gateway().listen;
    h.eventually("the grant", async || {
        send(listen, mutual.clone(), &format!("/{PROVIDER}/land-records/"), &[]).await.unwrap().status == 200
    })
    .await;

    // HTTP/1.1: the request, then the connection closed 200 ms later (the provider takes 1.5 s).
    let mut stream = connect(listen, mutual.clone()).await.unwrap();
    let head = format!("GET /{PROVIDER}/land-records/slow?by=h1 HTTP/1.1\r\nHost: {GATEWAY_HOST}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(stream);

    // HTTP/2: the stream reset 200 ms after its request (dropping the response future sends
    // RST_STREAM), the connection kept open.
    let mut h2 = (*mutual).clone();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let stream = connect(listen, std::sync::Arc::new(h2)).await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("https://{GATEWAY_HOST}/{PROVIDER}/land-records/slow?by=h2"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let pending = sender.send_request(request);
    assert!(tokio::time::timeout(Duration::from_millis(200), pending).await.is_err(), "the answer takes 1.5 s");

    // Both exchanges reached the provider: both are recorded, with the provider's answer.
    let slow_records = |h: &Harness| {
        h.audit_records()
            .into_iter()
            .filter(|r| r["path"] == format!("/{PROVIDER}/land-records/slow"))
            .collect::<Vec<_>>()
    };
    h.eventually("two records", async || slow_records(&h).len() == 2).await;
    for record in slow_records(&h) {
        assert_eq!(record["status"], 200, "{record}");
        assert_eq!(record["clientGone"], true, "{record}");
        assert_eq!(record["caller"], finance.identity.as_str(), "{record}");
    }
    connection.abort();

    // Refusals before any request: a handshake without a certificate on the mutual-TLS
    // listener, a request head that cannot be parsed on the open-data one. Counted, and written
    // as a `refusals` record before the checkpoint.
    let anonymous = client_config(&h.province.trust(), None);
    let refused = send(listen, anonymous.clone(), &format!("/{PROVIDER}/land-records/"), &[]).await;
    assert!(refused.is_err(), "{refused:?}");
    let open = h.gateway().open_data_listen.unwrap();
    let (status, _) = send_raw(open, anonymous, "GET /x HTTP/1.1\r\nno colon in this header").await.unwrap();
    assert_eq!(status, 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let gateway = h.gateway.take().unwrap();
    gateway.shutdown().await;
    let records = h.audit_records();
    let refusals: Vec<_> = records.iter().filter(|r| r["kind"] == "refusals").collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0]["handshakesRefused"].as_u64().unwrap() >= 1, "{}", refusals[0]);
    assert_eq!(refusals[0]["malformedRequests"], 1, "{}", refusals[0]);
    assert_eq!(records.last().unwrap()["kind"], "checkpoint");
}
