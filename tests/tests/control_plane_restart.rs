//! Phase 2 of the fault injection (phase 1 is `fault_injection.rs`), on a control plane of its own
//! (it kills the API server and etcd, which no other test may share): the API server, then etcd,
//! is killed with SIGKILL and restarted while an operator (with leader election, as the chart runs
//! it; a fresh one for each) reconciles a new batch; it is never restarted, and converges that
//! batch and one applied after the restart. `cargo xtask faults --control-plane` runs it and
//! records its summary in docs/resilience.md (from the JSON written to `GOVPAAS_FAULT_REPORT`).

use std::time::{Duration, Instant};

use govpaas_tests::faults::{self, FaultyOperator, Province};
use govpaas_tests::operator::{self, leading, reconciles};
use govpaas_tests::{Cluster, private_cluster, unique_name};
use kube::Client;
use xtask::faults::Report;

/// How long the operator may take, once the API server or etcd is back, to converge a small batch
/// applied before the kill and one applied after (its watches' backoff is at most 30 s).
const RECOVER: Duration = Duration::from_secs(150);

/// Phase 2: kills `component` with SIGKILL while the operator reconciles a new batch, restarts it
/// after `down`, and checks that the operator (never restarted) converges that batch and one
/// applied after the restart.
async fn component_restart(
    cluster: &'static Cluster,
    client: &Client,
    operator: &mut FaultyOperator,
    scope: &str,
    component: &str,
    codes: [&str; 2],
) -> (String, Vec<String>) {
    let short = component.trim_start_matches("kube-");
    let before = Province::new(scope, &format!("{scope}-{short}-a"), codes[0], 8, 6);
    let after = Province::new(scope, &format!("{scope}-{short}-b"), codes[1], 8, 6);
    faults::apply_tenants(client, &before).await.expect("applying the first batch");
    let applier = {
        let (client, before) = (client.clone(), before.clone());
        tokio::spawn(async move {
            faults::apply_services(&client, &before, Instant::now() + Duration::from_secs(400)).await
        })
    };
    // In the middle of the batch's reconciles: the kill lands once the operator (fresh, its
    // counter at zero) has finished some of them, while the applier is still writing services.
    let reconciling = Instant::now() + Duration::from_secs(60);
    loop {
        let finished = operator.try_metrics().await.map(|m| reconciles(&m, "tenant")).unwrap_or_default();
        if finished >= 1.0 {
            break;
        }
        assert!(Instant::now() < reconciling, "the operator reconciled none of the batch:\n{}", operator.log_tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopped = tokio::task::spawn_blocking({
        let component = component.to_owned();
        move || xtask::faults::kill_component(&component)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("killing {component}: {e:#}"));
    let killed = Instant::now();
    // The outage itself: the component stays down for 5 s (the scenario, not a wait for the operator).
    tokio::time::sleep(Duration::from_secs(5)).await;
    xtask::faults::start_component(&stopped).unwrap_or_else(|e| panic!("starting {component} again: {e:#}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !faults::readyz(cluster) {
        assert!(Instant::now() < deadline, "{component} did not come back within 120 s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let away = killed.elapsed().as_secs_f64();
    eprintln!("{component}: killed, back and ready after {away:.1}s");

    // A restarted API server answers /readyz before it has loaded everything: for a few seconds
    // admission policies whose parameters are custom resources, and RBAC, may refuse requests. A
    // user retries, and so does the test (bounded; each refusal printed).
    let served = Instant::now() + Duration::from_secs(60);
    loop {
        match faults::apply_tenants(client, &after).await {
            Ok(()) => break,
            Err(err) if Instant::now() < served => {
                let message = err.to_string();
                let short: String = message.chars().take(240).collect();
                eprintln!("{component}: applying the batch after the restart: {short}; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => panic!("applying the batch after the restart: {err}"),
        }
    }
    let back = Instant::now();
    let applier_after = {
        let (client, after) = (client.clone(), after.clone());
        tokio::spawn(async move { faults::apply_services(&client, &after, back + RECOVER).await })
    };
    let mut problems = Vec::new();
    loop {
        problems.clear();
        operator.check_alive();
        for province in [&before, &after] {
            match province.not_converged(client).await {
                Ok(p) => problems.extend(p),
                Err(err) => problems.push(format!("listing: {err}")),
            }
        }
        if problems.is_empty() || back.elapsed() > RECOVER {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let summary = format!(
        "{component}: away {away:.0} s; {} {:.0} s after it was back",
        if problems.is_empty() { "both batches converged" } else { "NOT CONVERGED" },
        back.elapsed().as_secs_f64(),
    );
    eprintln!("{summary}");
    // What they did not apply is missing above already.
    applier.abort();
    applier_after.abort();
    let mut failures = Vec::new();
    if !problems.is_empty() {
        failures.push(format!(
            "{}s after {component} was back, the operator had not converged: {}",
            RECOVER.as_secs(),
            faults::report_list(&problems)
        ));
    }
    if !operator.exits.is_empty() || operator.starts != 1 {
        failures.push(format!(
            "the operator did not ride out the {component} restart: it was started {} times; {}",
            operator.starts,
            faults::report_list(&operator.exits)
        ));
    }
    let summary = if operator.exits.is_empty() { summary } else { format!("{summary}; the operator exited") };
    (summary, failures)
}

/// Phase 2: the API server, then etcd, restarted under a running operator, which must converge a
/// batch applied before and one applied after without being restarted. It found the tenant
/// controller's stall after an API server restart (docs/resilience.md, "What it found").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_recovers_when_the_api_server_or_etcd_restarts() {
    let private = private_cluster("fault-injection-control-plane");
    let cluster = private.cluster;
    operator::install_chart(cluster);
    operator::ensure_platform(cluster);
    let client = cluster.client().await;
    let mut report = Report::default();
    let mut failures = Vec::new();
    // A fresh operator for each component, so that one outage's damage does not hide the next's.
    for (component, codes) in [("kube-apiserver", ["H20", "H22"]), ("etcd", ["H21", "H23"])] {
        let scope = unique_name("cp");
        let mut operator = FaultyOperator::start(cluster, &scope, true);
        // It leads once its `govpaas_leader` gauge says so (it took its scope's Lease).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !operator.try_metrics().await.is_some_and(|metrics| leading(&metrics)) {
            assert!(Instant::now() < deadline, "the operator did not lead:\n{}", operator.log_tail(30));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (summary, found) = component_restart(cluster, &client, &mut operator, &scope, component, codes).await;
        report.control_plane.push(summary);
        if !found.is_empty() {
            eprintln!("--- operator log ({}) ---\n{}", operator.log_path().display(), operator.log_tail(80));
        }
        failures.extend(found);
        operator.stop();
    }
    faults::write_report(&report);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
