//! The gateway end to end on loopback: real TCP, real rustls on both sides, certificates from
//! govpaas-pki, a hyper upstream.

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn land(rest: &str) -> String {
    format!("/{PROVIDER}/land-records{rest}")
}

#[tokio::test]
async fn a_granted_consumer_reaches_the_provider_which_sees_the_verified_identity() {
    let h = Harness::start(&[]).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    let config = client_config(&h.province.trust(), Some(&finance));
    let addr = h.gateway().listen;
    h.eventually("the grant", async || send(addr, config.clone(), &land("/"), &[]).await.unwrap().status == 200).await;

    // A spoofed identity header is replaced by the verified one.
    let spoofed = "spiffe://quangnam.gov.vn/agency/H49.14/dss/admin";
    let answer =
        send(addr, config.clone(), &land("/parcels/7?owner=a&page=2"), &[("X-Lgsp-Consumer", spoofed)]).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["path"], "/api/v1/parcels/7");
    assert_eq!(answer.body["query"], "owner=a&page=2");
    assert_eq!(answer.body["consumer"], finance.identity.as_str());
    assert_eq!(answer.body["consumerHeaders"], 1);
    assert_eq!(answer.body["clientAddress"], "127.0.0.1");
    let path_only = send(addr, config.clone(), &format!("/{PROVIDER}/land-records"), &[]).await.unwrap();
    assert_eq!(path_only.body["path"], "/api/v1");

    // The clear refusals.
    let missing = send(addr, config.clone(), &format!("/{PROVIDER}/no-such-api/x"), &[]).await.unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.headers["content-type"], "application/problem+json");
    let malformed = send(addr, config.clone(), "/lowercase/land-records", &[]).await.unwrap();
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let traversal = send(addr, config.clone(), &land("/../../secret"), &[]).await.unwrap();
    assert_eq!(traversal.status, StatusCode::BAD_REQUEST);
    let unreachable = send(addr, config.clone(), &format!("/{PROVIDER}/gone/x"), &[]).await.unwrap();
    assert_eq!(unreachable.status, StatusCode::BAD_GATEWAY, "{:?}", unreachable.body);

    let records = h.audit_records();
    let ok = records.iter().find(|r| r["path"] == "/H49.14/land-records/parcels/7").unwrap();
    assert_eq!(ok["caller"], finance.identity.as_str());
    assert_eq!((ok["provider"].as_str(), ok["api"].as_str()), (Some(PROVIDER), Some("land-records")));
    assert_eq!(ok["status"], 200);
    assert!(ok["responseBytes"].as_u64().unwrap() > 0);
    assert!(records.iter().any(|r| r["status"] == 502 && r["api"] == "gone"));
}

#[tokio::test]
async fn another_agency_is_refused_with_a_reason_and_audited() {
    let h = Harness::start(&[]).await;
    let health = client_cert(&h.province.health, "hospital-records");
    let answer =
        send(h.gateway().listen, client_config(&h.province.trust(), Some(&health)), &land("/x"), &[]).await.unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(detail.contains(&health.identity) && detail.contains("H49.14/land-records"), "{detail}");
    let record = h.audit_records().into_iter().last().unwrap();
    assert_eq!((record["status"].as_u64(), record["caller"].as_str()), (Some(403), Some(health.identity.as_str())));
}

/// Reads from a connection whose handshake the server refused: the alert arrives as an error.
async fn refused(h: &Harness, cert: Option<&ClientCert>, trust: &govpaas_pki::TrustAnchors) -> String {
    let mut stream = match connect(h.gateway().listen, client_config(trust, cert)).await {
        Ok(stream) => stream,
        Err(error) => return error.to_string(),
    };
    // TLS 1.3: the client finishes first; the server's verdict on its certificate comes next.
    let _ = stream.write_all(format!("GET {} HTTP/1.1\r\nhost: x\r\n\r\n", land("/")).as_bytes()).await;
    let mut buf = [0u8; 256];
    match stream.read(&mut buf).await {
        Ok(0) => "closed".to_owned(),
        Ok(n) => panic!("the gateway answered: {}", String::from_utf8_lossy(&buf[..n])),
        Err(error) => error.to_string(),
    }
}

