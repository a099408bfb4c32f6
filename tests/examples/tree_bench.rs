//! The benchmark behind `cargo xtask bench tree`: `kubectl govpaas tree` over 4,000 Tenants on a
//! control plane of its own, against the one list it must do, measured in the same run.
//!
//! The Tenants are a national cluster's shape: 34 provinces, each with 20 departments and 96 or
//! 97 communes (34 × 21 + 3,286 = 4,000), created directly by this process (kube client, 32
//! requests in flight) — no operator runs. Their statuses are written directly too (the status
//! subresource, as the operator would write them: Ready, the quota carved down the tree, some of
//! it in use), so the plugin draws the same tree it would draw over a converged cluster.
//!
//! Timed, each 7 times after one warm-up run, median reported, every process's stdout read
//! through a pipe: the release `kubectl-govpaas tree` (its table) and `tree -o json`;
//! `kubectl get tenants -o json` (the same list, decoded and printed by kubectl); and `kubectl get
//! --raw` of the list (the API server's answer alone, not decoded). Prints one `BENCH-RESULT
//! {json}` line for `cargo xtask bench tree`.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use govpaas_crds::Tenant;
use govpaas_tests::operator;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const PROVINCES: usize = 34;
const DEPARTMENTS: usize = 20;
const TENANTS: usize = 4_000;
const IN_FLIGHT: usize = 32;
const RUNS: usize = 7;

/// One agency to create.
struct Agency {
    name: String,
    code: String,
    level: &'static str,
    parent: Option<String>,
    children: Vec<String>,
}

/// A quota per level: (cpu, memory GiB, storage GiB, pods, services, publicHosts, lgspApis).
fn quota_of(level: &str) -> [i64; 7] {
    match level {
        "Province" => [400, 800, 4_000, 4_000, 800, 200, 400],
        "Department" => [4, 8, 50, 40, 10, 2, 5],
        _ => [1, 2, 10, 10, 3, 1, 2],
    }
}

fn quantities(values: [i64; 7]) -> Value {
    json!({
        "cpu": values[0].to_string(), "memory": format!("{}Gi", values[1]), "storage": format!("{}Gi", values[2]),
        "pods": values[3].to_string(), "services": values[4].to_string(),
        "publicHosts": values[5].to_string(), "lgspApis": values[6].to_string(),
    })
}

/// The same in `spec.quota`'s form: counts are integers there, quantities in status.
fn spec_quota(values: [i64; 7]) -> Value {
    json!({
        "cpu": values[0].to_string(), "memory": format!("{}Gi", values[1]), "storage": format!("{}Gi", values[2]),
        "pods": values[3], "services": values[4], "publicHosts": values[5], "lgspApis": values[6],
    })
}

fn agencies() -> Vec<Agency> {
    let communes = TENANTS - PROVINCES * (1 + DEPARTMENTS);
    let mut all = Vec::with_capacity(TENANTS);
    for p in 1..=PROVINCES {
        let province = format!("bench-h{p:02}");
        let code = format!("H{p:02}");
        let own_communes = communes / PROVINCES + usize::from(p <= communes % PROVINCES);
        let mut children = Vec::new();
        let mut below = Vec::new();
        for d in 1..=DEPARTMENTS {
            let name = format!("{province}-so{d:02}");
            children.push(name.clone());
            below.push(Agency {
                name,
                code: format!("{code}.{d:02}"),
                level: "Department",
                parent: Some(province.clone()),
                children: Vec::new(),
            });
        }
        for c in 1..=own_communes {
            let name = format!("{province}-xa{c:03}");
            children.push(name.clone());
            below.push(Agency {
                name,
                code: format!("{code}.{:03}", 100 + c),
                level: "Commune",
                parent: Some(province.clone()),
                children: Vec::new(),
            });
        }
        all.push(Agency { name: province, code, level: "Province", parent: None, children });
        all.extend(below);
    }
    assert_eq!(all.len(), TENANTS);
    all
}

fn manifest(agency: &Agency) -> Tenant {
    let mut spec = json!({
        "agency": {"code": agency.code, "displayName": format!("Cơ quan {} ({})", agency.code, agency.level), "level": agency.level},
        "admins": {"users": [format!("cntt.{}@bench.gov.vn", agency.name)]},
        "quota": spec_quota(quota_of(agency.level)),
    });
    if let Some(parent) = &agency.parent {
        spec["parent"] = json!(parent);
    }
    serde_json::from_value(json!({
        "apiVersion": "govpaas.io/v1alpha1", "kind": "Tenant",
        "metadata": {"name": agency.name, "labels": {"govpaas.io/bench": "tree"}},
        "spec": spec,
    }))
    .expect("a Tenant")
}

/// The status the operator writes once a Tenant converged: Ready, its quota carved (children's
/// out of its own), a fifth of its own share in use.
fn status(agency: &Agency, now: &str) -> Value {
    let hard = quota_of(agency.level);
    let mut children = [0i64; 7];
    for child in &agency.children {
        let level = if child.contains("-so") { "Department" } else { "Commune" };
        for (sum, value) in children.iter_mut().zip(quota_of(level)) {
            *sum += value;
        }
    }
    let own: Vec<i64> = hard.iter().zip(children).map(|(h, c)| h - c).collect();
    let used: Vec<i64> = own.iter().map(|o| o / 5).collect();
    let array = |v: &[i64]| -> [i64; 7] { v.try_into().expect("seven resources") };
    json!({
        "status": {
            "observedGeneration": 1,
            "conditions": [{
                "type": "Ready", "status": "True", "reason": "Provisioned",
                "message": "namespaces, quota, network policies and role bindings are applied",
                "lastTransitionTime": now, "observedGeneration": 1
            }],
            "domain": format!("{}.bench.gov.vn", agency.name),
            "namespaces": [agency.name],
            "children": agency.children,
            "quota": {
                "hard": quantities(hard),
                "children": quantities(children),
                "own": quantities(array(&own)),
                "used": quantities(array(&used)),
            },
        }
    })
}

