//! `cargo xtask bench <what>`: runs a benchmark in release mode and records its results, with the
//! machine they were measured on, in its own section of `docs/benchmarks.md`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::paths;

pub mod converge;
mod gateway;

pub use converge::ConvergeOptions;

/// The benchmarks `run` knows.
pub const BENCHMARKS: &[&str] = &["certificates", "tree", "gateway", "converge"];

/// Runs the named benchmark and updates its section of `docs/benchmarks.md`; `options` size the
/// converge benchmark.
pub fn run(what: &str, options: &ConvergeOptions) -> Result<()> {
    match what {
        "certificates" => certificates(),
        "tree" => tree(),
        "gateway" => gateway::run(),
        "converge" => converge::run(options),
        other => bail!("unknown benchmark {other:?}; known: {}", BENCHMARKS.join(", ")),
    }
}

fn certificates() -> Result<()> {
    let machine = Machine::describe();
    let result = run_cargo_bench("govpaas-operator", "certificates")?;
    let section = certificates_section(&result, &machine)?;
    let path = paths::workspace_root().join("docs").join("benchmarks.md");
    write_section(&path, "certificates", &section)?;
    println!("xtask: results written to {}", path.display());
    Ok(())
}

/// `kubectl govpaas tree` over 4,000 Tenants on a control plane of its own
/// (`tests/examples/tree_bench.rs`). The driver is a debug build (it only creates objects and
/// times processes); the plugin it times is the release build, as `cargo install` makes it.
fn tree() -> Result<()> {
    let machine = Machine::describe();
    let result = run_cargo(&["run", "-p", "govpaas-tests", "--example", "tree_bench"], "tree_bench")?;
    let section = tree_section(&result, &machine)?;
    let path = paths::workspace_root().join("docs").join("benchmarks.md");
    write_section(&path, "tree", &section)?;
    println!("xtask: results written to {}", path.display());
    Ok(())
}

/// Runs `cargo bench -p <package> --bench <bench>`, echoing its output, and returns the JSON of its
/// `BENCH-RESULT` line.
fn run_cargo_bench(package: &str, bench: &str) -> Result<Value> {
    run_cargo(&["bench", "-p", package, "--bench", bench], bench)
}

/// Runs cargo with `args`, echoing its output, and returns the JSON of the `BENCH-RESULT` line
/// that `bench` printed.
fn run_cargo(args: &[&str], bench: &str) -> Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let mut child = Command::new(cargo)
        .args(args)
        .current_dir(paths::workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting cargo {}", args.join(" ")))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut result = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        match line.strip_prefix("BENCH-RESULT ") {
            Some(json) => result = Some(serde_json::from_str(json).context("parsing BENCH-RESULT")?),
            None => println!("{line}"),
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo {} failed: {status}", args.join(" "));
    }
    result.with_context(|| format!("the {bench} benchmark printed no BENCH-RESULT line"))
}

/// The machine a benchmark ran on, as far as Linux tells.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cpus: String,
    pub cpu_model: String,
    pub memory: String,
    pub rustc: String,
    pub kernel: String,
    pub load_average: String,
}

impl Machine {
    pub fn describe() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let command = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("unknown")
            .to_owned();
        let meminfo = read("/proc/meminfo");
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or_else(|| "unknown".to_owned(), |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0));
        let load_average = read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ");
        Machine {
            cpus: command("nproc", &[]),
            cpu_model,
            memory,
            rustc: command("rustc", &["--version"]),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_average,
        }
    }
}

impl Machine {
    /// `Machine: <model>; <n> CPUs (`nproc`); <memory> memory; <rustc>; Linux <kernel>; load average
    /// <load> when the run started`, the opening of a section's machine paragraph.
    pub fn summary(&self) -> String {
        format!(
            "Machine: {}; {} CPUs (`nproc`); {} memory; {}; Linux {}; load average {} when the run started",
            self.cpu_model, self.cpus, self.memory, self.rustc, self.kernel, self.load_average
        )
    }
}

#[cfg(test)]
impl Machine {
    /// A made-up machine for the sections' tests.
    pub(crate) fn for_tests() -> Self {
        Machine {
            cpus: "2".into(),
            cpu_model: "Test CPU".into(),
            memory: "24.0 GiB".into(),
            rustc: "rustc 1.95.0".into(),
            kernel: "6.1".into(),
            load_average: "0.5 0.4 0.3".into(),
        }
    }
}

