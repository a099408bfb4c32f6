//! `kubectl govpaas` against a real control plane of its own: the chart installed, the operator
//! running, the Đà Nẵng examples applied and converged (plus a clinic whose quota the operator
//! refuses), then the built `kubectl-govpaas` binary run with the admin's kubeconfig — through
//! kubectl's plugin mechanism once — and as agency admins (kubectl's `--as`), its output asserted:
//! the tree, the carving and the refused child, the grants, the certificates, what an agency
//! admin sees and the message for a user who may read nothing.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use govpaas_crds::{DataSharingService, DocumentService, Portal, Tenant};
use govpaas_operator::lgsp::GATEWAY_TLS_SECRET;
use govpaas_tests::gateway::GatewayProcess;
use govpaas_tests::operator::{self, OperatorProcess};
use govpaas_tests::{Cluster, eventually, private_cluster, unique_name};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(240);
const EXAMPLE_TENANTS: &[&str] = &["10-province.yaml", "20-departments.yaml", "30-communes.yaml", "40-units.yaml"];
const EXAMPLE_SERVICES: &[&str] = &["50-portals.yaml", "60-document-services.yaml", "70-data-sharing.yaml"];
/// Tenants in examples/danang: the committee, six departments, twelve communes, the hospital.
const EXAMPLE_TENANT_COUNT: usize = 20;

/// A clinic under the hospital asking for 8 CPU of the hospital's 4: refused, `QuotaExceeded`.
const CLINIC: &str = "apiVersion: govpaas.io/v1alpha1
kind: Tenant
metadata:
  name: phong-kham
  labels:
    SCOPE
