//! The gateway binary under crash and scale: kill -9 under load loses no answered exchange from
//! its audit, and two replicas together hold one consumer to the provider's rate limit.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::process::{BINARY, GatewayFiles, GatewayProcess};
use common::*;

/// Requests `paths` one after the other over one kept connection (HTTP/1.1), until an error
/// (the gateway killed); the paths answered 200.
async fn load(addr: SocketAddr, config: Arc<rustls::ClientConfig>, worker: usize, stop: Instant) -> Vec<String> {
    let mut answered = Vec::new();
    let Ok(stream) = connect(addr, config).await else { return answered };
    let Ok((mut sender, connection)) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await
    else {
        return answered;
    };
    tokio::spawn(connection);
    for n in 0.. {
        if Instant::now() > stop {
            break;
        }
        let path = format!("/{PROVIDER}/land-records/load-{worker}-{n}");
        let request = http::Request::get(&path)
            .header("host", GATEWAY_HOST)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        match sender.send_request(request).await {
            Ok(response) if response.status() == 200 => answered.push(path),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    answered
}

fn verify(files: &GatewayFiles) -> (bool, String) {
    let output = std::process::Command::new(BINARY)
        .args(["audit", "verify", "--log"])
        .arg(&files.dir)
        .arg("--certificate")
        .arg(files.dir.join("tls.crt"))
        .arg("--ca")
        .arg(files.dir.join("ca.crt"))
        .output()
        .unwrap();
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

fn audited_paths(dir: &Path) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if !entry.file_name().to_string_lossy().contains(".jsonl") {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            if record["kind"] == "exchange" && record["status"] == 200 {
                paths.insert(record["path"].as_str().unwrap().to_owned());
            }
        }
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_answered_exchange_and_the_log_verifies_after_restart() {
    let nginx = Nginx::start();
    let province = Province::new();
    let finance = client_cert(&province.finance, "budget-portal");
    let dir = tempfile::tempdir().unwrap();
    let files = GatewayFiles::write(dir.path(), &province, &routes_json(nginx.addr, &[&finance.identity]));
    let resolve = [("land.stnmt.svc", nginx.addr)];
    // A small rotation size, so the crash also lands among rotated files.
    let options = ["--checkpoint-seconds=1", "--audit-max-file-bytes=65536"];
    let mut gateway = GatewayProcess::start(&files, &resolve, &options);
    let config = client_config(&province.trust(), Some(&finance));

    let stop = Instant::now() + Duration::from_secs(30);
    let workers: Vec<_> =
        (0..8).map(|worker| tokio::spawn(load(gateway.listen, config.clone(), worker, stop))).collect();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    gateway.kill_9();
    let mut answered = Vec::new();
    for worker in workers {
        answered.extend(worker.await.unwrap());
    }
    assert!(answered.len() > 100, "the load was served before the crash: {} answers", answered.len());

    // Restarted on the same files: the chain continues, a clean stop signs it.
    let mut restarted = GatewayProcess::start(&files, &resolve, &options);
    let after =
        send(restarted.listen, config.clone(), &format!("/{PROVIDER}/land-records/after-restart"), &[]).await.unwrap();
    assert_eq!(after.status, 200);
    restarted.stop();

    let (ok, report) = verify(&files);
    assert!(ok, "audit verify after kill -9: {report}");
    let audited = audited_paths(dir.path());
    let missing: Vec<_> = answered.iter().filter(|path| !audited.contains(*path)).collect();
    assert!(missing.is_empty(), "{} answered exchanges have no record: {missing:?}", missing.len());
    let rotated = std::fs::read_dir(dir.path()).unwrap().flatten().filter(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("audit.jsonl.")
    });
    eprintln!(
        "kill -9 after {} answered exchanges: all recorded, {} rotated files, {report}",
        answered.len(),
        rotated.count()
    );
}

/// A route `quota` of 60 requests per minute with a burst of 10, granted to `consumer`.
fn quota_routes(consumer: &str) -> String {
    serde_json::json!({
        "schema": "govpaas.io/lgsp-routes/v1",
        "source": {"namespace": "stnmt", "name": "land", "uid": "u1"},
        "agencyCode": PROVIDER,
        "routes": [{
            "api": "quota", "pathPrefix": format!("/{PROVIDER}/quota/"),
            "upstream": {"namespace": "stnmt", "service": "land", "port": 8080, "path": "/api/v1"},
            "rateLimit": {"requestsPerMinute": 60, "burst": 10}, "openData": false,
            "consumers": [{"identity": consumer, "agencyCode": "H49.12", "service": "x"}],
        }],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_admit_one_consumer_no_more_than_its_limit() {
    let nginx = Nginx::start();
    let province = Province::new();
    let finance = client_cert(&province.finance, "budget-portal");
    let dir = tempfile::tempdir().unwrap();
    let files = GatewayFiles::write(dir.path(), &province, &quota_routes(&finance.identity));
    let resolve = [("land.stnmt.svc", nginx.addr)];
    let config = client_config(&province.trust(), Some(&finance));

    // Each replica logs to its own file, as each Pod has its own volume.
    let replica = |name: &str| {
        let log = dir.path().join(format!("{name}.jsonl"));
        GatewayProcess::start(&files, &resolve, &["--replicas=2", &format!("--audit-log={}", log.display())])
    };
    let (first, second) = (replica("first"), replica("second"));
    // 40 requests alternating between the replicas, as the Service would spread them, within
    // a second (the limit refills one request per second: at most one more).
    let started = Instant::now();
    let mut admitted = 0;
    for n in 0..40 {
        let addr = if n % 2 == 0 { first.listen } else { second.listen };
        let answer = send(addr, config.clone(), &format!("/{PROVIDER}/quota/{n}"), &[]).await.unwrap();
        match answer.status.as_u16() {
            200 => admitted += 1,
            429 => assert!(answer.body["detail"].as_str().unwrap().contains("divided among 2"), "{:?}", answer.body),
            other => panic!("{other}: {:?}", answer.body),
        }
    }
    let elapsed = started.elapsed();
    // Each replica admits a burst of 5 and 30 a minute (one every 2 s): 10 together, plus one
    // refill per replica for every 2 s the requests took.
    let refills = 2 * (elapsed.as_secs() / 2) as usize;
    eprintln!("two replicas admitted {admitted} of 40 in {elapsed:?} (burst 10, 60/min)");
    assert!((10..=10 + refills).contains(&admitted), "admitted {admitted} in {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_table_removed_from_the_routes_directory_stops_being_served() {
    let nginx = Nginx::start();
    let province = Province::new();
    let finance = client_cert(&province.finance, "budget-portal");
    let dir = tempfile::tempdir().unwrap();
    let files = GatewayFiles::write(dir.path(), &province, &routes_json(nginx.addr, &[&finance.identity]));
    let gateway = GatewayProcess::start(&files, &[("land.stnmt.svc", nginx.addr)], &["--reload-seconds=1"]);
    let config = client_config(&province.trust(), Some(&finance));
    let path = format!("/{PROVIDER}/land-records/x");
    assert_eq!(send(gateway.listen, config.clone(), &path, &[]).await.unwrap().status, 200);

    std::fs::remove_file(dir.path().join("routes/land.json")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send(gateway.listen, config.clone(), &path, &[]).await.unwrap();
        if answer.status == 404 {
            assert_eq!(answer.body["title"], "No such API");
            break;
        }
        assert!(Instant::now() < deadline, "the removed table is still served: {:?}", answer.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
