//! `cargo xtask bench gateway`: govpaas-gateway against nginx, both as mutual-TLS reverse proxies in
//! front of the same upstream (a second nginx answering a small fixed body), with the same ECDSA
//! P-256 certificates (made by govpaas-pki, as the operator makes them), driven by the same load
//! generator (vegeta, presenting the client certificate). The proxy under test and the upstream
//! share one core, vegeta has the other; runs alternate between the two proxies, round after round,
//! and each figure is the median of its rounds, so that a neighbour's build hurts both alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use govpaas_pki::{
    CertificateAuthority, ClientCertificateRequest, IssuancePolicy, PlatformCaRequest, ServerCertificateRequest,
    TenantCaRequest, generate_platform_ca,
};
use serde_json::Value;

use super::{Machine, thousands, write_section};
use crate::{paths, tools};

/// The gateway's name in its certificate; vegeta connects to it with `-connect-to`.
const GATEWAY_HOST: &str = "lgsp.h49.quangnam.gov.vn";
const BASE_DOMAIN: &str = "quangnam.gov.vn";
/// The provider whose one API is routed to the upstream.
const PROVIDER: &str = "H49.14";
const API: &str = "bench";
/// The consumer: Sở Tài chính's DataSharingService `bench`.
const CONSUMER_AGENCY: &str = "H49.12";
/// The upstream's answer: small and fixed.
const UPSTREAM_BODY: &str = r#"{"ma":"H49.14","thuaDat":{"so":42,"toBanDo":7,"dienTich":152.3},"trangThai":"hopLe"}"#;

/// The proxy under test and the upstream run here; vegeta on the other core.
const PROXY_CORE: u32 = 1;
const GENERATOR_CORE: u32 = 0;
const ROUNDS: usize = 3;
/// Keep-alive connections: the issue's three, then the sweep towards a thousand.
const CONNECTIONS: [u32; 5] = [1, 16, 64, 256, 1000];
/// The issue's headline concurrencies (the per-core target is judged on these).
const HEADLINE_CONNECTIONS: [u32; 3] = [1, 16, 64];
/// Concurrent clients opening a new connection for every request.
const HANDSHAKE_WORKERS: u32 = 16;
/// A run's length, unless `GOVPAAS_BENCH_SECONDS` says otherwise.
const RUN_SECONDS: u64 = 8;

/// What a run is aimed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Gateway,
    Nginx,
    /// The upstream itself, over plain HTTP: the ceiling.
    Direct,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Gateway => "govpaas-gateway",
            Target::Nginx => "nginx",
            Target::Direct => "upstream direct",
        }
    }
}

/// How a run loads its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// As fast as possible over this many keep-alive connections.
    KeepAlive(u32),
    /// As fast as possible, a new connection (a full TLS handshake) per request, this many at once.
    Handshakes(u32),
    /// A fixed rate per second.
    Rate(u32),
}

/// What `vegeta report -type=json` says of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub requests: u64,
    /// Successful requests per second.
    pub throughput: f64,
    /// The fraction answered 2xx/3xx.
    pub success: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: Vec<String>,
}

/// One run: its report, the CPU its proxy used, and how busy each core was meanwhile.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub target: Target,
    pub load: Load,
    pub report: Report,
    /// User and system time of the proxy process during the run (none for `Direct`).
    pub proxy_cpu_seconds: f64,
    /// The generator's core and the proxy's core, busy fraction 0..1 (every process on them).
    pub generator_core_busy: f64,
    pub proxy_core_busy: f64,
}

/// `/proc/<pid>/status` of a proxy, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Memory {
    pub idle_rss: u64,
    pub loaded_rss: u64,
    pub peak_rss: u64,
}

/// Everything the section is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Results {
    pub runs: Vec<Run>,
    pub gateway_memory: Memory,
    pub nginx_memory: Memory,
    /// Half of nginx's best keep-alive rate: where latency is measured.
    pub half_rate: u32,
    pub rounds: usize,
    pub run_seconds: u64,
    pub nginx_version: String,
    pub gateway_audit_records: u64,
}