#[tokio::test]
async fn no_certificate_a_foreign_ca_and_a_forged_identity_are_all_refused() {
    let h = Harness::start(&[]).await;
    let trust = h.province.trust();
    let finance_identity = client_cert(&h.province.finance, "budget-portal").identity;
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance_identity]));

    let error = refused(&h, None, &trust).await;
    assert!(error.contains("CertificateRequired"), "{error}");

    let foreign_platform = platform();
    let foreign = client_cert(&tenant(&foreign_platform, "H49.12", "stc.quangnam.gov.vn"), "budget-portal");
    assert_eq!(foreign.identity, finance_identity, "same identity, another CA");
    let error = refused(&h, Some(&foreign), &trust).await;
    assert!(error.contains("alert"), "{error}");

    // The health department's CA vouching for a finance department identity: the TLS chain is
    // valid (webpki ignores URI constraints), the gateway's identity check is not fooled.
    let forged = forged_client_cert(&h.province.health, &finance_identity);
    let addr = h.gateway().listen;
    let config = client_config(&trust, Some(&forged));
    h.eventually("the grant", async || {
        let answer = send(addr, config.clone(), &land("/"), &[]).await.unwrap();
        assert_ne!(answer.status, StatusCode::OK, "a forged identity got through");
        answer.body["title"] == "Client certificate refused"
    })
    .await;
    let answer = send(addr, config, &land("/"), &[]).await.unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body["detail"].as_str().unwrap().contains("H49.13"), "{:?}", answer.body);
    let record = h.audit_records().into_iter().last().unwrap();
    assert_eq!(record["status"], 403);
    assert!(record["caller"].is_null(), "a refused identity is not recorded as the caller");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_then_recovers() {
    let h = Harness::start(&[]).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    let config = client_config(&h.province.trust(), Some(&finance));
    let addr = h.gateway().listen;
    let limited = format!("/{PROVIDER}/limited/x");
    // Wait for the grant on another API, so the bucket of `limited` is untouched.
    h.eventually("the grant", async || send(addr, config.clone(), &land("/"), &[]).await.unwrap().status == 200).await;
    for _ in 0..2 {
        assert_eq!(send(addr, config.clone(), &limited, &[]).await.unwrap().status, StatusCode::OK);
    }
    let refused = send(addr, config.clone(), &limited, &[]).await.unwrap();
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry_after, 1, "60 a minute: one more a second");
    // Another consumer's bucket is its own.
    let other = client_cert(&h.province.finance, "tax-portal");
    let other_config = client_config(&h.province.trust(), Some(&other));
    assert_eq!(send(addr, other_config, &limited, &[]).await.unwrap().status, StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    assert_eq!(send(addr, config, &limited, &[]).await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn the_open_data_listener_serves_open_data_only_without_a_certificate() {
    let h = Harness::start(&[]).await;
    let open = h.gateway().open_data_listen.unwrap();
    let anonymous = client_config(&h.province.trust(), None);
    let answer = send(open, anonymous.clone(), &format!("/{PROVIDER}/land-prices/2026"), &[]).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["path"], "/open/2026");
    assert!(answer.body["consumer"].is_null());
    assert_eq!(answer.body["clientAddress"], "127.0.0.1");

    let refused = send(open, anonymous.clone(), &land("/x"), &[]).await.unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["title"], "Not open data");

    // Burst 3 per client address: two more, then 429.
    for _ in 0..2 {
        assert_eq!(send(open, anonymous.clone(), &format!("/{PROVIDER}/land-prices/"), &[]).await.unwrap().status, 200);
    }
    let limited = send(open, anonymous, &format!("/{PROVIDER}/land-prices/"), &[]).await.unwrap();
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let record = h.audit_records().into_iter().last().unwrap();
    assert_eq!(record["status"], 429);
    assert!(record["client"].as_str().unwrap().starts_with("127.0.0.1:"));
}

