//! Leader election: two operator processes of one scope; only the leader reconciles; after the leader
//! is killed with SIGKILL (no Lease released), the standby takes over and reconciles a new Tenant.

use std::time::{Duration, Instant};

use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{cluster, eventually, unique_name};

const WAIT: Duration = Duration::from_secs(60);

fn tenant(name: &str, code: &str, scope_label: &str) -> String {
    format!(
        "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\n  labels:\n    {scope_label}\nspec:\n  agency:\n    code: \"{code}\"\n    displayName: \"Ủy ban nhân dân tỉnh thử nghiệm\"\n    level: Province\n  quota: {{cpu: \"2\", memory: 4Gi, storage: 10Gi, pods: 20, services: 5, publicHosts: 2, lgspApis: 2}}\n"
    )
}

fn ready(name: &str) -> Option<()> {
    let out = cluster()
        .kubectl()
        .args(["get", "tenant", name, "-o", r#"jsonpath={.status.conditions[?(@.type=="Ready")].status}"#])
        .output()
        .ok()?;
    (String::from_utf8_lossy(&out.stdout) == "True").then_some(())
}

/// Lines of a log that show a reconcile writing or finishing.
fn reconcile_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("reconciled") || l.contains("applied")).collect()
}

#[tokio::test]
async fn the_standby_takes_over_when_the_leader_dies() {
    let cluster = cluster();
    operator::install_chart(cluster);
    operator::ensure_platform(cluster);
    let scope = unique_name("failover");
    let mut first = OperatorProcess::start_replica(cluster, &scope, "a");
    eventually(WAIT, "the first replica to lead", || async {
        first.log().contains("leading: reconciling").then_some(())
    })
    .await;
    let mut second = OperatorProcess::start_replica(cluster, &scope, "b");
    eventually(WAIT, "the second replica to stand by", || async {
        second.log().contains("waiting to lead").then_some(())
    })
    .await;

    let before = format!("{scope}-before");
    cluster.apply(&tenant(&before, "H90", &first.scope_label()));
    eventually(WAIT, "the leader to reconcile the first Tenant", || async { ready(&before) }).await;
    assert!(!second.log().contains("leading: reconciling"), "the standby must not lead while the leader lives");
    assert!(reconcile_lines(&second.log()).is_empty(), "the standby reconciled: {}", second.log_tail(20));

    first.kill();
    let killed = Instant::now();
    let after = format!("{scope}-after");
    cluster.apply(&tenant(&after, "H91", &second.scope_label()));
    eventually(WAIT, "the standby to reconcile a new Tenant", || async { ready(&after) }).await;
    let took = killed.elapsed();
    eprintln!("the standby reconciled a new Tenant {:.1}s after the leader was killed", took.as_secs_f64());
    assert!(took <= Duration::from_secs(15), "took {took:?}, more than 15 s; standby log:\n{}", second.log_tail(30));

    // No object was written by both: the standby's first reconcile comes after it took the Lease.
    let log = second.log();
    let led_at = log.find("leading: reconciling").expect("the standby took the Lease");
    let first_reconcile =
        reconcile_lines(&log).first().and_then(|line| log.find(line)).expect("the standby reconciled");
    assert!(led_at < first_reconcile, "the standby reconciled before it led:\n{}", second.log_tail(40));
    assert!(second.is_running());

    for name in [&before, &after] {
        cluster.kubectl_ok(&["delete", "tenant", name, "--wait=false"]);
    }
    second.stop();
}
