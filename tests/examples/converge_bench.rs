//! The benchmark behind `cargo xtask bench converge`: a synthetic province converged by the
//! operator, against the limit — a raw writer applying exactly what the operator wrote — measured
//! in the same run. Two phases, each a process of its own with a control plane of its own
//! (`private_cluster` picks a cluster once per process):
//!
//! - `operator`: the release operator (the chart's credentials, every Tenant, leader election on)
//!   over a province of `--tenants` agencies and `--services` services, applied by this process as
//!   fast as the namespaces appear (32 requests in flight); timed from the first write until every
//!   Tenant, Portal, DocumentService and DataSharingService is Ready and every grant granted. Then
//!   `--quiet-seconds` of quiet (writes counted, resourceVersions compared), then a restart (SIGTERM,
//!   start): time to `/readyz`, to every object reconciled once, and the requests of its first
//!   `--restart-seconds`. The operator's requests come from its own counter
//!   (`govpaas_api_requests_total`), its memory from `/proc`. Last, every object the operator's
//!   field managers wrote is captured, pruned to the fields they own (`managedFields`), into
//!   `--capture`.
//! - `raw`: on a fresh control plane with the same chart, Platform and nodes, the same province's
//!   inputs (applied by the admin) and the captured objects (applied by server-side apply under the
//!   operator's field manager, with the operator's ServiceAccount), 32 requests in flight, in
//!   dependency order (a namespace before what is in it, an owner before what it owns: owner
//!   references are rewritten to the new uids); no reads, no status. Timed from the first write
//!   until every captured Deployment is available — what the operator's Ready waits for.
//!
//! Each phase prints one `BENCH-RESULT {json}` line; `cargo xtask bench converge` runs both and
//! writes docs/benchmarks.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use govpaas_crds::metadata::DOMAIN_ANNOTATION;
use govpaas_crds::{DataSharingService, DocumentService, Portal, Tenant};
use govpaas_tests::converge::{self, RequestTotals, WrittenObject, object_key};

use govpaas_tests::faults::{self, Province};
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, private_cluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// Requests in flight: the operator's default concurrency (8) times its four object controllers.
const IN_FLIGHT: usize = 32;
/// The scope label the province's Tenants carry (the operator runs unscoped).
const SCOPE: &str = "bench";
/// The raw writer's field manager: the operator's own.
const OPERATOR_MANAGER: &str = "govpaas.io/operator";
/// The field manager the admin applies the province's inputs with.
const INPUT_MANAGER: &str = "govpaas-bench";

#[derive(Debug, Clone)]
struct Args {
    phase: String,
    tenants: usize,
    services: usize,
    quiet_seconds: u64,
    restart_seconds: u64,
    capture: PathBuf,
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let phase = args.next().unwrap_or_else(|| panic!("usage: converge_bench operator|raw [--tenants N] …"));
    let mut parsed = Args {
        phase,
        tenants: 500,
        services: 1_500,
        quiet_seconds: 300,
        restart_seconds: 120,
        capture: xtask::paths::target_dir().join("bench-converge").join("capture.json"),
    };
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<u64>().unwrap_or_else(|_| panic!("{flag}: {value:?} is not a number"));
        match flag.as_str() {
            "--tenants" => parsed.tenants = number() as usize,
            "--services" => parsed.services = number() as usize,
            "--quiet-seconds" => parsed.quiet_seconds = number(),
            "--restart-seconds" => parsed.restart_seconds = number(),
            "--capture" => parsed.capture = PathBuf::from(&value),
            other => panic!("unknown flag {other}"),
        }
    }
    parsed
}

fn main() {
    let args = parse_args();
    // The release operator, logging at info: what production runs. Set before any thread starts.
    unsafe {
        std::env::set_var("GOVPAAS_TEST_OPERATOR_PROFILE", "release");
        std::env::set_var("GOVPAAS_TEST_OPERATOR_LOG", "info");
    }
    let private = private_cluster(&format!("bench-converge-{}", args.phase));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = match args.phase.as_str() {
        "operator" => runtime.block_on(operator_phase(private.cluster, &args)),
        "raw" => runtime.block_on(raw_phase(private.cluster, &args)),
        other => panic!("unknown phase {other:?}: operator or raw"),
    };
    println!("BENCH-RESULT {result}");
    drop(runtime);
    drop(private);
}