#[tokio::test]
async fn a_new_route_table_grants_without_a_restart_and_requests_in_flight_complete() {
    let h =
        Harness::start_with(&[], None, |settings| settings.health_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    let config = client_config(&h.province.trust(), Some(&finance));
    let addr = h.gateway().listen;
    assert_eq!(send(addr, config.clone(), &land("/"), &[]).await.unwrap().status, StatusCode::FORBIDDEN);

    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    h.eventually("the grant", async || send(addr, config.clone(), &land("/"), &[]).await.unwrap().status == 200).await;
    const GENERATION: &str = "lgsp_gateway_route_table_generation";
    const REFUSED: &str = "lgsp_gateway_route_tables_refused";
    let granting = h.metric(GENERATION).await.expect("the route table's generation");
    assert_eq!(h.metric(REFUSED).await, Some(0.0));

    // A broken route table is refused — the reloader read it and says so — and the current one
    // stays: no new route table, the grant still answers.
    replace_file(&h.routes_path(), "{\"version\": 1, \"apis\": [ {\"provider\": ");
    h.eventually("the broken table refused", async || h.metric(REFUSED).await == Some(1.0)).await;
    assert_eq!(h.metric(GENERATION).await, Some(granting), "the refused table replaced the one in force");
    assert_eq!(send(addr, config.clone(), &land("/"), &[]).await.unwrap().status, StatusCode::OK);

    // A slow request in flight while the grant is withdrawn still completes.
    let slow_config = config.clone();
    let slow = tokio::spawn(async move { send(addr, slow_config, &land("/slow"), &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[]));
    h.eventually("the withdrawal", async || send(addr, config.clone(), &land("/"), &[]).await.unwrap().status == 403)
        .await;
    // The good table after the refused one is in force, and nothing is refused any more.
    assert!(h.metric(GENERATION).await.expect("the route table's generation") > granting);
    assert_eq!(h.metric(REFUSED).await, Some(0.0));
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status, StatusCode::OK);
    assert_eq!(slow.body["path"], "/api/v1/slow");
}

#[tokio::test]
async fn new_connections_are_served_the_replaced_certificate() {
    let h = Harness::start(&[]).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    let config = client_config(&h.province.trust(), Some(&finance));
    let addr = h.gateway().listen;
    let before = served_certificate(&connect(addr, config.clone()).await.unwrap());
    let open_before =
        served_certificate(&connect(h.gateway().open_data_listen.unwrap(), config.clone()).await.unwrap());
    assert_eq!(before, open_before);

    // A key that does not match the certificate is refused: the old pair stays.
    let (crt, key) = h.province.gateway_certificate();
    replace_file(&h.paths.tls_crt, &crt);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served_certificate(&connect(addr, config.clone()).await.unwrap()), before);

    let kept = connect(addr, config.clone()).await.unwrap();
    replace_file(&h.paths.tls_key, &key);
    let expected = govpaas_pki::verify::chain_from_pem("tls.crt", crt.as_bytes()).unwrap().remove(0);
    h.eventually("the new certificate", async || {
        served_certificate(&connect(addr, config.clone()).await.unwrap()) == expected
    })
    .await;
    assert_eq!(served_certificate(&connect(h.gateway().open_data_listen.unwrap(), config).await.unwrap()), expected);
    assert_eq!(served_certificate(&kept), before, "an established connection keeps its session");
}