fn certificates_section(r: &Value, m: &Machine) -> Result<String> {
    let num = |key: &str| r[key].as_f64().with_context(|| format!("BENCH-RESULT lacks {key}"));
    let count = |key: &str| num(key).map(|v| thousands(v.round() as u64));
    let rate = |key: &str| num(key).map(|v| format!("{} /s", thousands(v.round() as u64)));
    let secs = |key: &str| num(key).map(|v| format!("{v:.3} s"));
    let date = time::OffsetDateTime::now_utc().date();
    Ok(format!(
        "## Certificates\n\
         \n\
         `cargo xtask bench certificates` (`operator/benches/certificates.rs`), run on {date}.\n\
         \n\
         Machine: {model}; {cpus} CPUs (`nproc`); {memory} memory; {rustc}; Linux {kernel}; load average \
         {load} when the run started (the machine is shared with other builds, so treat the rates as a floor).\n\
         \n\
         Single thread, release profile, ECDSA P-256 for every key. Each issuance generates a fresh key pair, \
         draws a random 16-byte serial, signs with the issuer's key (rcgen on ring) and encodes certificate and \
         key as PEM. The raw rates are ring's, measured in the same process right after the issuance: the \
         signature is over a message as long as a real leaf's to-be-signed part ({tbs} bytes).\n\
         \n\
         | what | count | time | rate |\n\
         |---|---:|---:|---:|\n\
         | tenant intermediate CAs | {tenants} | {tenant_s} | {tenant_rate} |\n\
         | leaves (⅓ TLS server, ⅓ LGSP client, ⅓ document signing) | {leaves} | {leaf_s} | {leaf_rate} |\n\
         | **all certificates** | {total} | {total_s:.3} s | **{all_rate}** |\n\
         | raw ring ECDSA P-256 signature ({tbs} B) | {raw} | | {sign_rate} |\n\
         | raw ring P-256 key generation | {raw} | | {keygen_rate} |\n\
         | raw ring P-256 key load from PKCS#8 (rcgen reloads each new key) | {raw} | | {load_rate} |\n\
         | generation + load + signature, combined bound | | | {bound_rate} |\n\
         \n\
         **Ratios, same run:** certificates per second ÷ raw signatures per second = **{ratio_sign:.2}**; \
         ÷ the combined bound of the three primitives every issuance performs = **{ratio_bound:.2}**; the \
         rest is DER and PEM encoding, the random serial, and allocation.\n\
         \n\
         At national scale (4,000 tenants, 12,000 services) re-issuing everything, as a platform CA rotation \
         does, costs about {full:.1} s of one core. {verified} of the leaves were verified with rustls-webpki \
         after the timed run.\n\
         \n\
         **A platform CA rotation's count** (`govpaas_operator::trust::census`, what the trust controller \
         computes on every poll while re-issuing, after listing the Secrets): {census_certs} tenant CA and \
         leaf Secrets parsed and sorted by the CA they chain to (each tenant CA's signature checked once), and \
         {census_bundles} trust bundles compared, in {census_s} ({census_rate}): the poll's cost is the API \
         server's listing, not the count.\n",
        model = m.cpu_model,
        cpus = m.cpus,
        memory = m.memory,
        rustc = m.rustc,
        kernel = m.kernel,
        load = m.load_average,
        tbs = count("tbs_bytes")?,
        tenants = count("tenants")?,
        tenant_s = secs("tenant_seconds")?,
        tenant_rate = rate("tenant_per_second")?,
        leaves = count("leaves")?,
        leaf_s = secs("leaf_seconds")?,
        leaf_rate = rate("leaf_per_second")?,
        total = thousands((num("tenants")? + num("leaves")?) as u64),
        total_s = num("tenant_seconds")? + num("leaf_seconds")?,
        all_rate = rate("certificates_per_second")?,
        raw = count("raw_operations")?,
        sign_rate = rate("raw_sign_per_second")?,
        keygen_rate = rate("raw_keygen_per_second")?,
        load_rate = rate("raw_key_load_per_second")?,
        bound_rate = rate("primitive_bound_per_second")?,
        ratio_sign = num("issuance_to_sign_ratio")?,
        ratio_bound = num("issuance_to_primitive_bound_ratio")?,
        full = num("tenant_seconds")? + num("leaf_seconds")?,
        verified = count("verified_samples")?,
        census_certs = count("census_certificates")?,
        census_bundles = count("census_bundles")?,
        census_s = secs("census_seconds")?,
        census_rate = rate("census_per_second")?,
    ))
}