/// Enough kwok nodes (110 Pods each) for every Pod of the province, beside the cluster's own.
fn add_nodes(cluster: &Cluster, services: usize) -> usize {
    let nodes = services.div_ceil(50) + 1;
    let mut manifest = String::new();
    for i in 0..nodes {
        manifest.push_str(&format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: bench-node-{i}\n  annotations:\n    kwok.x-k8s.io/node: fake\n    \
             node.alpha.kubernetes.io/ttl: \"0\"\n  labels:\n    kubernetes.io/arch: amd64\n    kubernetes.io/hostname: \
             bench-node-{i}\n    kubernetes.io/os: linux\n    type: kwok\nstatus:\n  allocatable: {{cpu: \"32\", memory: \
             128Gi, pods: \"110\", ephemeral-storage: 500Gi}}\n  capacity: {{cpu: \"32\", memory: 128Gi, pods: \"110\", \
             ephemeral-storage: 500Gi}}\n  nodeInfo:\n    architecture: amd64\n    operatingSystem: linux\n    \
             kubeletVersion: fake\n---\n"
        ));
    }
    cluster.apply(&manifest);
    nodes + xtask::cluster::NODES
}

/// Runs `tasks` with at most [`IN_FLIGHT`] at once; panics on the first failure.
async fn in_flight<T: Send + 'static>(
    tasks: impl IntoIterator<Item = impl std::future::Future<Output = Result<T, String>> + Send + 'static>,
) -> Vec<T> {
    let mut set: tokio::task::JoinSet<Result<T, String>> = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    for task in tasks {
        while set.len() >= IN_FLIGHT {
            out.push(
                set.join_next().await.expect("a task").expect("a task panicked").unwrap_or_else(|e| panic!("{e}")),
            );
        }
        set.spawn(task);
    }
    while let Some(done) = set.join_next().await {
        out.push(done.expect("a task panicked").unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

/// A field of `/proc/<pid>/status` in MiB (`VmRSS`, `VmHWM`).
fn proc_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn metrics_of(op: &OperatorProcess) -> String {
    for _ in 0..200 {
        if let Some(metrics) = op.try_metrics().await {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the operator serves no metrics:\n{}", op.log_tail(40))
}

/// The requests by `verb resource` since `before` (both [`converge::api_requests`]), most first.
fn breakdown(before: &BTreeMap<(String, String), f64>, after: &BTreeMap<(String, String), f64>) -> Value {
    let mut rows: Vec<(String, f64)> = after
        .iter()
        .map(|(key, n)| (format!("{} {}", key.0, key.1), n - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    Value::Array(rows.into_iter().map(|(what, n)| json!([what, n])).collect())
}

/// The resourceVersion of every object the operator wrote, and of every Tenant and service.
async fn versions(client: &Client) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = converge::written_by_operator(client)
        .await
        .expect("listing what the operator wrote")
        .into_iter()
        .map(|o| (o.key(), o.resource_version))
        .collect();
    async fn of<K>(client: &Client, out: &mut BTreeMap<String, String>)
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        for object in Api::<K>::all(client.clone()).list(&ListParams::default()).await.expect("a list").items {
            let key = object_key(&K::kind(&()), object.namespace().as_deref(), &object.name_any());
            out.insert(key, object.resource_version().unwrap_or_default());
        }
    }
    of::<Tenant>(client, &mut out).await;
    of::<Portal>(client, &mut out).await;
    of::<DocumentService>(client, &mut out).await;
    of::<DataSharingService>(client, &mut out).await;
    out
}

fn changed(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter().filter(|k| before.get(*k) != after.get(*k)).cloned().collect()
}

/// Applies every Tenant, then each agency's services as soon as its namespace carries its
/// domain; returns when everything is applied.
async fn apply_province(client: &Client, province: &Province) {
    let api: Api<Tenant> = Api::all(client.clone());
    let tenants = province.agencies.iter().map(|agency| {
        let (api, manifest, name) = (api.clone(), province.tenant_manifest(agency), agency.name.clone());
        async move {
            api.patch(&name, &PatchParams::apply(INPUT_MANAGER).force(), &Patch::Apply(&manifest))
                .await
                .map(|_| ())
                .map_err(|e| format!("applying Tenant {name}: {e}"))
        }
    });
    in_flight(tenants.collect::<Vec<_>>()).await;
    let mut pending: Vec<usize> = (0..province.services.len()).collect();
    let deadline = Instant::now() + Duration::from_secs(4 * 3600);
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} services never found their namespace", pending.len());
        let namespaces = Api::<Namespace>::all(client.clone()).list_metadata(&ListParams::default()).await;
        let domains: HashMap<String, String> = namespaces
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|ns| Some((ns.name_any(), ns.annotations().get(DOMAIN_ANNOTATION)?.clone())))
            .collect();
        let (ready, waiting): (Vec<usize>, Vec<usize>) =
            pending.into_iter().partition(|i| domains.contains_key(&province.services[*i].tenant));
        pending = waiting;
        let applies = ready.into_iter().map(|i| {
            let (client, plan) = (client.clone(), province.services[i].clone());
            let domain = domains[&plan.tenant].clone();
            async move {
                faults::apply_service(&client, &plan, &domain)
                    .await
                    .map_err(|e| format!("applying {}: {e}", plan.describe()))
            }
        });
        in_flight(applies.collect::<Vec<_>>()).await;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// How many objects of each controller the province has.
fn expected_reconciles(province: &Province) -> [(&'static str, f64); 4] {
    let count = |kind: &str| province.services.iter().filter(|p| p.describe().starts_with(&format!("{kind} "))).count();
    [
        ("tenant", province.agencies.len() as f64),
        ("portal", count("Portal") as f64),
        ("document-service", count("DocumentService") as f64),
        ("data-sharing", count("DataSharingService") as f64),
    ]
}

async fn operator_phase(cluster: &'static Cluster, args: &Args) -> Value {
    operator::install_chart(cluster);
    operator::ensure_platform(cluster);
    let nodes = add_nodes(cluster, args.services);
    let client = cluster.client().await;
    let province = Province::country(SCOPE, "bv", "H17", args.tenants, args.services);
    let mut op = OperatorProcess::start_unscoped(cluster, SCOPE);
    let metrics = metrics_of(&op).await;
    eprintln!(
        "bench converge: {} tenants, {} services, {nodes} nodes; operator up (requests so far: {})",
        province.agencies.len(),
        province.services.len(),
        RequestTotals::of(&converge::api_requests(&metrics)).all
    );
    let pid = op.pid().expect("the operator's pid");
    let idle_rss = proc_mib(pid, "VmRSS");
    let at_start_by = converge::api_requests(&metrics_of(&op).await);
    let at_start = RequestTotals::of(&at_start_by);

    // Converge: from the first write until everything is Ready.
    let start = Instant::now();
    apply_province(&client, &province).await;
    let applied_seconds = start.elapsed().as_secs_f64();
    eprintln!("bench converge: the province applied in {applied_seconds:.1} s");
    let mut last_report = Instant::now();
    loop {
        assert!(op.is_running(), "the operator exited:\n{}", op.log_tail(40));
        match province.not_converged(&client).await {
            Ok(problems) if problems.is_empty() => break,
            Ok(problems) if last_report.elapsed() > Duration::from_secs(30) => {
                eprintln!(
                    "bench converge: {:.0} s, {} not converged, e.g. {}",
                    start.elapsed().as_secs_f64(),
                    problems.len(),
                    problems[0]
                );
                last_report = Instant::now();
            }
            _ => {}
        }
        assert!(start.elapsed() < Duration::from_secs(6 * 3600), "the province never converged");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let converge_seconds = start.elapsed().as_secs_f64();
    let converged_metrics = metrics_of(&op).await;
    let converged_by = converge::api_requests(&converged_metrics);
    let queue_wait = converge::QueueWait::of(&converged_metrics);
    let converged = RequestTotals::of(&converged_by).since(&at_start);
    let reconciles: f64 =
        expected_reconciles(&province).iter().map(|(c, _)| operator::reconciles(&converged_metrics, c)).sum();
    let peak_rss = proc_mib(pid, "VmHWM");
    let written = converge::written_by_operator(&client).await.expect("listing what the operator wrote");
    let owned = written.len() as f64;
    let inputs = (province.agencies.len() + province.services.len()) as f64;
    eprintln!(
        "bench converge: converged in {converge_seconds:.1} s; {owned} objects written by the operator; requests {converged:?}; peak RSS {peak_rss:.1} MiB"
    );

    // Quiet: nothing changes, nothing is written.
    let quiet_before = versions(&client).await;
    let quiet_before_by = converge::api_requests(&metrics_of(&op).await);
    tokio::time::sleep(Duration::from_secs(args.quiet_seconds)).await;
    let quiet_after_by = converge::api_requests(&metrics_of(&op).await);
    let quiet = RequestTotals::of(&quiet_after_by).since(&RequestTotals::of(&quiet_before_by));
    let quiet_after = versions(&client).await;
    let quiet_changed = changed(&quiet_before, &quiet_after);
    let steady_rss = proc_mib(pid, "VmRSS");
    eprintln!("bench converge: quiet {} s: requests {quiet:?}; changed {quiet_changed:?}", args.quiet_seconds);

    // Restart over the converged world.
    op.stop();
    let restarted = Instant::now();
    op.start_again();
    let pid = op.pid().expect("the restarted operator's pid");
    let ready_seconds = loop {
        if let Some(answer) = op.try_http_get("/readyz").await
            && answer.starts_with("HTTP/1.0 200")
        {
            break restarted.elapsed().as_secs_f64();
        }
        assert!(restarted.elapsed() < Duration::from_secs(600), "the restarted operator never got ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expected = expected_reconciles(&province);
    let resync_seconds = loop {
        let metrics = op.try_metrics().await.unwrap_or_default();
        if expected.iter().all(|(controller, objects)| operator::reconciles(&metrics, controller) >= *objects) {
            break restarted.elapsed().as_secs_f64();
        }
        assert!(restarted.elapsed() < Duration::from_secs(1800), "the restarted operator never reconciled everything");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let window = Duration::from_secs(args.restart_seconds);
    if let Some(rest) = window.checked_sub(restarted.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let restart_by = converge::api_requests(&metrics_of(&op).await);
    let restart = RequestTotals::of(&restart_by);
    let restart_window = restarted.elapsed().as_secs_f64();
    let restart_after = versions(&client).await;
    let restart_changed = changed(&quiet_after, &restart_after);
    let restart_rss = proc_mib(pid, "VmHWM");
    eprintln!(
        "bench converge: restart ready in {ready_seconds:.1} s, everything reconciled in {resync_seconds:.1} s; requests {restart:?}; changed {restart_changed:?}"
    );

    // What the operator wrote, for the raw writer.
    let written = converge::written_by_operator(&client).await.expect("listing what the operator wrote");
    let domains: BTreeMap<String, String> = Api::<Namespace>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
        .expect("listing namespaces")
        .items
        .into_iter()
        .filter_map(|ns| Some((ns.name_any(), ns.annotations().get(DOMAIN_ANNOTATION)?.clone())))
        .collect();
    std::fs::create_dir_all(args.capture.parent().expect("a directory")).expect("creating the capture's directory");
    let capture = json!({"written": written, "domains": domains});
    std::fs::write(&args.capture, serde_json::to_vec(&capture).expect("JSON")).expect("writing the capture");
    op.stop();

    let sample = |keys: &[String]| keys.iter().take(10).cloned().collect::<Vec<_>>();
    json!({
        "tenants": province.agencies.len(),
        "services": province.services.len(),
        "provinces": province.provinces(),
        "nodes": nodes,
        "inputs": inputs,
        "owned_objects": owned,
        "applied_seconds": applied_seconds,
        "converge_seconds": converge_seconds,
        "requests": converged,
        "requests_by": breakdown(&at_start_by, &converged_by),
        "quiet_requests_by": breakdown(&quiet_before_by, &quiet_after_by),
        "restart_requests_by": breakdown(&BTreeMap::new(), &restart_by),
        "object_writes": converged.object_writes(),
        "reconciles": reconciles,
        "queue_wait": queue_wait,
        "idle_rss_mib": idle_rss,
        "peak_rss_mib": peak_rss,
        "steady_rss_mib": steady_rss,
        "quiet_seconds": args.quiet_seconds,
        "quiet_requests": quiet,
        "quiet_object_writes": quiet.object_writes(),
        "quiet_changed": quiet_changed.len(),
        "quiet_changed_sample": sample(&quiet_changed),
        "restart_window_seconds": restart_window,
        "restart_ready_seconds": ready_seconds,
        "restart_resync_seconds": resync_seconds,
        "restart_requests": restart,
        "restart_object_writes": restart.object_writes(),
        "restart_changed": restart_changed.len(),
        "restart_changed_sample": sample(&restart_changed),
        "restart_peak_rss_mib": restart_rss,
    })
}

/// One object the raw writer applies: a province input (by the admin) or what the operator wrote.
struct Write {
    key: String,
    resource: ApiResource,
    namespace: Option<String>,
    name: String,
    body: Value,
    by_operator: bool,
    /// Keys of the objects that must exist first (its namespace, its owners, itself as an input).
    after: Vec<String>,
}

fn api_resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn input_write(object: Value) -> Write {
    let kind = object["kind"].as_str().expect("a kind").to_owned();
    let plural = match kind.as_str() {
        "Tenant" => "tenants",
        "Service" => "services",
        "Portal" => "portals",
        "DocumentService" => "documentservices",
        _ => "datasharingservices",
    };
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_owned);
    let name = object["metadata"]["name"].as_str().expect("a name").to_owned();
    let after = namespace.iter().map(|ns| object_key("Namespace", None, ns)).collect();
    Write {
        key: object_key(&kind, namespace.as_deref(), &name),
        resource: api_resource(object["apiVersion"].as_str().expect("an apiVersion"), &kind, plural),
        namespace,
        name,
        body: object,
        by_operator: false,
        after,
    }
}

fn owner_keys(body: &Value, namespace: Option<&str>) -> Vec<String> {
    body.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|owner| {
            let kind = owner["kind"].as_str()?;
            let name = owner["name"].as_str()?;
            // Owners are in the dependent's namespace, or cluster-scoped.
            let scoped =
                if matches!(kind, "Tenant" | "Namespace" | "Platform" | "ClusterRole") { None } else { namespace };
            Some(object_key(kind, scoped, name))
        })
        .collect()
}

async fn raw_phase(cluster: &'static Cluster, args: &Args) -> Value {
    operator::install_chart(cluster);
    operator::ensure_platform(cluster);
    let nodes = add_nodes(cluster, args.services);
    let capture: Value = serde_json::from_slice(
        &std::fs::read(&args.capture).expect("reading the capture (run the operator phase first)"),
    )
    .expect("the capture's JSON");
    let written: Vec<WrittenObject> = serde_json::from_value(capture["written"].clone()).expect("the written objects");
    let domains: BTreeMap<String, String> = serde_json::from_value(capture["domains"].clone()).expect("the domains");
    let province = Province::country(SCOPE, "bv", "H17", args.tenants, args.services);
    let admin = cluster.client().await;
    let kubeconfig = Kubeconfig::read_from(operator::operator_kubeconfig(cluster)).expect("the operator's kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the operator's client config");
    let as_operator = Client::try_from(config).expect("the operator's client");

    // Everything to write, inputs first.
    let mut writes: Vec<Write> = Vec::new();
    for agency in &province.agencies {
        writes.push(input_write(province.tenant_manifest(agency)));
    }
    for plan in &province.services {
        let domain = domains.get(&plan.tenant).unwrap_or_else(|| panic!("no domain captured for {}", plan.tenant));
        writes.extend(faults::service_manifests(plan, domain).into_iter().map(input_write));
    }
    let inputs: BTreeSet<String> = writes.iter().map(|w| w.key.clone()).collect();
    let written_keys: BTreeSet<String> = written.iter().map(WrittenObject::key).collect();
    for object in &written {
        let key = object.key();
        let mut body = object.applied.clone();
        if object.kind == "PersistentVolumeClaim"
            && let Some(spec) = body.get_mut("spec").and_then(Value::as_object_mut)
        {
            // The volume the first cluster's volume controller bound the claim to, which the
            // operator re-asserts: here the volume controller binds a volume of its own.
            spec.remove("volumeName");
        }
        let mut after: Vec<String> = owner_keys(&object.applied, object.namespace.as_deref());
        after.extend(object.namespace.iter().map(|ns| object_key("Namespace", None, ns)));
        if inputs.contains(&key) {
            after.push(key.clone());
        }
        writes.push(Write {
            key,
            resource: api_resource(&object.api_version, &object.kind, &object.plural),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
            body,
            by_operator: true,
            after,
        });
    }
    // What exists before the first write (the Platform, the operator's namespace…): every
    // dependency that neither an input nor a captured object provides, with its uid here.
    let mut uids: HashMap<String, String> = HashMap::new();
    let provided: BTreeSet<&String> = inputs.iter().chain(written_keys.iter()).collect();
    let mut existing: BTreeSet<String> = BTreeSet::new();
    for write in &writes {
        for dependency in &write.after {
            if !provided.contains(dependency) {
                existing.insert(dependency.clone());
            }
        }
    }
    for key in &existing {
        let uid = existing_uid(&admin, key, &written).await;
        uids.insert(key.clone(), uid.unwrap_or_else(|| panic!("{key} is needed and does not exist here")));
    }
    // The operator marks the volume a DocumentService's claim is bound to (retention): which
    // volume that is, the raw writer learns as the operator does, once the claim is bound.
    let (volume_markings, writes): (Vec<Write>, Vec<Write>) =
        writes.into_iter().partition(|w| w.by_operator && w.resource.kind == "PersistentVolume");
    let writes_total = writes.len() + volume_markings.len();
    let operator_writes = writes.iter().filter(|w| w.by_operator).count() + volume_markings.len();
    eprintln!(
        "bench converge (raw): {} inputs and {operator_writes} objects the operator wrote; {nodes} nodes",
        writes_total - operator_writes
    );

    // Write in waves: each wave everything whose dependencies exist.
    let start = Instant::now();
    let mut done: BTreeSet<String> = existing.clone();
    let mut pending = writes;
    let mut waves = 0;
    while !pending.is_empty() {
        // A captured object that is also an input (the operator's fields on a Tenant) waits for
        // the input: its own key is among its dependencies.
        let (ready, waiting): (Vec<Write>, Vec<Write>) =
            pending.into_iter().partition(|w| w.after.iter().all(|d| done.contains(d)));
        assert!(
            !ready.is_empty(),
            "nothing can be written; waiting: {:?}",
            waiting.iter().take(5).map(|w| (&w.key, &w.after)).collect::<Vec<_>>()
        );
        pending = waiting;
        waves += 1;
        let uids_now = Arc::new(uids.clone());
        let applies = ready.into_iter().map(|write| {
            let client = if write.by_operator { as_operator.clone() } else { admin.clone() };
            let uids = uids_now.clone();
            async move {
                let mut body = write.body;
                if let Some(owners) = body.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
                    for owner in owners {
                        let key = owner_keys(
                            &json!({"metadata": {"ownerReferences": [owner.clone()]}}),
                            write.namespace.as_deref(),
                        )
                        .pop()
                        .unwrap_or_default();
                        let uid = uids.get(&key).ok_or_else(|| format!("{}: no uid for its owner {key}", write.key))?;
                        owner["uid"] = Value::String(uid.clone());
                    }
                }
                let api: Api<DynamicObject> = match &write.namespace {
                    Some(ns) => Api::namespaced_with(client, ns, &write.resource),
                    None => Api::all_with(client, &write.resource),
                };
                let manager = if write.by_operator { OPERATOR_MANAGER } else { INPUT_MANAGER };
                let applied = api
                    .patch(&write.name, &PatchParams::apply(manager).force(), &Patch::Apply(&body))
                    .await
                    .map_err(|e| format!("applying {}: {e}", write.key))?;
                Ok((write.key, applied.uid().unwrap_or_default()))
            }
        });
        for (key, uid) in in_flight(applies.collect::<Vec<_>>()).await {
            uids.insert(key.clone(), uid);
            done.insert(key);
        }
    }
    mark_volumes(&as_operator, &admin, volume_markings).await;
    let write_seconds = start.elapsed().as_secs_f64();
    eprintln!("bench converge (raw): {writes_total} applies in {waves} waves, {write_seconds:.1} s");
    // Ready: every Deployment the operator wrote is available.
    let deployments: BTreeSet<String> =
        written.iter().filter(|o| o.kind == "Deployment").map(WrittenObject::key).collect();
    loop {
        let list =
            Api::<Deployment>::all(admin.clone()).list(&ListParams::default()).await.expect("listing Deployments");
        let available = list
            .items
            .iter()
            .filter(|d| {
                let want = d.spec.replicas.unwrap_or(1);
                d.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) >= want
            })
            .map(|d| object_key("Deployment", d.namespace().as_deref(), &d.name_any()))
            .filter(|k| deployments.contains(k))
            .count();
        if available == deployments.len() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(6 * 3600), "the raw writer's Deployments never became available");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let raw_seconds = start.elapsed().as_secs_f64();
    eprintln!("bench converge (raw): everything available in {raw_seconds:.1} s");
    json!({
        "raw_writes": writes_total,
        "raw_operator_writes": operator_writes,
        "raw_waves": waves,
        "raw_write_seconds": write_seconds,
        "raw_seconds": raw_seconds,
        "raw_deployments": deployments.len(),
    })
}

/// Applies the operator's marking of each retained volume to the volume its claim (the
/// `govpaas.io/claim` annotation) is bound to here, as soon as it is bound.
async fn mark_volumes(as_operator: &Client, admin: &Client, mut markings: Vec<Write>) {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !markings.is_empty() {
        let claims = Api::<PersistentVolumeClaim>::all(admin.clone())
            .list(&ListParams::default())
            .await
            .expect("listing claims");
        let bound: HashMap<String, String> = claims
            .items
            .iter()
            .filter_map(|c| {
                Some((format!("{}/{}", c.namespace()?, c.name_any()), c.spec.as_ref()?.volume_name.clone()?))
            })
            .collect();
        let (ready, waiting): (Vec<Write>, Vec<Write>) = markings.into_iter().partition(|w| {
            w.body
                .pointer("/metadata/annotations/govpaas.io~1claim")
                .and_then(Value::as_str)
                .is_some_and(|c| bound.contains_key(c))
        });
        markings = waiting;
        let applies = ready.into_iter().map(|write| {
            let client = as_operator.clone();
            let claim = write
                .body
                .pointer("/metadata/annotations/govpaas.io~1claim")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let volume = bound[claim].clone();
            async move {
                let mut body = write.body;
                body["metadata"]["name"] = Value::String(volume.clone());
                let api: Api<DynamicObject> = Api::all_with(client, &write.resource);
                api.patch(&volume, &PatchParams::apply(OPERATOR_MANAGER).force(), &Patch::Apply(&body))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("marking the volume {volume} of {}: {e}", write.key))
            }
        });
        in_flight(applies.collect::<Vec<_>>()).await;
        assert!(Instant::now() < deadline, "{} claims were never bound", markings.len());
        if !markings.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The uid, on this cluster, of an object that exists before the raw writer starts (found by its
/// key's kind and name among the kinds the operator's objects name as owners).
async fn existing_uid(client: &Client, key: &str, written: &[WrittenObject]) -> Option<String> {
    let (kind, rest) = key.split_once(' ')?;
    let (namespace, name) = match rest.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, rest),
    };
    let resource = match kind {
        "Namespace" => api_resource("v1", "Namespace", "namespaces"),
        "Platform" => api_resource("govpaas.io/v1alpha1", "Platform", "platforms"),
        _ => {
            // An owner kind: take its apiVersion from an owner reference that names it.
            let api_version = written.iter().find_map(|o| {
                o.applied.pointer("/metadata/ownerReferences")?.as_array()?.iter().find_map(|r| {
                    (r["kind"] == kind && r["name"] == name).then(|| r["apiVersion"].as_str().map(str::to_owned))?
                })
            })?;
            let discovery = kube::discovery::Discovery::new(client.clone()).run().await.ok()?;
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version.as_str()));
            discovery.resolve_gvk(&GroupVersionKind::gvk(group, version, kind))?.0
        }
    };
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.get_opt(name).await.ok()??.uid()
}