fn verify_cli(log: &std::path::Path, certificate: &std::path::Path) -> (bool, String) {
    // The harness's ca.crt, next to the log: the platform CA.
    let ca = log.parent().unwrap().join("ca.crt");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_govpaas-gateway"))
        .args(["audit", "verify", "--log"])
        .arg(log)
        .arg("--certificate")
        .arg(certificate)
        .arg("--ca")
        .arg(ca)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

#[tokio::test]
async fn audit_verify_passes_on_a_real_log_and_finds_tampering() {
    let mut h = Harness::start(&[]).await;
    let finance = client_cert(&h.province.finance, "budget-portal");
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    let config = client_config(&h.province.trust(), Some(&finance));
    let addr = h.gateway().listen;
    h.eventually("the grant", async || send(addr, config.clone(), &land("/"), &[]).await.unwrap().status == 200).await;
    send(addr, config.clone(), &land("/a"), &[]).await.unwrap();
    assert!(h.gateway().checkpoint_now().is_some());
    send(addr, config.clone(), &land("/b"), &[]).await.unwrap();
    h.gateway.take().unwrap().shutdown().await; // signs a last checkpoint

    let log = h.audit_path();
    let certificate = h.dir.path().join("gateway.pem");
    std::fs::copy(&h.paths.tls_crt, &certificate).unwrap();
    let (ok, output) = verify_cli(&log, &certificate);
    assert!(ok, "{output}");
    assert!(output.contains("OK") && output.contains("2 signed checkpoints"), "{output}");

    // The signer must chain to the platform CA given: another province's CA refuses it.
    let other = common::platform();
    let other_ca = h.dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, other.certificate_pem()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_govpaas-gateway"))
        .args(["audit", "verify", "--log"])
        .arg(&log)
        .arg("--certificate")
        .arg(&certificate)
        .arg("--ca")
        .arg(&other_ca)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success() && printed.contains("UNTRUSTED SIGNER"), "{printed}");
    assert!(printed.contains("does not chain to the platform CA"), "{printed}");

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let target = lines.iter().position(|l| l.contains("\"status\":200")).unwrap();
    let tampered = h.dir.path().join("tampered.jsonl");

    // One edited byte: the status of an exchange.
    let edited = text.replacen("\"status\":200", "\"status\":201", 1);
    std::fs::write(&tampered, &edited).unwrap();
    let (ok, output) = verify_cli(&tampered, &certificate);
    assert!(!ok, "{output}");
    assert!(output.contains(&format!("line {}", target + 1)) && output.contains("altered"), "{output}");

    // A deleted line.
    let deleted: String = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&tampered, deleted).unwrap();
    let (ok, output) = verify_cli(&tampered, &certificate);
    assert!(!ok && output.contains("line 2") && output.contains("deleted"), "{output}");

    // A checkpoint signed by someone else (the chain itself recomputed to match).
    let forger = h.province.gateway_certificate();
    let forged_certificate = h.dir.path().join("forger.pem");
    std::fs::write(&forged_certificate, &forger.0).unwrap();
    let (ok, output) = verify_cli(&log, &forged_certificate);
    assert!(!ok && output.contains("unknown certificate"), "{output}");
    let checkpoint = lines.iter().position(|l| l.contains("\"kind\":\"checkpoint\"")).unwrap();
    let record: serde_json::Value = serde_json::from_str(lines[checkpoint]).unwrap();
    let signature = record["signature"].as_str().unwrap();
    let mut forged_signature = signature.to_owned();
    let last = forged_signature.pop().unwrap();
    forged_signature.push(if last == '0' { '1' } else { '0' });
    let forged = rechain(&text.replace(signature, &forged_signature));
    std::fs::write(&tampered, forged).unwrap();
    let (ok, output) = verify_cli(&tampered, &certificate);
    assert!(!ok, "{output}");
    assert!(output.contains(&format!("line {}", checkpoint + 1)) && output.contains("does not verify"), "{output}");
}

/// Recomputes every `prev` and `hash` of a log (what anyone can do without the signing key).
fn rechain(text: &str) -> String {
    let mut prev = [0u8; 32];
    let mut out = String::new();
    for line in text.lines() {
        let (head, _) = line.rsplit_once(",\"hash\":\"").unwrap();
        let mut record: serde_json::Value = serde_json::from_str(&format!("{head}}}")).unwrap();
        record["prev"] = hex::encode(prev).into();
        if record["kind"] == "checkpoint" {
            record["head"] = hex::encode(prev).into();
        }
        // serde_json keeps field order only with preserve_order; rebuild the canonical order.
        let canonical = canonical_bytes(&record);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&prev);
        ctx.update(canonical.as_bytes());
        prev = ctx.finish().as_ref().try_into().unwrap();
        out.push_str(&format!("{},\"hash\":\"{}\"}}\n", &canonical[..canonical.len() - 1], hex::encode(prev)));
    }
    out
}

fn canonical_bytes(record: &serde_json::Value) -> String {
    let order: &[&str] = match record["kind"].as_str().unwrap() {
        "checkpoint" => &["seq", "time", "kind", "head", "signer", "signature", "prev"],
        "start" => &["seq", "time", "kind", "gatewayVersion", "prev"],
        _ => &[
            "seq",
            "time",
            "kind",
            "caller",
            "client",
            "provider",
            "api",
            "method",
            "path",
            "status",
            "requestBytes",
            "responseBytes",
            "durationMicros",
            "prev",
        ],
    };
    let fields: Vec<String> =
        order.iter().map(|k| format!("{}:{}", serde_json::to_string(k).unwrap(), record[*k])).collect();
    format!("{{{}}}", fields.join(","))
}

