//! `cargo xtask bench converge`: a synthetic province converged by the release operator against
//! the limit, a raw writer applying exactly what the operator wrote, each on a control plane of
//! its own (`tests/examples/converge_bench.rs`, run once per phase), and the section of
//! docs/benchmarks.md that compares them with the targets.

use anyhow::{Context, Result};
use serde_json::Value;

use super::{Machine, run_cargo, thousands, write_section};
use crate::paths;

/// The province's size and the steady-state windows.
#[derive(Debug, Clone, clap::Args)]
pub struct ConvergeOptions {
    /// Agencies (Tenants) in the province.
    #[arg(long, default_value_t = 500)]
    pub tenants: usize,
    /// Portals, DocumentServices and DataSharingServices, round the agencies.
    #[arg(long, default_value_t = 1_500)]
    pub services: usize,
    /// The quiet window after convergence, in which nothing should be written.
    #[arg(long, default_value_t = 300)]
    pub quiet_seconds: u64,
    /// The window after a restart over the converged province whose requests are counted.
    #[arg(long, default_value_t = 120)]
    pub restart_seconds: u64,
}

impl Default for ConvergeOptions {
    fn default() -> Self {
        ConvergeOptions { tenants: 500, services: 1_500, quiet_seconds: 300, restart_seconds: 120 }
    }
}

/// The national size (the 4,000 agencies and 12,000 services) and above.
const NATIONAL_TENANTS: usize = 4_000;

/// The docs/benchmarks.md section a run of these sizes writes: the province (the default sizes)
/// and the national run each have their own, and a run of any other size writes one named by its
/// sizes, so a quick run never overwrites the figures of record.
pub fn section_name(options: &ConvergeOptions) -> String {
    let province = ConvergeOptions::default();
    if (options.tenants, options.services) == (province.tenants, province.services) {
        "converge".to_owned()
    } else if options.tenants >= NATIONAL_TENANTS {
        "converge-national".to_owned()
    } else {
        format!("converge-{}-{}", options.tenants, options.services)
    }
}

