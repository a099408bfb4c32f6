//! Operator crashes, on a control plane of its own: nothing lost, nothing half-done. (Restarts of
//! the API server and etcd are `control_plane_restart.rs`, a binary and control plane of their
//! own: a test binary's tests run side by side, and one killing the API server under the other
//! failed it in CI.)
//!
//! A synthetic province (a People's Committee, departments, communes, public-service units, and
//!    a department whose units ask for more CPU than it has) converges while the operator is
//!    killed with SIGKILL at random moments, at least 20 times, and restarted each time. Meanwhile
//!    the quota ledger is sampled every second: at no sample may an agency's ResourceQuotas plus
//!    its descendants' exceed its quota. At the end every object is Ready (the contended units:
//!    exactly as many as fit, the others refused with `QuotaExceeded`), no govpaas object lacks its
//!    owner, and no certificate or volume was lost or re-issued (each is recorded when first seen
//!    and compared at the end, after one more kill of the converged operator).
//!
//! The moments of the kills come from a seed, printed at the start; `GOVPAAS_FAULT_SEED` replays
//! a run. `GOVPAAS_FAULT_TENANTS`, `GOVPAAS_FAULT_SERVICES`, `GOVPAAS_FAULT_KILLS` and
//! `GOVPAAS_FAULT_LEADER_ELECT` size phase 1 (`cargo xtask faults` runs it large and records the
//! figures in docs/resilience.md, from the JSON this writes to `GOVPAAS_FAULT_REPORT`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use govpaas_tests::faults::{self, FaultyOperator, Province, Rng, Tracker};
use govpaas_tests::operator::{self, reconciles};
use govpaas_tests::{Cluster, private_cluster, unique_name};
use kube::Client;
use xtask::faults::Report;

/// How long the bounded form's province may take to converge after the last kill.
const CONVERGE: Duration = Duration::from_secs(300);