#[tokio::test]
async fn the_probes_answer_live_and_ready_and_unready_while_draining_and_metrics_count() {
    let h =
        Harness::start_with(&[], None, |settings| settings.health_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let mut h = h;
    let health = h.gateway().health_listen.unwrap();
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(health).await.unwrap();
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).await.unwrap();
        answer
    };
    assert!(get("/livez").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));

    // A slow exchange in flight keeps the drain going; meanwhile the gateway is not ready.
    let finance = client_cert(&h.province.finance, "budget-portal");
    replace_file(&h.routes_path(), &routes_json(h.upstream, &[&finance.identity]));
    let config = client_config(&h.province.trust(), Some(&finance));
    let addr = h.gateway().listen;
    h.eventually("the grant", async || send(addr, config.clone(), &land("/"), &[]).await.unwrap().status == 200).await;
    // The metrics count exchanges by status, refusals by reason, and requests by the route they
    // matched (labels from the route table), outcome and status: a granted call, a 403 and a 429
    // each move their own series; a path that names no API is `unrouted`, whatever it says.
    assert!(send(addr, client_config(&h.province.trust(), None), &land("/"), &[]).await.is_err());
    let other = client_config(&h.province.trust(), Some(&client_cert(&h.province.finance, "tax-portal")));
    assert_eq!(send(addr, other, &land("/"), &[]).await.unwrap().status, StatusCode::FORBIDDEN);
    let limited = format!("/{PROVIDER}/limited/x");
    for _ in 0..2 {
        assert_eq!(send(addr, config.clone(), &limited, &[]).await.unwrap().status, StatusCode::OK);
    }
    assert_eq!(send(addr, config.clone(), &limited, &[]).await.unwrap().status, StatusCode::TOO_MANY_REQUESTS);
    let invented = format!("/{PROVIDER}/no-such-api-{}/x", std::process::id());
    assert_eq!(send(addr, config.clone(), &invented, &[]).await.unwrap().status, StatusCode::NOT_FOUND);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = get("/metrics").await;
    let provider = PROVIDER;
    for expected in [
        "lgsp_gateway_exchanges_total{status=\"200\"}".to_owned(),
        "lgsp_gateway_refusals_total{reason=\"HandshakeRefused\"} 1".to_owned(),
        "lgsp_gateway_tls_handshake_failures_total{reason=\"NoCertificate\"} 1".to_owned(),
        "lgsp_gateway_connections{listener=\"mutual\"}".to_owned(),
        "lgsp_gateway_body_budget_free_bytes{listener=\"request\"} 50331648".to_owned(),
        format!(
            "lgsp_gateway_requests_total{{provider=\"{provider}\",api=\"land-records\",outcome=\"provider\",status=\"200\"}}"
        ),
        format!(
            "lgsp_gateway_requests_total{{provider=\"{provider}\",api=\"land-records\",outcome=\"not-granted\",status=\"403\"}}"
        ),
        format!(
            "lgsp_gateway_requests_total{{provider=\"{provider}\",api=\"limited\",outcome=\"provider\",status=\"200\"}} 2"
        ),
        format!(
            "lgsp_gateway_requests_total{{provider=\"{provider}\",api=\"limited\",outcome=\"rate-limited\",status=\"429\"}} 1"
        ),
        "lgsp_gateway_requests_total{provider=\"unrouted\",api=\"unrouted\",outcome=\"no-such-api\",status=\"404\"} 1"
            .to_owned(),
        format!("lgsp_gateway_request_duration_seconds_count{{provider=\"{provider}\",api=\"limited\"}} 3"),
        "lgsp_gateway_route_table_generation ".to_owned(),
        "lgsp_gateway_route_table_age_seconds ".to_owned(),
        "lgsp_gateway_certificate_not_after_seconds ".to_owned(),
        "lgsp_gateway_audit_records_total ".to_owned(),
        "lgsp_gateway_audit_write_failures_total 0".to_owned(),
        "lgsp_gateway_audit_unsigned_records ".to_owned(),
        "lgsp_gateway_audit_seconds_since_checkpoint ".to_owned(),
    ] {
        assert!(metrics.contains(&expected), "{expected} not in {metrics}");
    }
    assert!(!metrics.contains("no-such-api-"), "a label taken from the request path: {metrics}");
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    let slow = tokio::spawn(async move { send(addr, config, &land("/slow"), &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(h.gateway.take().unwrap().shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let draining = get("/readyz").await;
    assert!(draining.starts_with("HTTP/1.1 503") && draining.contains("shutting down"), "{draining}");
    assert!(get("/livez").await.starts_with("HTTP/1.1 200"));
    assert_eq!(slow.await.unwrap().unwrap().status, 200, "the request in flight finished");
    shutdown.await.unwrap();
}