fn tree_section(r: &Value, m: &Machine) -> Result<String> {
    let num = |key: &str| r[key].as_f64().with_context(|| format!("BENCH-RESULT lacks {key}"));
    let count = |key: &str| num(key).map(|v| thousands(v.round() as u64));
    let secs = |key: &str| num(key).map(|v| format!("{v:.3} s"));
    let date = time::OffsetDateTime::now_utc().date();
    let tree = num("tree_seconds")?;
    let verdict = if tree < 1.0 {
        format!("under the issue's bound of one second at {} tenants", count("tenants")?)
    } else {
        format!("**over** the issue's bound of one second at {} tenants", count("tenants")?)
    };
    Ok(format!(
        "## kubectl govpaas tree\n\
         \n\
         `cargo xtask bench tree` (`tests/examples/tree_bench.rs`), run on {date}.\n\
         \n\
         Machine: {model}; {cpus} CPUs (`nproc`); {memory} memory; {rustc}; Linux {kernel}; load average \
         {load} when the run started (the machine is shared with other builds; the API server, etcd and the \
         timed processes share its cores).\n\
         \n\
         {tenants} Tenants on a local control plane of the benchmark's own (`cargo xtask cluster`'s, kwok \
         nodes): {provinces} provinces, each with 20 departments and 96 or 97 communes. No operator runs: the \
         benchmark creates the Tenants ({in_flight} requests in flight, {create}) and writes their statuses \
         itself as the operator would once converged (Ready, the quota carved down the tree, a fifth of it \
         in use; {status}). The list is {list_mb:.1} MB of JSON. Each command ran {runs} times after a warm-up, \
         its output read through a pipe; the median wall time is shown. The plugin is the release build.\n\
         \n\
         | what | median |\n\
         |---|---:|\n\
         | `kubectl get --raw /apis/govpaas.io/v1alpha1/tenants` (the API server's answer, not decoded) | {raw} |\n\
         | `kubectl get tenants -o json` (the same list, decoded and printed) | {kubectl} |\n\
         | **`kubectl govpaas tree`** (one list, the tree, a {tenants}-line table) | **{tree_s}** |\n\
         | `kubectl govpaas tree -o json` | {tree_json} |\n\
         \n\
         **Ratios, same run:** `tree` ÷ `kubectl get tenants -o json` = **{ratio:.2}**; ÷ the raw list = \
         {ratio_raw:.2}; `tree -o json` ÷ `kubectl get tenants -o json` = {ratio_json:.2}. `tree` answered in \
         {tree_s}: {verdict}.\n",
        model = m.cpu_model,
        cpus = m.cpus,
        memory = m.memory,
        rustc = m.rustc,
        kernel = m.kernel,
        load = m.load_average,
        tenants = count("tenants")?,
        provinces = count("provinces")?,
        in_flight = count("in_flight")?,
        create = secs("create_seconds")?,
        status = secs("status_seconds")?,
        list_mb = num("list_bytes")? / 1e6,
        runs = count("runs")?,
        raw = secs("raw_list_seconds")?,
        kubectl = secs("kubectl_get_json_seconds")?,
        tree_s = secs("tree_seconds")?,
        tree_json = secs("tree_json_seconds")?,
        ratio = num("tree_to_kubectl_ratio")?,
        ratio_raw = num("tree_to_raw_list_ratio")?,
        ratio_json = num("tree_json_to_kubectl_ratio")?,
    ))
}

/// `12345` → `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const DOC_HEADER: &str = "# Benchmarks\n\nEach section is written by `cargo xtask bench <what>`; rerun the command \
                          to refresh it. Ratios compare rates measured side by side in the same run.\n";