/// Waits until `province` has converged, or `timeout`; restarts the operator whenever it exited
/// on its own (recorded as a crash). Returns what has not converged.
async fn converge(
    client: &Client,
    province: &Province,
    operator: &mut FaultyOperator,
    timeout: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if !operator.check_alive() {
            operator.restart();
        }
        let problems = match province.not_converged(client).await {
            Ok(problems) => problems,
            Err(err) => vec![format!("listing the province: {err}")],
        };
        if problems.is_empty() || Instant::now() > deadline {
            return problems;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the operator (a process started afresh) has finished as many reconciles of each
/// controller as the province has objects of its kind (less the `unapplied` services): its
/// start-up resync has looked at them.
async fn start_up_resync(operator: &mut FaultyOperator, province: &Province, unapplied: &[String], timeout: Duration) {
    let count = |kind: &str| {
        let names: BTreeSet<(&str, &str)> = province
            .services
            .iter()
            .filter(|plan| {
                plan.describe().starts_with(&format!("{kind} "))
                    && !unapplied.iter().any(|u| u.starts_with(&format!("{} (", plan.describe())))
            })
            .map(|plan| (plan.tenant.as_str(), plan.name.as_str()))
            .collect();
        names.len() as f64
    };
    let expected = [
        ("tenant", province.agencies.len() as f64),
        ("portal", count("Portal")),
        ("document-service", count("DocumentService")),
        ("data-sharing", count("DataSharingService")),
    ];
    let deadline = Instant::now() + timeout;
    loop {
        operator.check_alive();
        let metrics = operator.try_metrics().await.unwrap_or_default();
        let behind: Vec<String> = expected
            .iter()
            .filter(|(controller, objects)| reconciles(&metrics, controller) < *objects)
            .map(|(controller, objects)| format!("{controller}: {} of {objects}", reconciles(&metrics, controller)))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted operator's start-up resync: {behind:?}\n{}",
            operator.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Phase 1: the province under operator kills. Returns the report, and the assertions' failures.
async fn province_under_kills(cluster: &'static Cluster, client: &Client) -> (Report, Vec<String>) {
    let seed = faults::seed();
    let tenants = faults::env_or("GOVPAAS_FAULT_TENANTS", 20);
    let services = faults::env_or("GOVPAAS_FAULT_SERVICES", 30);
    let kills = faults::env_or("GOVPAAS_FAULT_KILLS", 20);
    let leader_elect = std::env::var("GOVPAAS_FAULT_LEADER_ELECT").is_ok_and(|v| v == "true");
    eprintln!(
        "fault injection: seed {seed} (GOVPAAS_FAULT_SEED={seed} replays it), {tenants} tenants, {services} services, \
         {kills} kills, leader election {leader_elect}"
    );
    let scope = unique_name("fi");
    let province = Province::new(&scope, &scope, "H17", tenants, services);
    let mut operator = FaultyOperator::start(cluster, &scope, leader_elect);
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    // The agencies arrive in waves, one before each kill (parents first), so that every kill
    // falls while something is being provisioned.
    let waves: Vec<&[faults::Agency]> =
        province.agencies.chunks(province.agencies.len().div_ceil(kills.max(1))).collect();
    faults::apply_some_tenants(client, &province, waves[0]).await.expect("applying the province's Tenants");

    // Services go in as their agencies' namespaces appear; the ledger, certificates and volumes are
    // sampled every second; both until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let applier = {
        let (client, province) = (client.clone(), province.clone());
        tokio::spawn(async move {
            faults::apply_services(&client, &province, Instant::now() + CONVERGE + Duration::from_secs(600)).await
        })
    };
    let sampler = {
        let (client, province, stop) = (client.clone(), province.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tracker = Tracker::default();
            let (mut samples, mut max_fill, mut violations) = (0usize, 0f64, Vec::<String>::new());
            let mut errors = 0usize;
            while !stop.load(Ordering::Relaxed) {
                match faults::sample_ledger(&client, &province).await {
                    Ok(sample) => {
                        samples += 1;
                        max_fill = max_fill.max(sample.max_fill);
                        for v in sample.violations {
                            // One line per agency and resource: the first sample that showed it.
                            let key = |v: &str| v.split(" at resourceVersion").next().unwrap_or_default().to_owned();
                            if !violations.iter().any(|seen| key(seen) == key(&v)) {
                                eprintln!("LEDGER VIOLATION: {v}");
                                violations.push(v);
                            }
                        }
                    }
                    Err(_) => errors += 1,
                }
                if tracker.sample(&client, &province).await.is_err() {
                    errors += 1;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (tracker, samples, max_fill, violations, errors)
        })
    };

    // The kills: at a random moment after each start (after it could take the Lease, with leader
    // election), SIGKILL, a random pause, a new process.
    let lease_wait = if leader_elect { Duration::from_secs(11) } else { Duration::ZERO };
    for kill in 1..=kills {
        // Wave 0 went in before the first kill; wave k - 1 goes in before kill k.
        if kill > 1
            && let Some(wave) = waves.get(kill - 1)
        {
            faults::apply_some_tenants(client, &province, wave).await.expect("applying the province's Tenants");
        }
        let wait = lease_wait + rng.duration(Duration::from_millis(300), Duration::from_secs(6));
        tokio::time::sleep(wait).await;
        operator.kill();
        tokio::time::sleep(rng.duration(Duration::ZERO, Duration::from_millis(500))).await;
        operator.restart();
        eprintln!("kill {kill}/{kills} after {:.1}s (t = {:.0}s)", wait.as_secs_f64(), started.elapsed().as_secs_f64());
    }
    let last_kill = Instant::now();
    let timeout = CONVERGE + Duration::from_secs(2 * (tenants + services) as u64);
    let mut not_converged = converge(client, &province, &mut operator, timeout).await;
    let seconds_to_converge = started.elapsed().as_secs_f64();
    let seconds_after_last_kill = last_kill.elapsed().as_secs_f64();
    eprintln!("converged {seconds_after_last_kill:.0}s after the last kill ({seconds_to_converge:.0}s in all)");
    let unapplied = applier.await.expect("the applier task");
    not_converged.extend(unapplied.iter().map(|u| format!("never applied: {u}")));

    // One more kill of the converged operator: a restart over a converged province must re-issue
    // nothing. Its start-up resync runs before the final comparison: the new process's reconcile
    // counters (from zero) count a finished reconcile, writes included, of every object of each kind.
    operator.kill();
    operator.restart();
    start_up_resync(&mut operator, &province, &unapplied, Duration::from_secs(120) + lease_wait).await;
    let after_restart = converge(client, &province, &mut operator, Duration::from_secs(120)).await;
    not_converged.extend(after_restart.into_iter().map(|p| format!("after the final restart: {p}")));
    operator.check_alive();

    stop.store(true, Ordering::Relaxed);
    let (mut tracker, samples, max_fill, violations, sample_errors) = sampler.await.expect("the sampler task");
    let (certificates_reissued, volumes_changed) =
        tracker.verify(client, &province).await.expect("reading certificates and volumes");
    let orphans = faults::orphans(client, &province).await.expect("looking for orphans");
    eprintln!("ledger samples: {samples} ({sample_errors} failed while the API server was busy)");

    let report = Report {
        seed,
        tenants: province.agencies.len(),
        services: province.services.len(),
        kills: kills + 1,
        crashes: operator.exits.len(),
        leader_elect,
        seconds_to_converge,
        seconds_after_last_kill,
        orphans,
        certificates_tracked: tracker.certificates(),
        certificates_reissued,
        volumes_tracked: tracker.volumes(),
        volumes_changed,
        ledger_samples: samples,
        ledger_max_fill: max_fill,
        ledger_violations: violations,
        not_converged,
        control_plane: Vec::new(),
        machine: xtask::faults::machine(),
    };
    eprintln!(
        "fault injection (seed {seed}): {} kills survived, {} crashes, converged in {:.0}s ({:.0}s after the last kill); \
         {} certificates and {} volumes tracked; {} ledger samples, fullest parent {:.3}",
        report.kills,
        report.crashes,
        report.seconds_to_converge,
        report.seconds_after_last_kill,
        report.certificates_tracked,
        report.volumes_tracked,
        report.ledger_samples,
        report.ledger_max_fill,
    );

    let mut failures = Vec::new();
    let mut check = |ok: bool, what: &str, items: &[String]| {
        if !ok {
            failures.push(format!("{what}: {}", faults::report_list(items)));
        }
    };
    check(report.not_converged.is_empty(), "not converged", &report.not_converged);
    check(report.orphans.is_empty(), "orphans", &report.orphans);
    check(report.certificates_reissued.is_empty(), "certificates re-issued or lost", &report.certificates_reissued);
    check(report.volumes_changed.is_empty(), "volumes changed or lost", &report.volumes_changed);
    check(report.ledger_violations.is_empty(), "quota ledger oversubscribed", &report.ledger_violations);
    check(operator.exits.is_empty(), "the operator exited on its own", &operator.exits);
    check(samples >= 10, "too few ledger samples to mean anything", &[format!("{samples} samples")]);
    check(report.certificates_tracked > 0 && report.volumes_tracked > 0, "nothing was tracked", &[]);
    if !failures.is_empty() {
        eprintln!("--- operator log ({}) ---\n{}", operator.log_path().display(), operator.log_tail(80));
    }
    (report, failures)
}

/// Phase 1, which CI runs: the province converges through the operator's SIGKILLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_operator_dies_again_and_again() {
    let private = private_cluster("fault-injection");
    let cluster = private.cluster;
    operator::install_chart(cluster);
    operator::ensure_platform(cluster);
    let client = cluster.client().await;
    let (report, failures) = province_under_kills(cluster, &client).await;
    faults::write_report(&report);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