spec:
  agency:
    code: \"H17.03.01.01\"
    displayName: \"Phòng khám đa khoa Hòa Khánh\"
    level: Unit
  parent: bv-danang
  admins:
    users: [cntt@benhviendanang.vn]
  quota: {cpu: \"8\", memory: 4Gi, storage: 20Gi, pods: 10, services: 5, publicHosts: 1, lgspApis: 1}
";

/// The plugin binary, built like the operator (`cargo build -p kubectl-govpaas`) into the
/// operator's target directory, whose dependencies (k8s-openapi, govpaas-crds) it shares.
fn plugin_binary() -> PathBuf {
    let binary = xtask::install::build_binary("kubectl-govpaas", "operator", xtask::install::Profile::Debug)
        .unwrap_or_else(|err| panic!("{err:#}"));
    assert!(binary.exists(), "{} is missing after cargo build", binary.display());
    binary
}

struct Plugin {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl Plugin {
    fn run(&self, args: &[&str]) -> Output {
        std::process::Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("NO_COLOR")
            .output()
            .expect("running kubectl-govpaas")
    }

    /// stdout of a run that must succeed (and its stderr, for the notes).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "kubectl govpaas {} failed:\n{stderr}\n{stdout}", args.join(" "));
        assert!(!stdout.contains('\x1b'), "no colour when stdout is not a terminal:\n{stdout}");
        (stdout, stderr)
    }

    fn json(&self, args: &[&str]) -> (Value, String) {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let (stdout, stderr) = self.ok(&all);
        let value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: not JSON:\n{stdout}"));
        (value, stderr)
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An example file with the test's scope label on every Tenant (the operator selects by it).
fn example(cluster: &Cluster, file: &str, scope_label: &str) -> String {
    let manifest = std::fs::read_to_string(cluster.root.join("examples/danang").join(file)).expect("an example");
    manifest.replace("kind: Tenant\nmetadata:\n", &format!("kind: Tenant\nmetadata:\n  labels:\n    {scope_label}\n"))
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn converge(cluster: &Cluster, client: &Client, operator: &OperatorProcess) {
    cluster.apply(&example(cluster, "00-platform.yaml", &operator.scope_label()));
    for file in EXAMPLE_TENANTS {
        let manifest = example(cluster, file, &operator.scope_label());
        assert!(manifest.contains(&operator.scope_label()), "{file} holds Tenants");
        cluster.apply(&manifest);
    }
    cluster.apply(&CLINIC.replace("SCOPE", &operator.scope_label()));
    let tenants: Api<Tenant> = Api::all(client.clone());
    let selector = ListParams::default().labels(&operator.selector());
    eventually(WAIT, "the example Tenants Ready with their CAs, the clinic refused", || async {
        let list = tenants.list(&selector).await.ok()?.items;
        let settled = list.iter().filter(|t| {
            let status = t.status.clone().unwrap_or_default();
            if t.name_any() == "phong-kham" {
                status.conditions.iter().any(|c| c.type_ == "QuotaExceeded" && c.status == "True")
            } else {
                ready(&status.conditions) && status.ca.as_ref().is_some_and(|ca| ca.not_after.is_some())
            }
        });
        (settled.count() == EXAMPLE_TENANT_COUNT + 1).then_some(())
    })
    .await;
    for file in EXAMPLE_SERVICES {
        cluster.apply(&example(cluster, file, &operator.scope_label()));
    }
    eventually(
        WAIT,
        "the examples' Portals, DocumentServices and DataSharingServices Ready, the grant decided",
        || async {
            let portals = Api::<Portal>::all(client.clone()).list(&ListParams::default()).await.ok()?.items;
            let documents = Api::<DocumentService>::all(client.clone()).list(&ListParams::default()).await.ok()?.items;
            let sharing = Api::<DataSharingService>::all(client.clone()).list(&ListParams::default()).await.ok()?.items;
            let all_ready = portals.iter().all(|p| ready(&p.status.clone().unwrap_or_default().conditions))
                && documents.iter().all(|d| ready(&d.status.clone().unwrap_or_default().conditions))
                && sharing.iter().all(|s| ready(&s.status.clone().unwrap_or_default().conditions));
            // Thanh Khê's consumption decided (it may be reconciled before the provider's is seen).
            let granted = sharing
                .iter()
                .flat_map(|s| s.status.iter().flat_map(|st| &st.consumptions))
                .any(|c| c.state == govpaas_crds::data_sharing::GrantState::Granted);
            (portals.len() == 4 && documents.len() == 3 && sharing.len() == 2 && all_ready && granted).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn kubectl_govpaas_shows_the_danang_examples() {
    let private = private_cluster("kubectl-plugin");
    let cluster = private.cluster;
    operator::install_chart(cluster);
    // Every Tenant, as production runs it: the control plane is this test's alone, and only such an
    // operator counts the Platform's Tenants.
    let operator = OperatorProcess::start_unscoped(cluster, &unique_name("plugin"));
    let client = cluster.client().await;
    converge(cluster, &client, &operator).await;
    let plugin = Plugin { binary: plugin_binary(), kubeconfig: cluster.kubeconfig.clone() };

    the_tree(cluster, &plugin);
    the_carving(&plugin);
    the_grants(&plugin);
    the_certificates(&plugin);
    what_agency_admins_see(&plugin);
    every_printer_column_has_a_value(cluster, &client).await;
    the_audit_verification(cluster, &client, &plugin).await;
}

/// What `kubectl get <kind> -A -o wide` prints, as the API server's Table (server-side printing:
/// the CRDs' printer columns, wide ones included), for every govpaas kind once the examples
/// converged: each cell holds a value. The exceptions are values the object's spec leaves out on
/// purpose (the top Tenant's parent) and the clinic, whose quota was refused: it was never applied.
async fn every_printer_column_has_a_value(cluster: &Cluster, client: &Client) {
    for plural in ["platforms", "tenants", "portals", "documentservices", "datasharingservices"] {
        let request = http::Request::get(format!("/apis/govpaas.io/v1alpha1/{plural}?includeObject=None"))
            .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .expect("a request");
        let table: Value = client.request(request).await.unwrap_or_else(|e| panic!("the {plural} Table: {e}"));
        let columns: Vec<&str> =
            table["columnDefinitions"].as_array().expect("columns").iter().filter_map(|c| c["name"].as_str()).collect();
        let rows = table["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "no {plural}");
        for row in rows {
            let cells = row["cells"].as_array().expect("cells");
            let name = cells[0].as_str().unwrap_or_default();
            if name == "phong-kham" {
                continue;
            }
            for (column, cell) in columns.iter().zip(cells) {
                if plural == "tenants" && *column == "Parent" && name == "ubnd" {
                    continue;
                }
                let empty = cell.is_null() || cell.as_str() == Some("") || cell.as_str() == Some("<none>");
                assert!(!empty, "{plural} {name}: column {column} is empty: {row}");
            }
        }
        let wide = cluster.kubectl_ok(&["get", plural, "-A", "-o", "wide"]);
        let header = wide.lines().next().unwrap_or_default();
        for column in &columns {
            assert!(header.contains(&column.to_uppercase()), "{column} not in {header}");
        }
    }
    // The Platform's count: the twenty example Tenants Ready, the refused clinic not.
    let platform =
        cluster.kubectl_ok(&["get", "platform", "default", "-o", "jsonpath={.status.tenants}/{.status.readyTenants}"]);
    assert_eq!(platform, format!("{}/{}", EXAMPLE_TENANT_COUNT + 1, EXAMPLE_TENANT_COUNT));
}

/// `kubectl govpaas audit verify` of a real audit log: the gateway run with the certificate the
/// operator issued (as the LGSP tests run it), refused a handshake, signed checkpoints and
/// stopped; the plugin reads that certificate and the platform CA bundle from the cluster.
async fn the_audit_verification(cluster: &Cluster, client: &Client, plugin: &Plugin) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), operator::NAMESPACE);
    let secret = secrets.get(GATEWAY_TLS_SECRET).await.expect("the gateway's TLS Secret");
    let dir = tempfile::tempdir().expect("a directory");
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::write(dir.path().join(key), govpaas_tests::secret_data(&secret, key)).expect("writing the TLS files");
    }
    let mut gateway = GatewayProcess::start(cluster, "plugin-audit", dir.path(), &[]);
    // Not a TLS client: a refused handshake, counted in a `refusals` record before the checkpoint.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(gateway.listen).expect("connecting to the gateway");
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: lgsp\r\n\r\n");
        let _ = stream.read_to_end(&mut Vec::new());
    }
    // A checkpoint every 2 s (another at shutdown): the periodic one after the refusal is in the log.
    eventually(Duration::from_secs(30), "a checkpoint after the refusals record", || async {
        let log = std::fs::read_to_string(&gateway.audit_log).ok()?;
        let refusals = log.find("\"kind\":\"refusals\"")?;
        log[refusals..].contains("\"kind\":\"checkpoint\"").then_some(())
    })
    .await;
    assert!(gateway.stop(), "the gateway stops cleanly:\n{}", gateway.log());
    let log = std::fs::read_to_string(&gateway.audit_log).expect("the audit log");
    assert!(log.contains("\"kind\":\"refusals\"") && log.contains("\"kind\":\"checkpoint\""), "{log}");
    let path = gateway.audit_log.display().to_string();

    let (report, _) = plugin.ok(&["audit", "verify", "--log", &path]);
    assert!(report.starts_with(&format!("{path}: OK, ")), "{report}");
    assert!(report.contains("signed checkpoints"), "{report}");
    assert!(
        report.contains("every checkpoint signer chains to the platform CA of ConfigMap govpaas-system/govpaas-trust"),
        "{report}"
    );
    assert!(report.contains("from Secret govpaas-system/govpaas-gateway-tls"), "{report}");
    let (json, _) = plugin.json(&["audit", "verify", "--log", &path]);
    assert_eq!((json["kind"].as_str(), json["result"].as_str()), (Some("AuditVerification"), Some("Verified")));
    let leaf = govpaas_pki::verify::chain_from_pem("tls.crt", &govpaas_tests::secret_data(&secret, "tls.crt"))
        .expect("the gateway's chain");
    assert_eq!(json["chain"]["signers"], serde_json::json!([govpaas_pki::verify::fingerprint(&leaf[0])]), "{json}");
    assert!(json["chain"]["checkpoints"].as_u64().is_some_and(|n| n >= 1), "{json}");
    assert_eq!(json["chain"]["unsignedTail"], 0, "stopped cleanly: everything signed");

    // One byte of the first record changed: refused, naming the record, exit status 1.
    let tampered = dir.path().join("tampered.jsonl");
    let edited = log.replacen("\"kind\":\"start\"", "\"kind\":\"start\" ", 1);
    assert_ne!(edited, log);
    std::fs::write(&tampered, &edited).expect("writing the tampered copy");
    let out = plugin.run(&["audit", "verify", "--log", &tampered.display().to_string()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!(
            "{0}: TAMPERED at {0}: line 1 (record 1): its hash does not match its contents: the record was altered",
            tampered.display()
        )),
        "{stdout}"
    );

    // An agency admin may not read the gateway's Secret: told so, nothing verified, exit status 2.
    let out = plugin.run(&["--as", "cntt.so-yte@danang.gov.vn", "audit", "verify", "--log", &path]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("You may not read the Secret govpaas-gateway-tls in namespace govpaas-system"), "{stderr}");
    assert!(stderr.contains("--certificate"), "{stderr}");
}

fn the_tree(cluster: &Cluster, plugin: &Plugin) {
    // Through kubectl itself: `kubectl govpaas` finds kubectl-govpaas on PATH. kubectl refuses
    // flags before a plugin's name, so the kubeconfig comes from KUBECONFIG.
    let dir = plugin.binary.parent().expect("the binary's directory");
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new(&cluster.kubectl_bin)
        .args(["govpaas", "tree"])
        .env("PATH", path)
        .env("KUBECONFIG", &plugin.kubeconfig)
        .output()
        .expect("running kubectl");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "kubectl govpaas tree: {}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("TENANT ") && lines[0].contains("READY"), "{stdout}");
    let line = |start: &str| -> &str {
        lines.iter().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line {start:?} in:\n{stdout}"))
    };
    assert!(line("ubnd ").contains(" H17 ") && line("ubnd ").contains("Province"), "{stdout}");
    assert!(line("ubnd ").contains("Ủy ban nhân dân thành phố Đà Nẵng"), "{stdout}");
    // Children in code order: the six departments (H17.01–06), then the communes (H17.31–42).
    let order: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("├── ").or_else(|| l.strip_prefix("└── ")))
        .map(|l| l.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(order.len(), 18, "{stdout}");
    assert_eq!(&order[..3], ["so-noivu", "so-taichinh", "so-yte"], "{stdout}");
    assert_eq!(order[6], "hai-chau", "{stdout}");
    assert!(line("└── hoang-sa ").contains("H17.42"), "{stdout}");
    assert!(line("├── so-noivu ").contains("Ready"), "{stdout}");
    // The hospital under the Department of Health, the refused clinic under it, marked.
    assert!(line("├── so-yte ").contains("Ready, 1 below not ready"), "{stdout}");
    assert!(line("│   └── bv-danang ").contains("H17.03.01"), "{stdout}");
    assert!(line("│       └── phong-kham ").contains("NotReady: QuotaExceeded"), "{stdout}");
    assert!(stdout.contains("21 tenants: 20 ready, 1 not ready, 0 suspended, 0 unknown"), "{stdout}");
    // Quota cells: the committee carved 144 of its 200 CPU (72%).
    assert!(line("ubnd ").contains("/72%"), "{stdout}");
    // Aligned by display width: every line's AGENCY column starts at the same terminal column.
    let agency_column = |l: &str, agency: &str| unicode_column(l, l.find(agency).expect("the agency"));
    let committee = agency_column(line("ubnd "), "Ủy ban");
    assert_eq!(agency_column(line("│   └── bv-danang "), "Bệnh viện"), committee, "{stdout}");
    assert_eq!(agency_column(line("├── so-noivu "), "Sở Nội vụ"), committee, "{stdout}");

    let (json, _) = plugin.json(&["tree"]);
    assert_eq!(json["apiVersion"], "kubectl.govpaas.io/v1");
    assert_eq!(json["kind"], "AgencyTree");
    assert_eq!(json["complete"], true);
    let top = &json["agencies"][0];
    assert_eq!(
        (top["name"].as_str(), top["code"].as_str(), top["state"].as_str()),
        (Some("ubnd"), Some("H17"), Some("Ready"))
    );
    assert_eq!(top["children"].as_array().map(Vec::len), Some(18));
    let so_yte = &top["children"][2];
    assert_eq!(so_yte["name"], "so-yte");
    assert_eq!(so_yte["children"][0]["name"], "bv-danang");
    assert_eq!(so_yte["children"][0]["children"][0]["state"], "NotReady");
    let cpu = &top["quota"][0];
    assert_eq!(
        (cpu["resource"].as_str(), cpu["hard"].as_str(), cpu["carved"].as_str()),
        (Some("cpu"), Some("200"), Some("144"))
    );
    assert_eq!(cpu["carvedPercent"], 72.0);

    let (subtree, _) = plugin.json(&["tree", "so-yte"]);
    assert_eq!(subtree["agencies"].as_array().map(Vec::len), Some(1));
    assert_eq!(subtree["agencies"][0]["name"], "so-yte");
    let missing = plugin.run(&["tree", "khong-co"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("Tenant \"khong-co\" not found"), "{}", text(&missing.stderr));
}

/// The terminal column at byte `index` of `line`.
fn unicode_column(line: &str, index: usize) -> usize {
    // Box-drawing characters and Vietnamese letters are one column each, combining marks none;
    // the examples are written precomposed, so counting chars is the display width here.
    line[..index].chars().count()
}

fn the_carving(plugin: &Plugin) {
    let (text, _) = plugin.ok(&["quota", "bv-danang"]);
    assert!(text.starts_with("ubnd  H17  Province  Ủy ban nhân dân thành phố Đà Nẵng  Ready\n"), "{text}");
    assert!(text.contains("└─ so-yte  H17.03  Department"), "{text}");
    assert!(text.contains("└─ bv-danang  H17.03.01  Unit"), "{text}");
    assert!(text.contains("children of bv-danang: 1"), "{text}");
    assert!(text.contains("blocked: phong-kham: QuotaExceeded (cpu asks 8, 4 left)"), "{text}");
    let (json, _) = plugin.json(&["quota", "bv-danang"]);
    assert_eq!(json["kind"], "QuotaCarving");
    let path: Vec<&str> = json["path"].as_array().unwrap().iter().filter_map(|h| h["name"].as_str()).collect();
    assert_eq!(path, ["ubnd", "so-yte", "bv-danang"]);
    let hospital_cpu = &json["path"][2]["resources"][0];
    assert_eq!((hospital_cpu["quota"].as_str(), hospital_cpu["own"].as_str()), (Some("4"), Some("4")));
    let so_yte_cpu = &json["path"][1]["resources"][0];
    assert_eq!((so_yte_cpu["quota"].as_str(), so_yte_cpu["carved"].as_str()), (Some("16"), Some("4")));
    let clinic = &json["children"][0];
    assert_eq!(clinic["name"], "phong-kham");
    assert_eq!(clinic["blocked"]["reason"], "QuotaExceeded");
    assert_eq!(
        clinic["blocked"]["short"][0],
        serde_json::json!({"resource": "cpu", "requested": "8", "available": "4"})
    );
    assert!(clinic["blocked"]["message"].as_str().is_some_and(|m| m.contains("cpu 8 > 4")), "{clinic}");
}

fn the_grants(plugin: &Plugin) {
    let (json, _) = plugin.json(&["grants"]);
    assert_eq!(json["kind"], "LgspGrants");
    let grants = json["grants"].as_array().expect("grants");
    // Thanh Khê's grant from Sở Nội vụ, and Sở Nội vụ's of the national population database.
    assert_eq!(grants.len(), 2, "{json}");
    let national = grants.iter().find(|g| g["national"] == true).expect("the national grant");
    assert_eq!(national["consumerService"], "so-noivu/du-lieu-noi-vu");
    assert_eq!(national["api"], "csdlqg-dan-cu");
    assert_eq!((national["state"].as_str(), national["reason"].as_str()), (Some("Granted"), Some("NationalPlatform")));
    assert!(national["url"].as_str().is_some_and(|u| u.ends_with("/ndxp/csdlqg-dan-cu/")), "{national}");
    let grant = grants.iter().find(|g| g["national"] == false).expect("the agency grant");
    assert_eq!(grant["consumer"]["code"], "H17.32");
    assert_eq!(grant["consumer"]["tenant"], "thanh-khe");
    assert_eq!(grant["consumerService"], "thanh-khe/mot-cua");
    assert_eq!(grant["provider"]["code"], "H17.01");
    assert_eq!(grant["provider"]["tenant"], "so-noivu");
    assert_eq!(grant["api"], "can-bo-cong-chuc");
    assert_eq!((grant["state"].as_str(), grant["reason"].as_str()), (Some("Granted"), Some("Approved")));
    assert!(grant["url"].as_str().is_some_and(|u| u.ends_with("/H17.01/can-bo-cong-chuc/")), "{grant}");
    let api = &json["providedApis"][0];
    assert_eq!(
        (api["api"].as_str(), api["providerService"].as_str()),
        (Some("can-bo-cong-chuc"), Some("so-noivu/du-lieu-noi-vu"))
    );
    assert_eq!(api["consumers"].as_array().map(Vec::len), Some(2));

    let (filtered, _) = plugin.json(&["grants", "--agency", "000.00.32.H17"]);
    assert_eq!(filtered["grants"].as_array().map(Vec::len), Some(1), "the legacy form names Thanh Khê too");
    let (none, _) = plugin.json(&["grants", "--agency", "H17.40"]);
    assert_eq!(none["grants"].as_array().map(Vec::len), Some(0));
    let (dot, _) = plugin.ok(&["grants", "-o", "dot"]);
    assert!(dot.starts_with("digraph lgsp {"), "{dot}");
    assert!(dot.contains("\"H17.32\" -> \"H17.01\" [label=\"can-bo-cong-chuc\\nGranted (Approved)\""), "{dot}");
    let refused = plugin.run(&["tree", "-o", "dot"]);
    assert!(!refused.status.success() && text(&refused.stderr).contains("-o dot is for `grants` only"));
}

fn the_certificates(plugin: &Plugin) {
    let (json, _) = plugin.json(&["certs"]);
    assert_eq!(json["kind"], "Certificates");
    let certificates = json["certificates"].as_array().expect("certificates");
    let count = |kind: &str| certificates.iter().filter(|c| c["kind"] == kind).count();
    assert_eq!(count("PlatformCA"), 1, "{json}");
    assert_eq!(count("TenantCA"), EXAMPLE_TENANT_COUNT, "every applied Tenant's intermediate CA: {json}");
    assert_eq!(count("PortalTLS"), 4, "{json}");
    assert_eq!(count("DocumentServiceTLS"), 3, "{json}");
    assert_eq!(count("DocumentSigning"), 3, "{json}");
    // Thanh Khê's, and Sở Nội vụ's (it consumes the national population database).
    assert_eq!(count("LgspClient"), 2, "{json}");
    for certificate in certificates {
        assert!(certificate["notAfter"].is_string() && certificate["renewalTime"].is_string(), "{certificate}");
        assert_eq!(
            (certificate["state"].as_str(), certificate["overdue"].as_bool()),
            (Some("Valid"), Some(false)),
            "{certificate}"
        );
        assert!(certificate["daysLeft"].as_i64().is_some_and(|d| d > 1), "{certificate}");
    }
    let client = certificates
        .iter()
        .find(|c| c["kind"] == "LgspClient" && c["tenant"] == "thanh-khe")
        .expect("Thanh Khê's client certificate");
    assert_eq!(
        (client["object"].as_str(), client["tenant"].as_str()),
        (Some("DataSharingService/thanh-khe/mot-cua"), Some("thanh-khe"))
    );
    assert!(
        certificates
            .iter()
            .any(|c| c["kind"] == "LgspClient" && c["object"] == "DataSharingService/so-noivu/du-lieu-noi-vu"),
        "{json}"
    );
    assert_eq!(client["secretName"], "mot-cua-lgsp-client");
    let portal =
        certificates.iter().find(|c| c["object"] == "Portal/so-yte/cong-thong-tin").expect("the health portal");
    assert_eq!(portal["tenant"], "so-yte");
    assert_eq!(json["trust"]["phase"], "Stable");
    // Soonest first.
    let ends: Vec<&str> = certificates.iter().filter_map(|c| c["notAfter"].as_str()).collect();
    assert!(ends.windows(2).all(|w| w[0] <= w[1]), "{ends:?}");
    let (soon, _) = plugin.json(&["certs", "--expiring", "1d"]);
    assert_eq!(soon["certificates"].as_array().map(Vec::len), Some(0), "nothing expires within a day");
    assert_eq!(soon["expiringWithinSeconds"], 86_400);
    let (table, _) = plugin.ok(&["certs"]);
    assert!(table.contains(&format!("{} certificates, 0 overdue", certificates.len())), "{table}");
}

fn what_agency_admins_see(plugin: &Plugin) {
    // The Department of Health's admin may get its own Tenant only: its subtree, its unreadable
    // child named, and a note saying why.
    let (stdout, stderr) = plugin.ok(&["--as", "cntt.so-yte@danang.gov.vn", "tree"]);
    assert!(stderr.contains("You may not list Tenants (tenants.govpaas.io) at cluster scope"), "{stderr}");
    assert!(stderr.contains("`list` on `tenants` in API group `govpaas.io`"), "{stderr}");
    assert!(stderr.contains("Showing the Tenants you may read: so-yte."), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[1].starts_with("so-yte ") && lines[1].contains("H17.03"), "{stdout}");
    assert!(lines[1].contains("its parent Tenant \"ubnd\" is not readable"), "{stdout}");
    assert!(lines[2].starts_with("└── bv-danang ") && lines[2].contains("(a child you may not read)"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("ubnd") || l.contains("so-noivu")), "{stdout}");
    let (json, _) = plugin.json(&["--as", "cntt.so-yte@danang.gov.vn", "tree"]);
    assert_eq!(json["complete"], false);
    assert_eq!(json["agencies"][0]["unreadableChildren"], serde_json::json!(["bv-danang"]));
    assert!(json["notes"][0].as_str().is_some_and(|n| n.contains("at cluster scope")), "{json}");

    // The Department of Home Affairs' admin sees its provided API, in its own namespace only.
    let (grants, stderr) = plugin.json(&["--as", "cntt.so-noivu@danang.gov.vn", "grants"]);
    assert!(stderr.contains("you may not list datasharingservices.govpaas.io in all namespaces"), "{stderr}");
    assert_eq!(grants["complete"], false);
    assert_eq!(grants["providedApis"][0]["api"], "can-bo-cong-chuc");
    // Its own national consumption only: Thanh Khê's is not its to read.
    let own = grants["grants"].as_array().expect("grants");
    assert_eq!(own.len(), 1, "{grants}");
    assert_eq!(
        (own[0]["national"].as_bool(), own[0]["consumerService"].as_str()),
        (Some(true), Some("so-noivu/du-lieu-noi-vu"))
    );

    // Someone who is nobody's admin gets told what is missing, and no output.
    let out = plugin.run(&["--as", "khach@danang.gov.vn", "tree"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).is_empty());
    assert!(stderr.starts_with("error: You may not list Tenants (tenants.govpaas.io) at cluster scope"), "{stderr}");
    assert!(stderr.contains("ask the provincial admin to list you there"), "{stderr}");
}