fn write_section(path: &Path, name: &str, section: &str) -> Result<()> {
    let current = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DOC_HEADER.to_owned(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    std::fs::write(path, replace_section(&current, name, section))
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces the text between `<!-- bench:<name>:begin -->` and `<!-- bench:<name>:end -->`, or
/// appends a new marked section; the rest of the document is left as it was.
pub fn replace_section(doc: &str, name: &str, section: &str) -> String {
    let begin = format!("<!-- bench:{name}:begin -->");
    let end = format!("<!-- bench:{name}:end -->");
    let block = format!("{begin}\n{}\n{end}", section.trim_end());
    if let (Some(b), Some(e)) = (doc.find(&begin), doc.find(&end))
        && b < e
    {
        return format!("{}{block}{}", &doc[..b], &doc[e + end.len()..]);
    }
    let mut out = doc.trim_end().to_owned();
    out.push_str("\n\n");
    out.push_str(&block);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_appended_then_replaced_in_place() {
        let doc = "# Benchmarks\n\nintro\n";
        let once = replace_section(doc, "certificates", "## Certificates\nfirst\n");
        assert!(once.starts_with("# Benchmarks\n\nintro\n\n<!-- bench:certificates:begin -->\n## Certificates\nfirst"));
        let with_other = replace_section(&once, "gateway", "## Gateway\nx");
        let twice = replace_section(&with_other, "certificates", "## Certificates\nsecond");
        assert!(twice.contains("second") && !twice.contains("first"));
        assert!(twice.contains("## Gateway\nx"), "other sections are kept");
        assert_eq!(twice.matches("bench:certificates:begin").count(), 1);
        assert!(twice.find("second").unwrap() < twice.find("## Gateway").unwrap(), "replaced in place");
    }

    #[test]
    fn numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn the_tree_section_shows_the_machine_the_ratio_and_the_bound() {
        let result = serde_json::json!({
            "tenants": 4000, "provinces": 34, "runs": 7, "in_flight": 32, "create_seconds": 20.0,
            "status_seconds": 15.0, "list_bytes": 12_500_000, "tree_seconds": 0.62, "tree_json_seconds": 0.7,
            "kubectl_get_json_seconds": 1.24, "raw_list_seconds": 0.31, "tree_to_kubectl_ratio": 0.5,
            "tree_to_raw_list_ratio": 2.0, "tree_json_to_kubectl_ratio": 0.56
        });
        let machine = Machine::for_tests();
        let text = tree_section(&result, &machine).unwrap();
        for needle in ["Test CPU", "4,000 Tenants", "12.5 MB", "**0.620 s**", "**0.50**", "under the issue's bound"] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        let mut slow = result.clone();
        slow["tree_seconds"] = serde_json::json!(1.5);
        assert!(tree_section(&slow, &machine).unwrap().contains("**over** the issue's bound"));
        assert!(tree_section(&serde_json::json!({}), &machine).is_err());
    }

    #[test]
    fn unknown_benchmarks_are_refused() {
        let err = run("nope", &ConvergeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("certificates"), "{err}");
    }

    #[test]
    fn the_certificates_section_shows_the_machine_and_the_ratio() {
        let result = serde_json::json!({
            "tenants": 4000, "leaves": 12000, "tenant_seconds": 0.2, "leaf_seconds": 0.6,
            "tenant_per_second": 20000.0, "leaf_per_second": 20000.0, "certificates_per_second": 20000.0,
            "tbs_bytes": 495, "raw_operations": 16000, "raw_sign_per_second": 64000.0,
            "raw_keygen_per_second": 97000.0, "raw_key_load_per_second": 90000.0,
            "primitive_bound_per_second": 25000.0,
            "issuance_to_sign_ratio": 0.3125, "issuance_to_primitive_bound_ratio": 0.52, "verified_samples": 480,
            "census_certificates": 16000, "census_bundles": 4000, "census_seconds": 0.5, "census_per_second": 32000
        });
        let machine = Machine::for_tests();
        let text = certificates_section(&result, &machine).unwrap();
        for needle in [
            "Test CPU",
            "2 CPUs",
            "24.0 GiB",
            "rustc 1.95.0",
            "| 4,000 |",
            "**20,000 /s**",
            "**0.31**",
            "64,000 /s",
            "in 0.500 s (32,000 /s)",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        assert!(certificates_section(&serde_json::json!({}), &machine).is_err());
    }
}