/// Runs the benchmark and writes its section of `docs/benchmarks.md`.
pub fn run() -> Result<()> {
    let machine = Machine::describe();
    if available_cores()? < 2 {
        bail!(
            "the gateway benchmark pins the proxy and the load generator to two different cores: this machine has one"
        );
    }
    let nginx = nginx_binary()?;
    let vegeta = tools::vegeta()?;
    let gateway = build_gateway()?;
    let dir = paths::target_dir().join("bench-gateway");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let run_seconds = std::env::var("GOVPAAS_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(RUN_SECONDS);
    let results = measure(&Binaries { nginx, vegeta, gateway }, &dir, run_seconds)?;
    let section = gateway_section(&results, &machine);
    let path = paths::workspace_root().join("docs").join("benchmarks.md");
    write_section(&path, "gateway", &section)?;
    println!("{section}");
    println!("xtask: results written to {}", path.display());
    Ok(())
}

struct Binaries {
    nginx: PathBuf,
    vegeta: PathBuf,
    gateway: PathBuf,
}

/// The addresses of the three servers.
struct Ports {
    upstream: SocketAddr,
    nginx: SocketAddr,
    gateway: SocketAddr,
}

fn measure(bin: &Binaries, dir: &Path, run_seconds: u64) -> Result<Results> {
    write_pki(dir)?;
    let ports = Ports { upstream: free_port()?, nginx: free_port()?, gateway: free_port()? };
    for name in ["upstream", "nginx", "audit"] {
        std::fs::create_dir_all(dir.join(name))?;
    }
    std::fs::create_dir_all(dir.join("routes"))?;
    std::fs::write(dir.join("routes").join("bench.json"), routes_json(&consumer_identity()?))?;
    std::fs::write(dir.join("upstream/nginx.conf"), upstream_config(&dir.join("upstream"), ports.upstream))?;
    std::fs::write(dir.join("nginx/nginx.conf"), proxy_config(&dir.join("nginx"), dir, ports.nginx, ports.upstream))?;

    let nginx_version = command_stderr(Command::new(&bin.nginx).arg("-v"));
    let _upstream = Server::start(
        "upstream",
        pinned(&bin.nginx, PROXY_CORE).args(nginx_args(&dir.join("upstream"))),
        ports.upstream,
        dir,
    )?;
    let nginx =
        Server::start("nginx", pinned(&bin.nginx, PROXY_CORE).args(nginx_args(&dir.join("nginx"))), ports.nginx, dir)?;
    let gateway = Server::start(
        "gateway",
        pinned(&bin.gateway, PROXY_CORE).args(gateway_args(dir, ports.gateway, ports.upstream)),
        ports.gateway,
        dir,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let idle = |server: &Server| -> Result<u64> { status_kib(server.pid(), "VmRSS") };
    let (gateway_idle, nginx_idle) = (idle(&gateway)?, idle(&nginx)?);

    let vegeta = Vegeta { binary: bin.vegeta.clone(), dir: dir.to_owned() };
    let servers = |target: Target| match target {
        Target::Gateway => Some(&gateway),
        Target::Nginx => Some(&nginx),
        Target::Direct => None,
    };
    let url = |target: Target| match target {
        Target::Gateway => format!("https://{GATEWAY_HOST}:{}/{PROVIDER}/{API}/thua-dat/42", ports.gateway.port()),
        Target::Nginx => format!("https://{GATEWAY_HOST}:{}/{PROVIDER}/{API}/thua-dat/42", ports.nginx.port()),
        Target::Direct => format!("http://{}/api/v1/thua-dat/42", ports.upstream),
    };
    // Both proxies answer, and answer 200, before anything is timed; this also warms them up.
    for target in [Target::Gateway, Target::Nginx, Target::Direct] {
        let report = vegeta.start(&url(target), Load::KeepAlive(4), 2)?.wait()?;
        if report.requests == 0 || report.success < 1.0 {
            bail!("{} did not answer the warm-up with 200: {report:?}", target.name());
        }
    }

    let mut runs = Vec::new();
    let one = |target: Target, load: Load, runs: &mut Vec<Run>| -> Result<()> {
        // The first half of a run opens its connections (a thousand handshakes take seconds) and
        // warms up; every figure, CPU time included, is taken over the second half.
        let seconds = run_length(load, run_seconds);
        let attack = vegeta.start(&url(target), load, seconds)?;
        std::thread::sleep(Duration::from_secs_f64(seconds as f64 / 2.0));
        let cpu_before = servers(target).map(|s| cpu_seconds(s.pid())).transpose()?;
        let cores_before = core_times()?;
        let outcome = attack.wait();
        let cores_after = core_times()?;
        let proxy_cpu_seconds = match (servers(target), cpu_before) {
            (Some(s), Some(before)) => cpu_seconds(s.pid())? - before,
            _ => 0.0,
        };
        let report = outcome?;
        let busy = |core: u32| busy_fraction(&cores_before, &cores_after, core as usize);
        let run = Run {
            target,
            load,
            report,
            proxy_cpu_seconds,
            generator_core_busy: busy(GENERATOR_CORE),
            proxy_core_busy: busy(PROXY_CORE),
        };
        eprintln!("xtask: {}", describe_run(&run));
        runs.push(run);
        Ok(())
    };
    for round in 0..ROUNDS {
        eprintln!("xtask: round {} of {ROUNDS}", round + 1);
        // Alternate which proxy goes first, so neither always runs right after the other.
        let proxies = if round % 2 == 0 { [Target::Gateway, Target::Nginx] } else { [Target::Nginx, Target::Gateway] };
        for connections in CONNECTIONS {
            for target in proxies.into_iter().chain([Target::Direct]) {
                one(target, Load::KeepAlive(connections), &mut runs)?;
            }
        }
        for target in proxies {
            one(target, Load::Handshakes(HANDSHAKE_WORKERS), &mut runs)?;
        }
    }
    let half_rate = (best_keepalive_rate(&runs, Target::Nginx) / 2.0).round().max(1.0) as u32;
    eprintln!("xtask: latency at {half_rate} requests/s, half of nginx's best rate");
    for round in 0..ROUNDS {
        let proxies = if round % 2 == 0 { [Target::Gateway, Target::Nginx] } else { [Target::Nginx, Target::Gateway] };
        for target in proxies.into_iter().chain([Target::Direct]) {
            one(target, Load::Rate(half_rate), &mut runs)?;
        }
    }
    let memory = |server: &Server, idle_rss: u64| -> Result<Memory> {
        Ok(Memory {
            idle_rss,
            loaded_rss: status_kib(server.pid(), "VmRSS")?,
            peak_rss: status_kib(server.pid(), "VmHWM")?,
        })
    };
    let gateway_audit_records = audit_records(&dir.join("audit"));
    Ok(Results {
        gateway_memory: memory(&gateway, gateway_idle)?,
        nginx_memory: memory(&nginx, nginx_idle)?,
        runs,
        half_rate,
        rounds: ROUNDS,
        run_seconds,
        nginx_version,
        gateway_audit_records,
    })
}

/// One line for the progress output.
fn describe_run(run: &Run) -> String {
    format!(
        "{:<16} {:<18} {:>9.0} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  success {:.4}  proxy CPU {:.2} s  cores busy: generator {:.0} %, proxy {:.0} %{}",
        run.target.name(),
        format!("{:?}", run.load),
        run.report.throughput,
        millis(run.report.p50),
        millis(run.report.p99),
        run.report.success,
        run.proxy_cpu_seconds,
        run.generator_core_busy * 100.0,
        run.proxy_core_busy * 100.0,
        if run.report.errors.is_empty() { String::new() } else { format!("  errors: {:?}", run.report.errors) },
    )
}

/// The platform CA, the gateway's tenant CA and server certificate, the consumer's tenant CA and
/// client certificate: ECDSA P-256, as govpaas-pki issues them in a province.
fn write_pki(dir: &Path) -> Result<()> {
    let policy = IssuancePolicy::default();
    let now = time::OffsetDateTime::now_utc();
    let platform =
        generate_platform_ca(&PlatformCaRequest::new(BASE_DOMAIN, "Trung tâm Dữ liệu tỉnh Quảng Nam"), &policy, now)?;
    let gateway_tenant = tenant(&platform, "H49", "h49.quangnam.gov.vn")?;
    let consumer_tenant = tenant(&platform, CONSUMER_AGENCY, "stc.quangnam.gov.vn")?;
    let server =
        gateway_tenant.issue_server_certificate(&ServerCertificateRequest::new([GATEWAY_HOST]), &policy, now)?;
    let identity =
        consumer_tenant.agency().context("the consumer's tenant CA names no agency")?.workload("dss", API)?;
    let client = consumer_tenant.issue_client_certificate(&ClientCertificateRequest { identity }, &policy, now)?;
    let files = [
        ("ca.crt", platform.certificate_pem()),
        ("tls.crt", server.chain_pem()),
        ("tls.key", server.private_key_pem().expose()),
        ("client.crt", client.chain_pem()),
        ("client.key", client.private_key_pem().expose()),
    ];
    for (name, pem) in files {
        std::fs::write(dir.join(name), pem).with_context(|| format!("writing {name}"))?;
    }
    Ok(())
}

fn tenant(platform: &CertificateAuthority, code: &str, domain: &str) -> Result<CertificateAuthority> {
    let request = TenantCaRequest {
        base_domain: BASE_DOMAIN.to_owned(),
        agency_code: code.to_owned(),
        display_name: format!("Cơ quan {code}"),
        domain: domain.to_owned(),
    };
    Ok(platform.issue_tenant_ca(&request, &IssuancePolicy::default(), time::OffsetDateTime::now_utc())?)
}

/// The client certificate's identity, as the route table grants it.
fn consumer_identity() -> Result<String> {
    let agency = govpaas_pki::AgencyIdentity::new(BASE_DOMAIN, CONSUMER_AGENCY)?;
    Ok(agency.workload("dss", API)?.uri())
}

/// The provider's route table (schema `govpaas.io/lgsp-routes/v1`, as the operator writes it): one
/// API granted to the consumer and routed to the upstream, with a rate limit far above any rate here.
pub fn routes_json(consumer: &str) -> String {
    serde_json::json!({
        "schema": "govpaas.io/lgsp-routes/v1",
        "source": {"namespace": "stnmt", "name": "bench", "uid": "bench"},
        "agencyCode": PROVIDER,
        "routes": [{
            "api": API,
            "pathPrefix": format!("/{PROVIDER}/{API}/"),
            "upstream": {"namespace": "stnmt", "service": "provider", "port": 8080, "path": "/api/v1"},
            "rateLimit": {"requestsPerMinute": 600_000_000, "burst": 1_000_000},
            "openData": false,
            "consumers": [{"identity": consumer, "agencyCode": CONSUMER_AGENCY, "service": API}],
        }],
    })
    .to_string()
}

/// The gateway as the chart runs it (audit on, fsync on, info logs), with the route table above
/// and a connection cap raised above the sweep's thousand connections from one address.
fn gateway_args(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> Vec<String> {
    let d = dir.display();
    vec![
        "serve".into(),
        format!("--tls-cert={d}/tls.crt"),
        format!("--tls-key={d}/tls.key"),
        format!("--client-ca={d}/ca.crt"),
        format!("--routes={d}/routes"),
        format!("--listen={listen}"),
        format!("--audit-log={d}/audit/audit.jsonl"),
        "--audit-fsync=true".into(),
        format!("--resolve=provider.stnmt.svc={upstream}"),
        "--max-connections=4096".into(),
        "--max-connections-per-address=4096".into(),
    ]
}

/// nginx in the foreground, one worker process and no master, from a directory of its own.
fn nginx_args(dir: &Path) -> Vec<String> {
    vec!["-p".into(), dir.display().to_string(), "-c".into(), dir.join("nginx.conf").display().to_string()]
}

fn nginx_main(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 16384;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log warn;\nevents {{ worker_connections 8192; }}\n"
    )
}

fn temp_paths(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "    client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
         uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n"
    )
}

/// The upstream: plain HTTP, keep-alive without a request cap, the fixed body for every path.
pub fn upstream_config(dir: &Path, listen: SocketAddr) -> String {
    format!(
        "{main}http {{\n{temp}    access_log off;\n    keepalive_requests 100000000;\n    keepalive_timeout 300s;\n    \
         server {{\n        listen {listen} reuseport backlog=4096;\n        location / {{\n            \
         default_type application/json;\n            return 200 '{UPSTREAM_BODY}';\n        }}\n    }}\n}}\n",
        main = nginx_main(dir),
        temp = temp_paths(dir),
    )
}

/// nginx as the gateway's peer: mutual TLS against the platform CA (the client presents its chain
/// through its tenant CA), the one API proxied to the upstream over kept-alive connections, the
/// consumer named to the upstream, and every request written to the access log.
pub fn proxy_config(dir: &Path, pki: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let p = pki.display();
    let d = dir.display();
    format!(
        "{main}http {{\n{temp}    access_log {d}/access.log combined;\n    keepalive_requests 100000000;\n    \
         keepalive_timeout 300s;\n    upstream provider {{\n        server {upstream};\n        keepalive 1024;\n        \
         keepalive_requests 100000000;\n    }}\n    server {{\n        listen {listen} ssl reuseport backlog=4096;\n        \
         ssl_certificate {p}/tls.crt;\n        ssl_certificate_key {p}/tls.key;\n        \
         ssl_client_certificate {p}/ca.crt;\n        ssl_verify_client on;\n        ssl_verify_depth 2;\n        \
         location /{PROVIDER}/{API}/ {{\n            proxy_pass http://provider/api/v1/;\n            \
         proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            \
         proxy_set_header X-Lgsp-Consumer $ssl_client_s_dn;\n        }}\n        location / {{\n            \
         return 404;\n        }}\n    }}\n}}\n",
        main = nginx_main(dir),
        temp = temp_paths(dir),
    )
}

/// vegeta, run on the generator's core.
struct Vegeta {
    binary: PathBuf,
    dir: PathBuf,
}

impl Vegeta {
    fn start(&self, url: &str, load: Load, seconds: u64) -> Result<Attack> {
        let targets = self.dir.join("targets.txt");
        std::fs::write(&targets, format!("GET {url}\n"))?;
        let results = self.dir.join("results.bin");
        let args = attack_args(url, load, seconds.max(1), &self.dir, &targets, &results);
        let child = pinned(&self.binary, GENERATOR_CORE)
            .args(&args)
            .stdout(Stdio::null())
            .spawn()
            .context("starting vegeta attack")?;
        Ok(Attack { child, binary: self.binary.clone(), results, seconds: seconds.max(1), args })
    }
}

/// A vegeta attack under way.
struct Attack {
    child: Child,
    binary: PathBuf,
    results: PathBuf,
    seconds: u64,
    args: Vec<String>,
}

impl Attack {
    /// Waits for the attack to end; its figures over the second half of its duration.
    fn wait(mut self) -> Result<Report> {
        let status = self.child.wait().context("waiting for vegeta attack")?;
        if !status.success() {
            bail!("vegeta attack {} failed: {status}", self.args.join(" "));
        }
        let output = |args: &[&str]| -> Result<String> {
            let out = Command::new(&self.binary).args(args).arg(&self.results).output()?;
            if !out.status.success() {
                bail!("vegeta {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let whole = parse_report(&output(&["report", "-type=json"])?)?;
        let samples = parse_samples(&output(&["encode", "-to=csv"])?);
        let half = Duration::from_secs_f64(self.seconds as f64 / 2.0);
        Ok(window(&samples, half, half * 2, whole.errors))
    }
}

/// How long a run lasts: twice as long for the sweep beyond 64 connections, whose first half
/// opens hundreds of connections.
fn run_length(load: Load, run_seconds: u64) -> u64 {
    match load {
        Load::KeepAlive(n) if n > 64 => run_seconds * 2,
        _ => run_seconds,
    }
}

/// One request, from `vegeta encode -to=csv`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When it was sent, in Unix nanoseconds.
    pub sent_ns: i64,
    pub code: u16,
    pub latency_ns: u64,
}

/// The first three columns of vegeta's CSV (timestamp, code, latency: numbers, before any quoted
/// field); lines that do not start so are skipped.
pub fn parse_samples(csv: &str) -> Vec<Sample> {
    csv.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, ',');
            Some(Sample {
                sent_ns: fields.next()?.parse().ok()?,
                code: fields.next()?.parse().ok()?,
                latency_ns: fields.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The figures of the requests sent between `from` and `to` after the first one: successful (2xx)
/// requests per second of the window, the fraction answered 2xx, and latency percentiles.
pub fn window(samples: &[Sample], from: Duration, to: Duration, errors: Vec<String>) -> Report {
    let first = samples.iter().map(|s| s.sent_ns).min().unwrap_or(0);
    let (from_ns, to_ns) = (first + from.as_nanos() as i64, first + to.as_nanos() as i64);
    let inside: Vec<&Sample> = samples.iter().filter(|s| s.sent_ns >= from_ns && s.sent_ns < to_ns).collect();
    let ok = inside.iter().filter(|s| (200..300).contains(&s.code)).count();
    let mut latencies: Vec<u64> = inside.iter().map(|s| s.latency_ns).collect();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len().max(1));
        Duration::from_nanos(latencies.get(rank - 1).copied().unwrap_or(0))
    };
    Report {
        requests: inside.len() as u64,
        throughput: ok as f64 / (to - from).as_secs_f64(),
        success: if inside.is_empty() { 0.0 } else { ok as f64 / inside.len() as f64 },
        p50: percentile(0.50),
        p99: percentile(0.99),
        errors,
    }
}

/// `vegeta attack`'s arguments: HTTP/1.1, the client certificate, the platform CA as the only
/// root, `GATEWAY_HOST` connected to on loopback, no response body kept.
pub fn attack_args(url: &str, load: Load, seconds: u64, pki: &Path, targets: &Path, results: &Path) -> Vec<String> {
    let p = pki.display();
    let mut args = vec![
        "attack".to_owned(),
        format!("-duration={seconds}s"),
        "-http2=false".into(),
        "-timeout=10s".into(),
        "-max-body=0".into(),
        format!("-targets={}", targets.display()),
        format!("-output={}", results.display()),
    ];
    if let Some(port) = url.strip_prefix(&format!("https://{GATEWAY_HOST}:")).and_then(|rest| rest.split('/').next()) {
        args.extend([
            format!("-cert={p}/client.crt"),
            format!("-key={p}/client.key"),
            format!("-root-certs={p}/ca.crt"),
            format!("-connect-to={GATEWAY_HOST}:{port}:127.0.0.1:{port}"),
        ]);
    }
    match load {
        Load::KeepAlive(n) => args.extend([
            "-rate=0".into(),
            format!("-workers={n}"),
            format!("-max-workers={n}"),
            format!("-connections={n}"),
            format!("-max-connections={n}"),
        ]),
        Load::Handshakes(n) => args.extend([
            "-rate=0".into(),
            "-keepalive=false".into(),
            format!("-workers={n}"),
            format!("-max-workers={n}"),
        ]),
        // As many connections as the 64-connection run, opened in the first half: never a storm
        // of new connections when answers slow down.
        Load::Rate(r) => args.extend([
            format!("-rate={r}/1s"),
            "-workers=64".into(),
            "-max-workers=64".into(),
            "-connections=64".into(),
            "-max-connections=64".into(),
        ]),
    }
    args
}

/// Parses `vegeta report -type=json` (latencies in nanoseconds).
pub fn parse_report(json: &str) -> Result<Report> {
    let v: Value = serde_json::from_str(json).context("parsing vegeta's JSON report")?;
    let num = |value: &Value, what: &str| value.as_f64().with_context(|| format!("vegeta's report lacks {what}"));
    let nanos = |key: &str| num(&v["latencies"][key], key).map(|n| Duration::from_nanos(n.max(0.0) as u64));
    Ok(Report {
        requests: num(&v["requests"], "requests")? as u64,
        throughput: num(&v["throughput"], "throughput")?,
        success: num(&v["success"], "success")?,
        p50: nanos("50th")?,
        p99: nanos("99th")?,
        errors: v["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    })
}

/// The median of a non-empty list (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 { values[mid] } else { (values[mid - 1] + values[mid]) / 2.0 }
}

impl Results {
    fn runs_of(&self, target: Target, load: Load) -> impl Iterator<Item = &Run> {
        self.runs.iter().filter(move |r| r.target == target && r.load == load)
    }

    /// The median over rounds of `f` for this target and load.
    fn median_of(&self, target: Target, load: Load, f: impl Fn(&Run) -> f64) -> f64 {
        median(self.runs_of(target, load).map(f).collect())
    }

    fn throughput(&self, target: Target, load: Load) -> f64 {
        self.median_of(target, load, |r| r.report.throughput)
    }

    /// Successful requests per CPU-second of the proxy process: the per-core rate.
    fn per_cpu_second(&self, target: Target, load: Load) -> f64 {
        self.median_of(target, load, |r| {
            if r.proxy_cpu_seconds > 0.0 { successful(r) / r.proxy_cpu_seconds } else { f64::NAN }
        })
    }

    fn generator_busy(&self, load: Load) -> f64 {
        median(
            self.runs
                .iter()
                .filter(|r| r.load == load && r.target != Target::Direct)
                .map(|r| r.generator_core_busy)
                .collect(),
        )
    }

    fn proxy_busy(&self, target: Target, load: Load) -> f64 {
        self.median_of(target, load, |r| r.proxy_core_busy)
    }

    fn worst_success(&self, target: Target) -> f64 {
        self.runs.iter().filter(|r| r.target == target).map(|r| r.report.success).fold(1.0, f64::min)
    }
}

/// Successful requests of a run.
fn successful(run: &Run) -> f64 {
    run.report.requests as f64 * run.report.success
}

/// The best keep-alive rate (median over rounds) of a target over the headline concurrencies.
fn best_keepalive_rate(runs: &[Run], target: Target) -> f64 {
    HEADLINE_CONNECTIONS
        .iter()
        .map(|&n| {
            median(
                runs.iter()
                    .filter(|r| r.target == target && r.load == Load::KeepAlive(n))
                    .map(|r| r.report.throughput)
                    .collect(),
            )
        })
        .fold(0.0, f64::max)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn met(ok: bool) -> &'static str {
    if ok { "**met**" } else { "**not met**" }
}

fn rate(v: f64) -> String {
    if v.is_finite() { thousands(v.round() as u64) } else { "–".to_owned() }
}

/// The section of `docs/benchmarks.md`.
pub fn gateway_section(r: &Results, m: &Machine) -> String {
    use std::fmt::Write;
    let date = time::OffsetDateTime::now_utc().date();
    let (gw, ng, direct) = (Target::Gateway, Target::Nginx, Target::Direct);
    let mut s = String::new();
    let _ = write!(
        s,
        "## The gateway against nginx\n\
         \n\
         `cargo xtask bench gateway` (`xtask/src/bench/gateway.rs`), run on {date}.\n\
         \n\
         Machine: {model}; {cpus} CPUs (`nproc`); {memory} memory; {rustc}; Linux {kernel}; load average \
         {load} when the run started (the machine is shared with other builds: every figure is the median of \
         {rounds} rounds in which the two proxies ran alternately, so a neighbour's build hurts both alike; the \
         ratios are the figures to read). Each run lasts {secs} s ({sweep} s beyond 64 connections); its first \
         half opens the connections and warms up, and every figure — rates, latencies, CPU time, core use — \
         is taken over its second half.\n\
         \n\
         **Setup.** govpaas-gateway (release build, audit on with an fdatasync per answer as the chart runs it, \
         a route table granting the client certificate's identity one API) and {nginx_version} (one worker, \
         `ssl_verify_client on`, keep-alive upstream, access log on — written, never synced), each an mTLS reverse proxy in front of \
         the same upstream: a second nginx answering a {body}-byte JSON body over plain HTTP/1.1 keep-alive. \
         Both proxies serve the same ECDSA P-256 server certificate chain and trust the same platform CA, made \
         by govpaas-pki. The proxy under test and the upstream are pinned to core {pc} (`taskset`), the load \
         generator — vegeta {vegeta} over HTTP/1.1, presenting the client certificate and its tenant CA, \
         verifying the server's chain, no session resumption — to core {gc}. \"Per CPU-second\" divides the \
         successful requests by the user+system time of the proxy process alone (`/proc/<pid>/stat`), so the \
         upstream's share of the core is not charged to either proxy. The gateway's connection caps were \
         raised to 4,096 (its default is 128 per client address) for the sweep. The gateway wrote {audit} \
         audit records in this run.\n\
         \n",
        model = m.cpu_model,
        cpus = m.cpus,
        memory = m.memory,
        rustc = m.rustc,
        kernel = m.kernel,
        load = m.load_average,
        rounds = r.rounds,
        secs = r.run_seconds,
        sweep = r.run_seconds * 2,
        nginx_version = r.nginx_version,
        body = UPSTREAM_BODY.len(),
        pc = PROXY_CORE,
        gc = GENERATOR_CORE,
        vegeta = tools::VEGETA_VERSION,
        audit = thousands(r.gateway_audit_records),
    );

    let _ = write!(
        s,
        "### Requests per second over keep-alive connections\n\
         \n\
         | connections | upstream direct (ceiling) | nginx | gateway | **gateway ÷ nginx** | nginx per CPU-s | gateway per CPU-s | **÷ per CPU-s** | generator core busy | proxy core busy (nginx / gateway) |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for n in CONNECTIONS {
        let load = Load::KeepAlive(n);
        let _ = writeln!(
            s,
            "| {n} | {direct} | {ng_rate} | {gw_rate} | **{ratio:.2}×** | {ng_cpu} | {gw_cpu} | **{cpu_ratio:.2}×** | {gen:.0} % | {ngb:.0} % / {gwb:.0} % |",
            direct = rate(r.throughput(direct, load)),
            ng_rate = rate(r.throughput(ng, load)),
            gw_rate = rate(r.throughput(gw, load)),
            ratio = r.throughput(gw, load) / r.throughput(ng, load),
            ng_cpu = rate(r.per_cpu_second(ng, load)),
            gw_cpu = rate(r.per_cpu_second(gw, load)),
            cpu_ratio = r.per_cpu_second(gw, load) / r.per_cpu_second(ng, load),
            gen = r.generator_busy(load) * 100.0,
            ngb = r.proxy_busy(ng, load) * 100.0,
            gwb = r.proxy_busy(gw, load) * 100.0,
        );
    }
    let hs = Load::Handshakes(HANDSHAKE_WORKERS);
    let _ = write!(
        s,
        "\n### New connections (a full TLS 1.3 handshake with a client certificate per request, {HANDSHAKE_WORKERS} at once)\n\
         \n\
         | | nginx | gateway | **gateway ÷ nginx** |\n\
         |---|---:|---:|---:|\n\
         | handshakes (requests) per second | {ng_hs} | {gw_hs} | **{hs_ratio:.2}×** |\n\
         | per CPU-second of the proxy | {ng_hs_cpu} | {gw_hs_cpu} | **{hs_cpu_ratio:.2}×** |\n\
         | proxy core busy | {ng_hs_busy:.0} % | {gw_hs_busy:.0} % | |\n\
         \n\
         The generator's core was {gen_hs:.0} % busy.\n",
        ng_hs = rate(r.throughput(ng, hs)),
        gw_hs = rate(r.throughput(gw, hs)),
        hs_ratio = r.throughput(gw, hs) / r.throughput(ng, hs),
        ng_hs_cpu = rate(r.per_cpu_second(ng, hs)),
        gw_hs_cpu = rate(r.per_cpu_second(gw, hs)),
        hs_cpu_ratio = r.per_cpu_second(gw, hs) / r.per_cpu_second(ng, hs),
        ng_hs_busy = r.proxy_busy(ng, hs) * 100.0,
        gw_hs_busy = r.proxy_busy(gw, hs) * 100.0,
        gen_hs = r.generator_busy(hs) * 100.0,
    );

    let half = Load::Rate(r.half_rate);
    let p = |target: Target, f: fn(&Report) -> Duration| r.median_of(target, half, |run| millis(f(&run.report)));
    let (d50, d99) = (p(direct, |x| x.p50), p(direct, |x| x.p99));
    let (n50, n99) = (p(ng, |x| x.p50), p(ng, |x| x.p99));
    let (g50, g99) = (p(gw, |x| x.p50), p(gw, |x| x.p99));
    let _ = write!(
        s,
        "\n### Latency at half of nginx's best rate ({half_rate} requests/s, keep-alive)\n\
         \n\
         | | upstream direct | nginx | gateway | gateway ÷ nginx |\n\
         |---|---:|---:|---:|---:|\n\
         | p50 | {d50:.3} ms | {n50:.3} ms | {g50:.3} ms | {r50:.2}× |\n\
         | p99 | {d99:.3} ms | {n99:.3} ms | {g99:.3} ms | {r99:.2}× |\n\
         | p99 added to the direct path | | {na:.3} ms | **{ga:.3} ms** | |\n\
         | achieved rate | {dr} /s | {nr} /s | {gr} /s | |\n",
        half_rate = thousands(r.half_rate as u64),
        r50 = g50 / n50,
        r99 = g99 / n99,
        na = n99 - d99,
        ga = g99 - d99,
        dr = rate(r.throughput(direct, half)),
        nr = rate(r.throughput(ng, half)),
        gr = rate(r.throughput(gw, half)),
    );

    let (gm, nm) = (r.gateway_memory, r.nginx_memory);
    let _ = write!(
        s,
        "\n### Memory (`/proc/<pid>/status`)\n\
         \n\
         | | nginx | gateway | gateway ÷ nginx |\n\
         |---|---:|---:|---:|\n\
         | RSS idle (started, before any request) | {:.1} MiB | {:.1} MiB | {:.2}× |\n\
         | RSS after the whole run | {:.1} MiB | {:.1} MiB | {:.2}× |\n\
         | peak RSS (VmHWM, up to 1,000 connections) | {:.1} MiB | {:.1} MiB | {:.2}× |\n",
        mib(nm.idle_rss),
        mib(gm.idle_rss),
        gm.idle_rss as f64 / nm.idle_rss as f64,
        mib(nm.loaded_rss),
        mib(gm.loaded_rss),
        gm.loaded_rss as f64 / nm.loaded_rss as f64,
        mib(nm.peak_rss),
        mib(gm.peak_rss),
        gm.peak_rss as f64 / nm.peak_rss as f64,
    );

    // Per core: requests per proxy CPU-second, the worst of the issue's three concurrencies.
    let per_core = HEADLINE_CONNECTIONS
        .iter()
        .map(|&n| r.per_cpu_second(gw, Load::KeepAlive(n)) / r.per_cpu_second(ng, Load::KeepAlive(n)))
        .fold(f64::INFINITY, f64::min);
    let raw = HEADLINE_CONNECTIONS
        .iter()
        .map(|&n| r.throughput(gw, Load::KeepAlive(n)) / r.throughput(ng, Load::KeepAlive(n)))
        .fold(f64::INFINITY, f64::min);
    let added = g99 - d99;
    let idle_mib = mib(gm.idle_rss);
    let collapse = |target: Target| {
        let best = CONNECTIONS[..CONNECTIONS.len() - 1]
            .iter()
            .map(|&n| r.throughput(target, Load::KeepAlive(n)))
            .fold(0.0, f64::max);
        let at_1000 = r.throughput(target, Load::KeepAlive(1000));
        let success = r.median_of(target, Load::KeepAlive(1000), |run| run.report.success);
        (at_1000 / best, success)
    };
    let (gw_keep, gw_ok) = collapse(gw);
    let (ng_keep, ng_ok) = collapse(ng);
    let no_collapse = gw_keep >= 0.5 && gw_ok >= 0.999;
    let _ = write!(
        s,
        "\n### Against the issue's targets\n\
         \n\
         | target | measured | |\n\
         |---|---|---|\n\
         | ≥ 1.0× nginx's requests/s per core, mTLS and audit on | {per_core:.2}× per proxy CPU-second (worst of 1, 16, 64 connections); {raw:.2}× in raw requests/s | {m1} |\n\
         | p99 added latency < 1 ms at half load | {added:.3} ms (nginx: {na:.3} ms) | {m2} |\n\
         | RSS ≤ 32 MiB idle | {idle_mib:.1} MiB (nginx: {nidle:.1} MiB) | {m3} |\n\
         | no collapse at 1,000 connections (≥ half of its best rate, every request answered) | gateway {gw_keep:.2}× its best, {gw_ok_pct:.2} % answered; nginx {ng_keep:.2}×, {ng_ok_pct:.2} % | {m4} |\n",
        m1 = met(per_core >= 1.0),
        m2 = met(added < 1.0),
        na = n99 - d99,
        nidle = mib(nm.idle_rss),
        m3 = met(idle_mib <= 32.0),
        gw_ok_pct = gw_ok * 100.0,
        ng_ok_pct = ng_ok * 100.0,
        m4 = met(no_collapse),
    );

    // What limits the figures: a saturated generator caps both proxies alike and hides their gap.
    let saturated: Vec<String> =
        CONNECTIONS.iter().filter(|&&n| r.generator_busy(Load::KeepAlive(n)) >= 0.95).map(|n| n.to_string()).collect();
    let mut limits = Vec::new();
    if saturated.is_empty() {
        limits.push("the generator's core was below 95 % busy in every keep-alive run".to_owned());
    } else {
        limits.push(format!(
            "**vegeta saturated its core** at {} keep-alive connection(s): there the raw rates are the generator's as \
             much as the proxies', and the per-CPU-second ratio is the one that compares the proxies",
            saturated.join(", ")
        ));
    }
    // A proxy whose own core was full while the generator's had room is the limit itself.
    for target in [gw, ng] {
        let own_core: Vec<String> = CONNECTIONS
            .iter()
            .filter(|&&n| {
                let load = Load::KeepAlive(n);
                r.generator_busy(load) < 0.95 && r.proxy_busy(target, load) >= 0.9
            })
            .map(|n| n.to_string())
            .collect();
        if !own_core.is_empty() {
            limits.push(format!(
                "{} filled its own core (≥ 90 % busy, with the upstream) while the generator's had room at {} \
                 connection(s): there it is its own limit",
                target.name(),
                own_core.join(", ")
            ));
        }
    }
    for target in [gw, ng] {
        let reached = r.throughput(target, half);
        if reached < 0.95 * r.half_rate as f64 {
            limits.push(format!(
                "{} could not sustain half of nginx's best rate (it reached {} of {} requests/s): its latencies \
                 there are a saturated proxy's, queueing included",
                target.name(),
                rate(reached),
                thousands(r.half_rate as u64)
            ));
        }
    }
    if r.generator_busy(hs) >= 0.95 {
        limits.push(
            "the handshake rate is bounded by vegeta's own handshakes (its core was saturated): compare per CPU-second"
                .to_owned(),
        );
    }
    for target in [gw, ng] {
        let worst = r.worst_success(target);
        if worst < 1.0 {
            limits.push(format!("{} answered only {:.2} % of one run's requests", target.name(), worst * 100.0));
        }
    }
    let _ = write!(s, "\nWhat limits these figures: {}.\n", limits.join("; "));
    s
}

/// Logical CPUs this process may run on.
fn available_cores() -> Result<usize> {
    Ok(std::thread::available_parallelism()?.get())
}

/// `taskset -c <core> <program>`: the program itself runs with that affinity (taskset execs it).
fn pinned(program: &Path, core: u32) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(core.to_string()).arg(program);
    cmd
}

fn free_port() -> Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A server process of the benchmark; killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(name: &'static str, command: &mut Command, addr: SocketAddr, dir: &Path) -> Result<Server> {
        let log = dir.join(format!("{name}.log"));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        for _ in 0..200 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(Server { child });
            }
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited ({status}): {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        bail!("{name} did not listen on {addr}: {}", std::fs::read_to_string(&log).unwrap_or_default())
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kib(&status, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User plus system CPU time of a process (all its threads), in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line; the command name may hold spaces.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Per core: (busy, total) jiffies from `/proc/stat`.
fn core_times() -> Result<Vec<(u64, u64)>> {
    Ok(parse_core_times(&std::fs::read_to_string("/proc/stat")?))
}

pub fn parse_core_times(stat: &str) -> Vec<(u64, u64)> {
    stat.lines()
        .filter(|line| line.starts_with("cpu") && line.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|line| {
            let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
            let total: u64 = values.iter().take(8).sum();
            // idle and iowait are fields 4 and 5.
            let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
            (total - idle, total)
        })
        .collect()
}

fn busy_fraction(before: &[(u64, u64)], after: &[(u64, u64)], core: usize) -> f64 {
    match (before.get(core), after.get(core)) {
        (Some(b), Some(a)) if a.1 > b.1 => (a.0 - b.0) as f64 / (a.1 - b.1) as f64,
        _ => f64::NAN,
    }
}

/// Lines in the gateway's audit files (the log and any rotated ones).
fn audit_records(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read(e.path()).ok())
                .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
                .sum()
        })
        .unwrap_or(0)
}

fn command_stderr(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("nginx version: ").to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nginx".to_owned())
}

/// nginx on `PATH` or in `/usr/sbin`; Debian's `nginx-light` installed with apt-get when missing, as
/// CI runs on a fresh machine.
fn nginx_binary() -> Result<PathBuf> {
    let find = || {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    };
    if let Some(found) = find() {
        return Ok(found);
    }
    eprintln!("xtask: nginx not found: installing Debian's nginx-light with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "nginx-light"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        // A fresh machine may hold no package lists yet.
        let _ = Command::new("apt-get").args(["update", "-q"]).stdout(Stdio::null()).status();
        install();
    }
    find().context("the gateway benchmark needs nginx: apt-get install nginx-light (as root)")
}

/// `cargo build --release -p govpaas-gateway`, and the binary's path.
fn build_gateway() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "govpaas-gateway", "--bin", "govpaas-gateway"])
        .current_dir(paths::workspace_root())
        .status()
        .context("starting cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p govpaas-gateway failed: {status}");
    }
    Ok(paths::target_dir().join("release").join("govpaas-gateway"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine::for_tests()
    }

    fn report(throughput: f64, p50_ms: u64, p99_ms: u64) -> Report {
        Report {
            requests: (throughput * 5.0) as u64,
            throughput,
            success: 1.0,
            p50: Duration::from_micros(p50_ms * 1000),
            p99: Duration::from_micros(p99_ms * 1000),
            errors: vec![],
        }
    }

    fn run(target: Target, load: Load, throughput: f64, cpu: f64, generator_busy: f64) -> Run {
        Run {
            target,
            load,
            report: report(throughput, 1, 2),
            proxy_cpu_seconds: cpu,
            generator_core_busy: generator_busy,
            proxy_core_busy: 0.5,
        }
    }

    /// Three rounds: the gateway does 8,000 req/s on 5 CPU-seconds, nginx 10,000 on 5, so the
    /// gateway is 0.8× in both; the second round of each is an outlier the median drops.
    fn results() -> Results {
        let mut runs = Vec::new();
        for round in 0..3 {
            let outlier = if round == 1 { 0.5 } else { 1.0 };
            for n in CONNECTIONS {
                let load = Load::KeepAlive(n);
                runs.push(run(Target::Gateway, load, 8000.0 * outlier, 5.0, 1.0));
                runs.push(run(Target::Nginx, load, 10000.0 * outlier, 5.0, 1.0));
                runs.push(run(Target::Direct, load, 30000.0, 0.0, 1.0));
            }
            runs.push(run(Target::Gateway, Load::Handshakes(HANDSHAKE_WORKERS), 1860.0, 5.0, 0.7));
            runs.push(run(Target::Nginx, Load::Handshakes(HANDSHAKE_WORKERS), 1000.0, 5.0, 0.7));
            let mut gw = run(Target::Gateway, Load::Rate(5000), 5000.0, 2.0, 0.5);
            gw.report.p99 = Duration::from_micros(3500);
            runs.push(gw);
            runs.push(run(Target::Nginx, Load::Rate(5000), 5000.0, 2.0, 0.5));
            runs.push(run(Target::Direct, Load::Rate(5000), 5000.0, 0.0, 0.5));
        }
        Results {
            runs,
            gateway_memory: Memory { idle_rss: 10 * 1024, loaded_rss: 20 * 1024, peak_rss: 40 * 1024 },
            nginx_memory: Memory { idle_rss: 5 * 1024, loaded_rss: 8 * 1024, peak_rss: 10 * 1024 },
            half_rate: 5000,
            rounds: 3,
            run_seconds: 5,
            nginx_version: "nginx/1.22.1".into(),
            gateway_audit_records: 123_456,
        }
    }

    #[test]
    fn the_section_gives_every_figure_as_a_ratio_beside_its_target() {
        let text = gateway_section(&results(), &machine());
        for needle in [
            "## The gateway against nginx",
            "Test CPU",
            "nginx/1.22.1",
            "123,456 audit records",
            "| 64 | 30,000 | 10,000 | 8,000 | **0.80×** | 10,000 | 8,000 | **0.80×** | 100 % | 50 % / 50 % |",
            "| 1000 | 30,000 | 10,000 | 8,000 | **0.80×**",
            "| handshakes (requests) per second | 1,000 | 1,860 | **1.86×** |",
            "(5,000 requests/s, keep-alive)",
            "| p99 added to the direct path | | 0.000 ms | **1.500 ms** | |",
            "| RSS idle (started, before any request) | 5.0 MiB | 10.0 MiB | 2.00× |",
            "| 0.80× per proxy CPU-second (worst of 1, 16, 64 connections); 0.80× in raw requests/s | **not met** |",
            "| 1.500 ms (nginx: 0.000 ms) | **not met** |",
            "| 10.0 MiB (nginx: 5.0 MiB) | **met** |",
            "gateway 1.00× its best, 100.00 % answered; nginx 1.00×, 100.00 % | **met** |",
            "**vegeta saturated its core** at 1, 16, 64, 256, 1000 keep-alive connection(s)",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
        // A gateway that filled its core, with the generator's to spare, and fell short of half load.
        let mut r = results();
        for run in r.runs.iter_mut() {
            run.generator_core_busy = 0.6;
            if run.target == Target::Gateway {
                run.proxy_core_busy = 0.97;
                if run.load == Load::Rate(5000) {
                    run.report.throughput = 3000.0;
                }
            }
        }
        let text = gateway_section(&r, &machine());
        for needle in [
            "govpaas-gateway filled its own core (≥ 90 % busy, with the upstream) while the generator's had room at 1, 16, 64, 256, 1000 connection(s)",
            "govpaas-gateway could not sustain half of nginx's best rate (it reached 3,000 of 5,000 requests/s)",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }

    #[test]
    fn a_collapse_at_a_thousand_connections_is_reported() {
        let mut r = results();
        for run in r.runs.iter_mut().filter(|run| run.target == Target::Gateway && run.load == Load::KeepAlive(1000)) {
            run.report.throughput = 1000.0;
            run.report.success = 0.9;
        }
        let text = gateway_section(&r, &machine());
        assert!(
            text.contains("gateway 0.12× its best, 90.00 % answered; nginx 1.00×, 100.00 % | **not met** |"),
            "{text}"
        );
        assert!(text.contains("govpaas-gateway answered only 90.00 % of one run's requests"), "{text}");
    }

    #[test]
    fn vegeta_reports_are_parsed() {
        let json = r#"{"latencies":{"total":5000000000,"mean":250000,"50th":200000,"90th":300000,"95th":400000,
            "99th":1500000,"max":9000000,"min":100000},"bytes_in":{"total":1,"mean":1},"requests":20000,
            "rate":4000.2,"throughput":3999.9,"success":0.995,"status_codes":{"200":19900,"0":100},
            "errors":["dial tcp: connection refused"]}"#;
        let report = parse_report(json).unwrap();
        assert_eq!(report.requests, 20000);
        assert_eq!(report.throughput, 3999.9);
        assert_eq!(report.success, 0.995);
        assert_eq!(report.p50, Duration::from_micros(200));
        assert_eq!(report.p99, Duration::from_micros(1500));
        assert_eq!(report.errors, ["dial tcp: connection refused"]);
        assert!(parse_report(r#"{"requests":1}"#).is_err());
        assert!(parse_report("not json").is_err());
    }

    #[test]
    fn proc_files_are_parsed() {
        let stat = "4242 (govpaas gate) S 1 4242 4242 0 -1 4194560 1234 0 0 0 1500 250 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat_ticks(stat), Some(1750));
        let status = "Name:\tnginx\nVmHWM:\t   12345 kB\nVmRSS:\t    6789 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(6789));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(12345));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        let cores = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 1 0 1 90 8 0 0 0 0 0\nintr 1\n";
        assert_eq!(parse_core_times(cores), [(10, 50), (2, 100)]);
        assert_eq!(busy_fraction(&[(10, 50)], &[(60, 150)], 0), 0.5);
        assert!(busy_fraction(&[], &[], 0).is_nan());
    }

    #[test]
    fn runs_are_measured_over_their_second_half() {
        let csv = "1000000000,200,1000000,0,84,,,,0,GET,https://x/,\n\
                   1500000000,200,2000000,0,84,,,,1,GET,https://x/,\n\
                   2000000000,200,3000000,0,84,,,,2,GET,https://x/,\n\
                   2500000000,503,9000000,0,84,\"a, quoted\nerror\",,,3,GET,https://x/,\n\
                   3000000000,200,4000000,0,84,,,,4,GET,https://x/,\n";
        let samples = parse_samples(csv);
        assert_eq!(samples.len(), 5, "the quoted error's second line is skipped");
        let report = window(&samples, Duration::from_secs(1), Duration::from_secs(2), vec![]);
        assert_eq!(report.requests, 2, "sent 1.0 s and 1.5 s after the first");
        assert_eq!(report.throughput, 1.0, "one 2xx in a one-second window");
        assert_eq!(report.success, 0.5);
        assert_eq!(report.p50, Duration::from_millis(3));
        assert_eq!(report.p99, Duration::from_millis(9));
        let empty = window(&[], Duration::from_secs(1), Duration::from_secs(2), vec![]);
        assert_eq!((empty.requests, empty.success, empty.p99), (0, 0.0, Duration::ZERO));
        assert_eq!(run_length(Load::KeepAlive(64), 8), 8);
        assert_eq!(run_length(Load::KeepAlive(1000), 8), 16);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }

    #[test]
    fn nginx_is_configured_as_an_mtls_reverse_proxy_with_keepalive_and_an_access_log() {
        let dir = Path::new("/b/nginx");
        let config =
            proxy_config(dir, Path::new("/b"), "127.0.0.1:8443".parse().unwrap(), "127.0.0.1:9000".parse().unwrap());
        for needle in [
            "daemon off;",
            "master_process off;",
            "worker_processes 1;",
            "listen 127.0.0.1:8443 ssl",
            "ssl_certificate /b/tls.crt;",
            "ssl_certificate_key /b/tls.key;",
            "ssl_client_certificate /b/ca.crt;",
            "ssl_verify_client on;",
            "ssl_verify_depth 2;",
            "server 127.0.0.1:9000;",
            "keepalive 1024;",
            "location /H49.14/bench/ {",
            "proxy_pass http://provider/api/v1/;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "access_log /b/nginx/access.log combined;",
            "pid /b/nginx/nginx.pid;",
        ] {
            assert!(config.contains(needle), "{needle} missing from:\n{config}");
        }
        assert_eq!(config.matches('{').count(), config.matches('}').count(), "balanced braces:\n{config}");
        let upstream = upstream_config(Path::new("/b/upstream"), "127.0.0.1:9000".parse().unwrap());
        assert!(upstream.contains("listen 127.0.0.1:9000") && upstream.contains("access_log off;"), "{upstream}");
        assert!(upstream.contains(&format!("return 200 '{UPSTREAM_BODY}';")), "{upstream}");
        assert_eq!(upstream.matches('{').count(), upstream.matches('}').count(), "balanced braces:\n{upstream}");
    }

    #[test]
    fn the_route_table_grants_the_client_identity_one_api_on_the_upstream() {
        let identity = consumer_identity().unwrap();
        assert_eq!(identity, "spiffe://quangnam.gov.vn/agency/H49.12/dss/bench");
        let table: Value = serde_json::from_str(&routes_json(&identity)).unwrap();
        assert_eq!(table["schema"], "govpaas.io/lgsp-routes/v1");
        let route = &table["routes"][0];
        assert_eq!(route["pathPrefix"], "/H49.14/bench/");
        assert_eq!(route["consumers"][0]["identity"], identity.as_str());
        assert_eq!(route["upstream"]["service"], "provider");
        assert!(route["rateLimit"]["requestsPerMinute"].as_u64().unwrap() >= 60 * 1_000_000, "never the limit");
        let args = gateway_args(Path::new("/b"), "127.0.0.1:8443".parse().unwrap(), "127.0.0.1:9000".parse().unwrap());
        assert!(args.contains(&"--resolve=provider.stnmt.svc=127.0.0.1:9000".to_owned()), "{args:?}");
        assert!(args.contains(&"--audit-fsync=true".to_owned()), "{args:?}");
    }

    #[test]
    fn vegeta_presents_the_client_certificate_to_proxies_only() {
        let (dir, targets, results) = (Path::new("/b"), Path::new("/b/t"), Path::new("/b/r"));
        let proxy = format!("https://{GATEWAY_HOST}:8443/H49.14/bench/x");
        let args = attack_args(&proxy, Load::KeepAlive(64), 5, dir, targets, results);
        for needle in [
            "-http2=false",
            "-cert=/b/client.crt",
            "-key=/b/client.key",
            "-root-certs=/b/ca.crt",
            "-connect-to=lgsp.h49.quangnam.gov.vn:8443:127.0.0.1:8443",
            "-rate=0",
            "-max-workers=64",
            "-max-connections=64",
            "-duration=5s",
        ] {
            assert!(args.iter().any(|a| a == needle), "{needle} missing from {args:?}");
        }
        let handshakes = attack_args(&proxy, Load::Handshakes(16), 5, dir, targets, results);
        assert!(handshakes.iter().any(|a| a == "-keepalive=false"), "{handshakes:?}");
        let direct = attack_args("http://127.0.0.1:9000/api/v1/x", Load::Rate(5000), 5, dir, targets, results);
        assert!(direct.iter().any(|a| a == "-rate=5000/1s"), "{direct:?}");
        assert!(!direct.iter().any(|a| a.starts_with("-cert")), "{direct:?}");
    }
}