/// Runs `requests` with at most IN_FLIGHT at once.
async fn in_flight<F>(requests: Vec<F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for request in requests {
        while set.len() >= IN_FLIGHT {
            set.join_next().await.expect("a task").expect("a request");
        }
        set.spawn(request);
    }
    while let Some(done) = set.join_next().await {
        done.expect("a request");
    }
}

/// The median wall time of `RUNS` runs of `command` (after one warm-up), and the last stdout.
fn time(what: &str, mut command: impl FnMut() -> Command) -> (f64, String) {
    let mut samples = Vec::new();
    let mut last = String::new();
    for run in 0..=RUNS {
        let start = Instant::now();
        let out = command().stdout(Stdio::piped()).stderr(Stdio::piped()).output().expect("running a command");
        let elapsed = start.elapsed().as_secs_f64();
        assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
        if run > 0 {
            samples.push(elapsed);
        }
        last = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    eprintln!("{what}: median {median:.3} s of {samples:.3?}");
    (median, last)
}

#[tokio::main]
async fn main() {
    let private = govpaas_tests::private_cluster("bench-tree");
    let cluster = private.cluster;
    // The CRDs and admission policies, as a real install has them.
    operator::install_chart(cluster);
    let plugin = xtask::install::build_binary("kubectl-govpaas", "operator", xtask::install::Profile::Release)
        .unwrap_or_else(|err| panic!("{err:#}"));
    let client = cluster.client().await;
    let api: Api<Tenant> = Api::all(client);
    let agencies = Arc::new(agencies());

    let start = Instant::now();
    let creates = (0..agencies.len())
        .map(|i| {
            let (api, agencies) = (api.clone(), agencies.clone());
            async move {
                api.create(&PostParams::default(), &manifest(&agencies[i]))
                    .await
                    .unwrap_or_else(|e| panic!("creating {}: {e}", agencies[i].name));
            }
        })
        .collect();
    in_flight(creates).await;
    let create_seconds = start.elapsed().as_secs_f64();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let start = Instant::now();
    let statuses = (0..agencies.len())
        .map(|i| {
            let (api, agencies, now) = (api.clone(), agencies.clone(), now.clone());
            async move {
                let agency = &agencies[i];
                api.patch_status(&agency.name, &PatchParams::default(), &Patch::Merge(status(agency, &now)))
                    .await
                    .unwrap_or_else(|e| panic!("the status of {}: {e}", agency.name));
            }
        })
        .collect();
    in_flight(statuses).await;
    let status_seconds = start.elapsed().as_secs_f64();
    eprintln!("created {TENANTS} Tenants in {create_seconds:.1} s, their statuses in {status_seconds:.1} s");

    let kubeconfig = cluster.kubeconfig.clone();
    let (tree_seconds, tree) = time("kubectl govpaas tree", || {
        let mut command = Command::new(&plugin);
        command.arg("--kubeconfig").arg(&kubeconfig).arg("tree");
        command
    });
    assert!(
        tree.contains(&format!("{TENANTS} tenants: {TENANTS} ready, 0 not ready")),
        "{}",
        &tree[tree.len().saturating_sub(400)..]
    );
    assert_eq!(tree.lines().filter(|l| l.contains("bench-h")).count(), TENANTS, "one line per Tenant");
    let (tree_json_seconds, json) = time("kubectl govpaas tree -o json", || {
        let mut command = Command::new(&plugin);
        command.arg("--kubeconfig").arg(&kubeconfig).args(["tree", "-o", "json"]);
        command
    });
    let report: Value = serde_json::from_str(&json).expect("the tree as JSON");
    assert_eq!(report["agencies"].as_array().map(Vec::len), Some(PROVINCES));
    let (kubectl_seconds, list) = time("kubectl get tenants -o json", || {
        let mut command = cluster.kubectl();
        command.args(["get", "tenants", "-o", "json"]);
        command
    });
    let listed: Value = serde_json::from_str(&list).expect("kubectl's list");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(TENANTS));
    let (raw_seconds, raw) = time("kubectl get --raw (the list)", || {
        let mut command = cluster.kubectl();
        command.args(["get", "--raw", "/apis/govpaas.io/v1alpha1/tenants"]);
        command
    });
    let list_bytes = raw.len();

    let result = json!({
        "tenants": TENANTS,
        "provinces": PROVINCES,
        "runs": RUNS,
        "create_seconds": create_seconds,
        "status_seconds": status_seconds,
        "in_flight": IN_FLIGHT,
        "list_bytes": list_bytes,
        "tree_seconds": tree_seconds,
        "tree_json_seconds": tree_json_seconds,
        "kubectl_get_json_seconds": kubectl_seconds,
        "raw_list_seconds": raw_seconds,
        "tree_to_kubectl_ratio": tree_seconds / kubectl_seconds,
        "tree_to_raw_list_ratio": tree_seconds / raw_seconds,
        "tree_json_to_kubectl_ratio": tree_json_seconds / kubectl_seconds,
        "under_a_second": tree_seconds < 1.0,
    });
    println!("BENCH-RESULT {result}");
    drop(private);
}