pub fn run(options: &ConvergeOptions) -> Result<()> {
    let machine = Machine::describe();
    let began = std::time::Instant::now();
    let capture = paths::target_dir().join("bench-converge").join("capture.json");
    let capture_arg = capture.to_string_lossy().into_owned();
    let sizes = [
        "--tenants".to_owned(),
        options.tenants.to_string(),
        "--services".to_owned(),
        options.services.to_string(),
        "--capture".to_owned(),
        capture_arg,
    ];
    let example = ["run", "--release", "-p", "govpaas-tests", "--example", "converge_bench", "--"];
    let mut operator_args: Vec<String> = example.iter().map(|s| (*s).to_owned()).collect();
    operator_args.push("operator".into());
    operator_args.extend(sizes.iter().cloned());
    operator_args.extend([
        "--quiet-seconds".into(),
        options.quiet_seconds.to_string(),
        "--restart-seconds".into(),
        options.restart_seconds.to_string(),
    ]);
    let refs: Vec<&str> = operator_args.iter().map(String::as_str).collect();
    let mut result = run_cargo(&refs, "converge_bench operator")?;
    let mut raw_args: Vec<String> = example.iter().map(|s| (*s).to_owned()).collect();
    raw_args.push("raw".into());
    raw_args.extend(sizes.iter().cloned());
    let refs: Vec<&str> = raw_args.iter().map(String::as_str).collect();
    let raw = run_cargo(&refs, "converge_bench raw")?;
    if let (Some(all), Some(raw)) = (result.as_object_mut(), raw.as_object()) {
        all.extend(raw.clone());
        all.insert("bench_seconds".into(), began.elapsed().as_secs_f64().into());
    }
    println!("BENCH-RESULT {result}");
    let section = section(&result, &machine)?;
    let path = paths::workspace_root().join("docs").join("benchmarks.md");
    write_section(&path, &section_name(options), &section)?;
    println!("xtask: results written to {}", path.display());
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

/// `0.42 s` as `420 ms`, `12.3 s`.
fn seconds(value: f64) -> String {
    if value < 1.0 { format!("{:.0} ms", value * 1000.0) } else { format!("{value:.1} s") }
}

/// A histogram bucket's upper bound: `≤ 16 ms`, or `above 33 s` for the last, unbounded one.
fn bound(value: f64) -> String {
    if value.is_finite() { format!("≤ {}", seconds(value)) } else { "above 33 s".to_owned() }
}

/// The six most frequent `verb resource` rows of a breakdown (`[["apply secrets", 12], …]`).
fn top(r: &Value, key: &str) -> String {
    let rows: Vec<String> = r
        .pointer(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(6)
        .filter_map(|row| {
            Some(format!("{} × `{}`", thousands(row.get(1)?.as_f64()?.round() as u64), row.get(0)?.as_str()?))
        })
        .collect();
    if rows.is_empty() { "none".to_owned() } else { rows.join(", ") }
}

/// The docs/benchmarks.md section for one run's merged result.
pub fn section(r: &Value, m: &Machine) -> Result<String> {
    let num = |key: &str| r.pointer(key).and_then(Value::as_f64).with_context(|| format!("the result lacks {key}"));
    let count = |key: &str| num(key).map(|v| thousands(v.round() as u64));
    let date = time::OffsetDateTime::now_utc().date();
    let tenants = num("/tenants")?;
    let owned = num("/owned_objects")?;
    let operator_seconds = num("/converge_seconds")?;
    let raw_seconds = num("/raw_seconds")?;
    let ratio = operator_seconds / raw_seconds;
    let writes = num("/requests/writes")?;
    let object_writes = num("/object_writes")?;
    let writes_per_object = writes / owned;
    let object_writes_per_object = object_writes / owned;
    let restart_all = num("/restart_requests/all")?;
    let restart_per_object = restart_all / owned;
    let quiet_writes = num("/quiet_object_writes")? + num("/quiet_requests/status_writes")?;
    let quiet_changed = num("/quiet_changed")?;
    let restart_writes = num("/restart_object_writes")? + num("/restart_requests/status_writes")?;
    let restart_changed = num("/restart_changed")?;
    let peak = num("/peak_rss_mib")?;
    let restart_peak = num("/restart_peak_rss_mib")?;
    let memory_target = if tenants <= 500.0 { 64.0 } else { 256.0 };
    let ready = num("/restart_ready_seconds")?;
    let resync = num("/restart_resync_seconds")?;
    let per = |key: &str| num(key).map(|v| format!("{:.2}", v / owned));
    let services = num("/services")?;
    let sizes = ConvergeOptions { tenants: tenants as usize, services: services as usize, ..Default::default() };
    let national = sizes.tenants >= NATIONAL_TENANTS;
    // Runs recorded before provinces were counted were one province.
    let provinces = r.pointer("/provinces").and_then(Value::as_u64).unwrap_or(1);
    let heading = match section_name(&sizes).as_str() {
        "converge" => "a province".to_owned(),
        "converge-national" => "the nation".to_owned(),
        _ => format!("{} Tenants and {} services", thousands(sizes.tenants as u64), thousands(sizes.services as u64)),
    };
    let duration = match r.pointer("/bench_seconds").and_then(Value::as_f64) {
        Some(total) => {
            format!("The whole run (both control planes, both phases and the windows) took {:.0} min. ", total / 60.0)
        }
        None => String::new(),
    };
    let closing = if national {
        format!(
            "{duration}The province's figures are the section \"Converge: a province against the raw writer\" \
             (the default sizes)."
        )
    } else {
        format!(
            "{duration}The national run is the same command with `--tenants 4000 --services 12000` (≈ 8× the \
             objects); it writes its own section, \"Converge: the nation against the raw writer\"."
        )
    };
    Ok(format!(
        "## Converge: {heading} against the raw writer\n\
         \n\
         `cargo xtask bench converge --tenants {tenants_arg} --services {services_arg}` \
         (`xtask/src/bench/converge.rs`, `tests/examples/converge_bench.rs`), run on {date}.\n\
         \n\
         {machine}. etcd, the API server, kube-controller-manager, kube-scheduler, kwok, the \
         operator and the benchmark's own client share these cores: the operator and the raw writer each \
         ran on a control plane of its own, one after the other, on the same machine.\n\
         \n\
         **{agencies_heading}**: {tenants_n} Tenants{provinces_text} (a People's Committee, departments, communes and units, three \
         of them asking their department for more than it has), {services_n} services round them — a quarter \
         Portals, a quarter DocumentServices (document exchange on), half DataSharingServices providing and \
         consuming each other's APIs with grants — on {nodes} kwok nodes. The benchmark applies the Tenants \
         and then each agency's services as soon as its namespace appears, {in_flight} requests in flight.\n\
         \n\
         **The operator** (release build, the chart's ServiceAccount, every Tenant, leader election on, \
         `--concurrency 8`): timed from the first write until every Tenant, Portal, DocumentService and \
         DataSharingService is Ready and every grant granted. It wrote {owned_n} objects (the **owned \
         objects** below: each object one of its field managers wrote, outside status); its requests are its \
         own count (`govpaas_api_requests_total`), its memory `/proc/<pid>/status`.\n\
         \n\
         **The limit, in the same run**: a raw writer — the same kube client, {in_flight} requests in flight, \
         the operator's ServiceAccount and field manager — applying on a fresh control plane (same chart, \
         Platform and nodes) the same inputs and exactly what the operator wrote: each captured object pruned \
         to the fields the operator's field manager owns (its `managedFields`), so the builders' own output, \
         owner references rewritten to the new uids, in {waves} waves of dependency order. No reads, no \
         reconcile logic, no status, no certificates to sign. Timed from its first write until the \
         {deployments} Deployments are available, which is what the operator's Ready waits for.\n\
         \n\
         | figure | operator | raw writer | target | |\n\
         |---|---:|---:|---|---|\n\
         | time from the first write to all Ready | {operator_seconds:.1} s | {raw_seconds:.1} s | | |\n\
         | **operator ÷ raw writer** | **{ratio:.2}×** | 1 | ≤ 1.3× | {ratio_verdict} |\n\
         | API writes per owned object, to converge (all) | {writes_per_object:.2} | {raw_per_object:.2} | ≤ 1.5 | {writes_verdict} |\n\
         | … of which the objects themselves (not status, events, the Lease) | {object_writes_per_object:.2} | | | |\n\
         | requests per owned object, first {restart_window:.0} s after a restart over the converged province | {restart_per_object:.3} | | ≤ 0.1 | {restart_verdict} |\n\
         | writes (objects and status) in {quiet_s:.0} quiet seconds; objects changed | {quiet_writes:.0}; {quiet_changed:.0} | | 0 | {quiet_verdict} |\n\
         | writes (objects and status) in the {restart_window:.0} s after a restart; objects changed | {restart_writes:.0}; {restart_changed:.0} | | 0 | {restart_writes_verdict} |\n\
         | after a restart: `/readyz` answers; every object reconciled once | {ready:.1} s; {resync:.1} s | | ≤ 60 s (national) | {resync_verdict} |\n\
         | RSS: peak while converging; steady after the quiet window | {peak:.1} MiB; {steady:.1} MiB | | ≤ {memory_target:.0} MiB | {memory_verdict} |\n\
         | RSS peak after a restart | {restart_peak:.1} MiB | | ≤ {memory_target:.0} MiB | {restart_memory_verdict} |\n\
         \n\
         **Where the operator's requests went** while converging ({all} in all), per owned object: reads \
         {reads} (of which Secrets {secret_reads}), watches opened {watches}, applies {applies}, status writes \
         {status_writes}, events {event_writes}, Lease renewals {lease_writes}. Reconciles: {reconciles} for \
         {inputs} Tenants and services ({reconciles_per_input:.1} each). After the restart: {restart_all} \
         requests, {restart_reads} of them reads and {restart_watches} watches opened.\n\
         \n\
         **The queue**: while converging, {waits} reconciles were asked for by an event (a watch of the \
         object or of something it owns or reads); from the event to the reconcile's start they waited \
         {wait_mean} on average, the median {wait_p50}, the 99th percentile {wait_p99} (histogram buckets, \
         `govpaas_reconcile_queue_wait_seconds`).\n\
         \n\
         The most frequent requests while converging: {top_converge}. After the restart: {top_restart}. In \
         the quiet window: {top_quiet}.\n\
         \n\
         {closing}\n",
        tenants_arg = tenants,
        services_arg = services,
        machine = m.summary(),
        tenants_n = count("/tenants")?,
        agencies_heading = if provinces > 1 { "The nation" } else { "The province" },
        provinces_text = if provinces > 1 {
            format!(
                " in {provinces} provinces of about {} agencies side by side, each province its own root",
                thousands((tenants / provinces as f64).round() as u64)
            )
        } else {
            String::new()
        },
        services_n = count("/services")?,
        nodes = count("/nodes")?,
        in_flight = 32,
        owned_n = count("/owned_objects")?,
        waves = count("/raw_waves")?,
        deployments = count("/raw_deployments")?,
        ratio_verdict = verdict(ratio <= 1.3),
        raw_per_object = num("/raw_operator_writes")? / owned,
        writes_verdict = verdict(writes_per_object <= 1.5),
        restart_window = num("/restart_window_seconds")?,
        restart_verdict = verdict(restart_per_object <= 0.1),
        quiet_s = num("/quiet_seconds")?,
        quiet_verdict = verdict(quiet_writes == 0.0 && quiet_changed == 0.0),
        restart_writes_verdict = verdict(restart_writes == 0.0 && restart_changed == 0.0),
        resync_verdict = verdict(resync <= 60.0),
        steady = num("/steady_rss_mib")?,
        memory_verdict = verdict(peak <= memory_target),
        restart_memory_verdict = verdict(restart_peak <= memory_target),
        all = count("/requests/all")?,
        reads = per("/requests/reads")?,
        secret_reads = per("/requests/secret_reads")?,
        watches = per("/requests/watches")?,
        applies = per("/requests/applies")?,
        status_writes = per("/requests/status_writes")?,
        event_writes = per("/requests/event_writes")?,
        lease_writes = per("/requests/lease_writes")?,
        reconciles = count("/reconciles")?,
        inputs = count("/inputs")?,
        reconciles_per_input = num("/reconciles")? / num("/inputs")?,
        restart_all = count("/restart_requests/all")?,
        restart_reads = count("/restart_requests/reads")?,
        restart_watches = count("/restart_requests/watches")?,
        waits = count("/queue_wait/count")?,
        wait_mean = seconds(num("/queue_wait/mean_seconds")?),
        wait_p50 = bound(num("/queue_wait/p50_seconds").unwrap_or(f64::INFINITY)),
        wait_p99 = bound(num("/queue_wait/p99_seconds").unwrap_or(f64::INFINITY)),
        top_converge = top(r, "/requests_by"),
        top_restart = top(r, "/restart_requests_by"),
        top_quiet = top(r, "/quiet_requests_by"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_compares_each_figure_with_its_target() {
        let requests = serde_json::json!({"all": 30000.0, "reads": 9000.0, "watches": 40.0, "writes": 21000.0,
            "status_writes": 4000.0, "event_writes": 1000.0, "lease_writes": 100.0, "secret_reads": 3000.0, "applies": 19000.0});
        let restart = serde_json::json!({"all": 500.0, "reads": 100.0, "watches": 40.0, "writes": 0.0,
            "status_writes": 0.0, "event_writes": 0.0, "lease_writes": 10.0, "secret_reads": 0.0, "applies": 0.0});
        let result = serde_json::json!({
            "tenants": 500, "services": 1500, "nodes": 34, "inputs": 2000, "owned_objects": 14000,
            "converge_seconds": 600.0, "raw_seconds": 400.0, "requests": requests, "object_writes": 15900.0,
            "reconciles": 9000, "peak_rss_mib": 70.0, "steady_rss_mib": 50.0, "quiet_seconds": 300,
            "quiet_requests": restart, "quiet_object_writes": 0.0, "quiet_changed": 0,
            "restart_window_seconds": 120.0, "restart_ready_seconds": 2.0, "restart_resync_seconds": 30.0,
            "restart_requests": restart, "restart_object_writes": 0.0, "restart_changed": 0,
            "restart_peak_rss_mib": 60.0, "raw_operator_writes": 14000, "raw_waves": 5, "raw_deployments": 750,
            "requests_by": [["apply secrets", 3000.0], ["get secrets", 20.0]], "restart_requests_by": [],
            "queue_wait": {"count": 9000.0, "mean_seconds": 0.25, "p50_seconds": 0.016, "p99_seconds": null}
        });
        let machine = Machine::for_tests();
        let text = section(&result, &machine).unwrap();
        for needle in [
            "Test CPU",
            "--tenants 500 --services 1500",
            "## Converge: a province against the raw writer",
            "it writes its own section",
            "| **operator ÷ raw writer** | **1.50×** | 1 | ≤ 1.3× | **not met** |",
            "| 1.50 | 1.00 | ≤ 1.5 | **met** |",
            "| 0.036 | | ≤ 0.1 | **met** |",
            "70.0 MiB; 50.0 MiB | | ≤ 64 MiB | **not met** |",
            "14,000 objects",
            "3,000 × `apply secrets`, 20 × `get secrets`. After the restart: none.",
            "waited 250 ms on average, the median ≤ 16 ms, the 99th percentile above 33 s",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(section(&serde_json::json!({}), &machine).is_err());

        let mut national = result.clone();
        national["tenants"] = 4000.into();
        national["services"] = 12000.into();
        national["bench_seconds"] = 5400.0.into();
        national["provinces"] = 8.into();
        let text = section(&national, &machine).unwrap();
        assert!(text.starts_with("## Converge: the nation against the raw writer"), "{text}");
        assert!(text.contains("--tenants 4000 --services 12000"), "{text}");
        assert!(text.contains("took 90 min"), "{text}");
        assert!(
            text.contains("**The nation**: 4,000 Tenants in 8 provinces of about 500 agencies side by side"),
            "{text}"
        );
        assert!(text.contains("≤ 256 MiB"), "{text}");
    }

    #[test]
    fn each_size_has_its_own_section() {
        let sizes = |tenants, services| ConvergeOptions { tenants, services, ..Default::default() };
        assert_eq!(section_name(&ConvergeOptions::default()), "converge");
        assert_eq!(section_name(&sizes(4000, 12000)), "converge-national");
        assert_eq!(section_name(&sizes(150, 450)), "converge-150-450");
    }
}
