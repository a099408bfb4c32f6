//! What `--audit-fsync` costs: appends exchange records to a log in `<dir>` (default: the
//! current directory; use a real disk, not tmpfs) with and without fdatasync, from 1 and from 32
//! concurrent writers, and prints records per second and latency percentiles.
//!
//! `cargo run -p govpaas-gateway --example audit_fsync_cost -- <dir>`

use std::sync::Arc;
use std::time::{Duration, Instant};

use govpaas_gateway::audit::{AuditLog, AuditSettings, Entry, Exchange};

fn exchange() -> Entry {
    Entry::Exchange(Exchange {
        caller: Some("spiffe://quangnam.gov.vn/agency/H49.12/dss/budget-portal".to_owned()),
        client: "10.42.0.17:51544".to_owned(),
        provider: Some("H49.14".to_owned()),
        api: Some("land-records".to_owned()),
        method: "GET".to_owned(),
        path: "/H49.14/land-records/parcels/7".to_owned(),
        status: 200,
        request_bytes: 0,
        response_bytes: 812,
        duration_micros: 4210,
        client_gone: false,
        package_sha256: None,
    })
}

async fn run(dir: &std::path::Path, fsync: bool, writers: usize, per_writer: usize) {
    let path = dir.join(format!("fsync-cost-{fsync}-{writers}.jsonl"));
    let _ = std::fs::remove_file(&path);
    let log = Arc::new(AuditLog::open_with(&path, AuditSettings { fsync, max_file_bytes: u64::MAX }).unwrap());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_writer);
            for _ in 0..per_writer {
                let at = Instant::now();
                log.append_durable(exchange()).await.unwrap();
                latencies.push(at.elapsed());
            }
            latencies
        }));
    }
    let mut latencies: Vec<Duration> = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "fsync {fsync:5} writers {writers:2}: {:8.0} records/s, latency p50 {:?} p99 {:?}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        at(0.5),
        at(0.99)
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::main]
async fn main() {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from).unwrap_or_else(|| ".".into());
    for writers in [1, 32] {
        for fsync in [false, true] {
            run(&dir, fsync, writers, if writers == 1 { 2000 } else { 200 }).await;
        }
    }
}
