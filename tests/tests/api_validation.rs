//! The govpaas API on a real API server: every bad manifest of the corpus in `tests/manifests/bad`
//! is rejected by the layer it names, with a message that names the field and the rule; every
//! good one is accepted; Vietnamese names round-trip unchanged; `kubectl get govpaas -A` lists
//! every kind with its columns.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

use govpaas_crds::{Tenant, metadata};
use govpaas_tests::api::install_api;
use govpaas_tests::{Cluster, TestNamespace, cluster, unique_name};
use kube::Api;

const MANAGER: &str = "govpaas-api-validation";
const KINDS: [&str; 5] = ["Platform", "Tenant", "Portal", "DocumentService", "DataSharingService"];

/// One manifest of the corpus with its header.
#[derive(Debug)]
struct Case {
    file: String,
    expects: Vec<String>,
    /// Text the refusal must not contain (`# absent: type conversion error`).
    absent: Vec<String>,
    layer: String,
    namespace: String,
    update: bool,
    body: String,
}

impl Case {
    fn kinds(&self) -> BTreeSet<String> {
        self.body.lines().filter_map(|l| l.strip_prefix("kind: ")).map(|k| k.trim().to_owned()).collect()
    }
}

fn load(dir: &str) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests").join(dir);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let body = fs::read_to_string(&path).unwrap();
            let mut case = Case {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                expects: Vec::new(),
                absent: Vec::new(),
                layer: String::new(),
                namespace: "tenant".into(),
                update: false,
                body: body.clone(),
            };
            for line in body.lines().take_while(|l| l.starts_with('#')) {
                if let Some(v) = line.strip_prefix("# expect: ") {
                    case.expects.push(v.to_owned());
                } else if let Some(v) = line.strip_prefix("# absent: ") {
                    case.absent.push(v.to_owned());
                } else if let Some(v) = line.strip_prefix("# layer: ") {
                    case.layer = v.to_owned();
                } else if let Some(v) = line.strip_prefix("# namespace: ") {
                    case.namespace = v.to_owned();
                } else if line == "# mode: update" {
                    case.update = true;
                }
            }
            case
        })
        .collect()
}

/// The corpus itself is what the issue asks for, before any cluster is involved.
#[test]
fn the_corpus_covers_every_kind_and_every_layer() {
    let bad = load("bad");
    assert!(bad.len() >= 40, "only {} bad manifests", bad.len());
    for case in &bad {
        assert!(["schema", "cel", "vap"].contains(&case.layer.as_str()), "{}: layer {:?}", case.file, case.layer);
        assert!(
            ["tenant", "plain", "suspended", "no-domain", "legacy"].contains(&case.namespace.as_str()),
            "{}: namespace {:?}",
            case.file,
            case.namespace
        );
        assert!(case.expects.len() >= 2, "{}: expect both the field and the rule", case.file);
        assert!(
            case.expects.iter().any(|e| e.contains("spec") || e.contains("metadata.")),
            "{}: no expectation names the field",
            case.file
        );
        assert_eq!(case.kinds().len(), 1, "{}: one kind per case", case.file);
        if case.update {
            assert_eq!(case.body.matches("\n---\n").count(), 1, "{}", case.file);
        }
    }
    for layer in ["schema", "cel", "vap"] {
        let n = bad.iter().filter(|c| c.layer == layer).count();
        assert!(n >= 8, "only {n} bad manifests for the {layer} layer");
    }
    let good = load("good");
    for kind in KINDS {
        let n = bad.iter().filter(|c| c.kinds().contains(kind)).count();
        assert!(n >= 5, "only {n} bad manifests of kind {kind}");
        assert!(good.iter().any(|c| c.kinds().contains(kind)), "no good manifest of kind {kind}");
    }
}

/// The namespaces a case can run in, labelled as the tenant controller labels them.
struct Namespaces {
    tenant: TestNamespace,
    plain: TestNamespace,
    suspended: TestNamespace,
    no_domain: TestNamespace,
    /// A tenant namespace whose agency code label is written in the legacy form.
    legacy: TestNamespace,
    agency_code: String,
    /// The same agency as `agency_code`, in the legacy QCVN 102:2016 form.
    agency_code_legacy: String,
}

impl Namespaces {
    fn new(cluster: &'static Cluster) -> Self {
        let agency_code = "H49.12".to_owned();
        let agency_code_legacy = "000.00.12.H49".to_owned();
        let make_tenant = |prefix: &str, code: &str, suspended: bool, domain: bool| {
            let ns = TestNamespace::new(cluster, prefix);
            let mut labels = vec![
                format!("{}={}", metadata::TENANT_LABEL, ns.name),
                format!("{}={code}", metadata::AGENCY_CODE_LABEL),
                format!("{}=Department", metadata::AGENCY_LEVEL_LABEL),
            ];
            if suspended {
                labels.push(format!("{}=true", metadata::SUSPENDED_LABEL));
            }
            let mut args = vec!["label", "namespace", ns.name.as_str(), "--overwrite"];
            args.extend(labels.iter().map(String::as_str));
            cluster.kubectl_ok(&args);
            if domain {
                let annotation = format!("{}={}", metadata::DOMAIN_ANNOTATION, domain_of(&ns));
                cluster.kubectl_ok(&["annotate", "namespace", &ns.name, "--overwrite", &annotation]);
            }
            ns
        };
        let namespaces = Namespaces {
            tenant: make_tenant("api-tenant", &agency_code, false, true),
            plain: TestNamespace::new(cluster, "api-plain"),
            suspended: make_tenant("api-suspended", &agency_code, true, true),
            no_domain: make_tenant("api-no-domain", &agency_code, false, false),
            legacy: make_tenant("api-legacy", &agency_code_legacy, false, true),
            agency_code,
            agency_code_legacy,
        };
        namespaces.wait_until_admission_sees_them(cluster);
        namespaces
    }

    fn named(&self, which: &str) -> &TestNamespace {
        match which {
            "tenant" => &self.tenant,
            "plain" => &self.plain,
            "suspended" => &self.suspended,
            "no-domain" => &self.no_domain,
            "legacy" => &self.legacy,
            other => panic!("unknown namespace {other:?}"),
        }
    }

    /// Admission policies read namespaces from an informer: wait until it has our labels.
    fn wait_until_admission_sees_them(&self, cluster: &Cluster) {
        let portal = |host: &str| {
            format!(
                "apiVersion: govpaas.io/v1alpha1\nkind: Portal\nmetadata:\n  name: probe\nspec:\n  hosts: [{host}]\n"
            )
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let in_tenant = cluster.kubectl_stdin(
                &["create", "--dry-run=server", "-n", &self.tenant.name, "-f", "-"],
                &portal(&format!("www.{}", domain_of(&self.tenant))),
            );
            let suspended = cluster.kubectl_stdin(
                &["create", "--dry-run=server", "-n", &self.suspended.name, "-f", "-"],
                &portal(&format!("www.{}", domain_of(&self.suspended))),
            );
            let legacy = cluster.kubectl_stdin(
                &["create", "--dry-run=server", "-n", &self.legacy.name, "-f", "-"],
                &portal(&format!("www.{}", domain_of(&self.legacy))),
            );
            if in_tenant.0 && !suspended.0 && legacy.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "admission never saw the tenant namespaces: {} / {}",
                in_tenant.2,
                suspended.2
            );
            sleep(Duration::from_millis(500));
        }
    }
}

fn domain_of(ns: &TestNamespace) -> String {
    format!("{}.danang.gov.vn", ns.name)
}

/// The Platform the tenant-domain policy reads. One exists for as long as a test here uses it;
/// it is created if missing and deleted afterwards only if these tests created it and no one
/// else has written to it since.
struct PlatformUse {
    base_domain: String,
}

static PLATFORM_USERS: Mutex<(usize, bool)> = Mutex::new((0, false));

impl PlatformUse {
    fn acquire(cluster: &'static Cluster) -> Self {
        let mut users = PLATFORM_USERS.lock().unwrap_or_else(|e| e.into_inner());
        let existing = cluster
            .kubectl()
            .args(["get", "platform", "default", "-o", "jsonpath={.spec.baseDomain}"])
            .output()
            .expect("kubectl");
        let base_domain = if existing.status.success() {
            String::from_utf8_lossy(&existing.stdout).into_owned()
        } else {
            let (ok, _, err) = cluster.kubectl_stdin(
                &["apply", "--server-side", "--field-manager", MANAGER, "-f", "-"],
                "apiVersion: govpaas.io/v1alpha1\nkind: Platform\nmetadata:\n  name: default\nspec:\n  baseDomain: danang.gov.vn\n",
            );
            assert!(ok, "creating the Platform: {err}");
            users.1 = true;
            "danang.gov.vn".to_owned()
        };
        users.0 += 1;
        write_admission_params(cluster);
        PlatformUse { base_domain }
    }
}

/// The admission policies' parameter, as the operator writes it from the Platform (no operator
/// runs for this file's tests; one of another test process writes the same).
fn write_admission_params(cluster: &Cluster) {
    let out = cluster.kubectl().args(["get", "platform", "default", "-o", "json"]).output().expect("kubectl");
    assert!(out.status.success(), "reading the Platform: {}", String::from_utf8_lossy(&out.stderr));
    let platform: govpaas_crds::Platform = serde_json::from_slice(&out.stdout).expect("a Platform");
    let params = govpaas_crds::admission::params_config_map(&platform.spec, govpaas_tests::operator::NAMESPACE);
    let mut params = serde_json::to_value(params).expect("JSON");
    params["apiVersion"] = "v1".into();
    params["kind"] = "ConfigMap".into();
    // The release namespace, if no chart was installed yet on this cluster.
    let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": govpaas_tests::operator::NAMESPACE}});
    let (ok, _, err) = cluster.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "--field-manager", MANAGER, "-f", "-"],
        &format!("{namespace}\n---\n{params}"),
    );
    assert!(ok, "writing the admission policies' parameter: {err}");
}

impl PlatformUse {
    fn current_base_domain(&self, cluster: &Cluster) -> String {
        let out = cluster
            .kubectl()
            .args(["get", "platform", "default", "-o", "jsonpath={.spec.baseDomain}"])
            .output()
            .expect("kubectl");
        let current = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && !current.is_empty() { current } else { self.base_domain.clone() }
    }
}

impl Drop for PlatformUse {
    fn drop(&mut self) {
        let mut users = PLATFORM_USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.0 -= 1;
        if users.0 == 0 && users.1 {
            users.1 = false;
            let cluster = cluster();
            let managers = cluster
                .kubectl()
                .args(["get", "platform", "default", "-o", "jsonpath={.metadata.managedFields[*].manager}"])
                .output()
                .expect("kubectl");
            let managers = String::from_utf8_lossy(&managers.stdout).into_owned();
            if managers.split_whitespace().all(|m| m == MANAGER) {
                let _ = cluster
                    .kubectl()
                    .args(["delete", "platform", "default", "--ignore-not-found", "--wait=false"])
                    .output();
            }
        }
    }
}

fn substitute(text: &str, unique: &str, ns: &TestNamespace, namespaces: &Namespaces, base: &str) -> String {
    text.replace("${UNIQUE}", unique)
        .replace("${TENANT_DOMAIN}", &domain_of(ns))
        .replace("${AGENCY_CODE_LEGACY}", &namespaces.agency_code_legacy)
        .replace("${AGENCY_CODE}", &namespaces.agency_code)
        .replace("${BASE_DOMAIN}", base)
}

/// Deletes the cluster-scoped objects a test created, by kind and name, when dropped.
#[derive(Default)]
struct ClusterScoped(Mutex<Vec<(String, String)>>);

impl ClusterScoped {
    fn track(&self, manifest: &str) {
        let kind = manifest.lines().find_map(|l| l.strip_prefix("kind: "));
        if kind == Some("Tenant") {
            let name = manifest.lines().find_map(|l| l.trim_start().strip_prefix("name: ")).expect("a name");
            self.0.lock().unwrap().push(("tenant".into(), name.trim().to_owned()));
        }
    }
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let cluster = cluster();
        for (kind, name) in self.0.lock().unwrap().drain(..) {
            let _ = cluster.kubectl().args(["delete", &kind, &name, "--ignore-not-found", "--wait=false"]).output();
        }
    }
}

#[test]
fn every_bad_manifest_is_rejected_naming_the_field_and_the_rule() {
    let cluster = cluster();
    install_api(cluster);
    let platform = PlatformUse::acquire(cluster);
    let namespaces = Namespaces::new(cluster);
    let created = ClusterScoped::default();
    let cases = load("bad");
    let mut failures = Vec::new();
    for case in &cases {
        let ns = namespaces.named(&case.namespace);
        let unique = unique_name("bad");
        // Another test binary may have re-applied the Platform meanwhile: read the base domain now.
        let base = platform.current_base_domain(cluster);
        let body = substitute(&case.body, &unique, ns, &namespaces, &base);
        let (accepted, stderr) = if case.update {
            let (before, after) = body.split_once("\n---\n").expect("two documents");
            let apply = ["apply", "--server-side", "--field-manager", MANAGER, "-n", &ns.name, "-f", "-"];
            created.track(before);
            let (ok, _, err) = cluster.kubectl_stdin(&apply, before);
            if !ok {
                failures.push(format!("{}: the first document was refused: {err}", case.file));
                continue;
            }
            let (ok, _, err) = cluster.kubectl_stdin(&apply, after);
            // Leave nothing behind for the next case.
            let _ = cluster.kubectl_stdin(&["delete", "--wait=true", "-n", &ns.name, "-f", "-"], before);
            (ok, err)
        } else {
            let (ok, _, err) = cluster.kubectl_stdin(&["create", "--dry-run=server", "-n", &ns.name, "-f", "-"], &body);
            (ok, err)
        };
        if accepted {
            failures.push(format!("{}: accepted, but should be rejected", case.file));
            continue;
        }
        let missing: Vec<String> = case
            .expects
            .iter()
            .map(|e| substitute(e, &unique, ns, &namespaces, &base))
            .filter(|e| !stderr.contains(e.as_str()))
            .collect();
        if !missing.is_empty() {
            failures.push(format!("{}: rejected, but the message lacks {missing:?}:\n{stderr}", case.file));
        }
        let present: Vec<&String> = case.absent.iter().filter(|a| stderr.contains(a.as_str())).collect();
        if !present.is_empty() {
            failures.push(format!("{}: rejected, but the message has {present:?}:\n{stderr}", case.file));
        }
        let from_policy = stderr.contains("ValidatingAdmissionPolicy");
        if from_policy != (case.layer == "vap") {
            failures.push(format!("{}: rejected by the wrong layer (expected {}):\n{stderr}", case.file, case.layer));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad manifests failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    println!("{} bad manifests rejected as expected", cases.len());
}

#[test]
fn every_good_manifest_is_accepted() {
    let cluster = cluster();
    install_api(cluster);
    let platform = PlatformUse::acquire(cluster);
    let namespaces = Namespaces::new(cluster);
    let cases = load("good");
    let mut failures = Vec::new();
    for case in &cases {
        let ns = &namespaces.tenant;
        let body = substitute(&case.body, &unique_name("good"), ns, &namespaces, &platform.base_domain);
        let (ok, _, err) = cluster.kubectl_stdin(
            // Forced, and a dry run: the shared Platform's fields may have other managers (a demo
            // run before the tests); what is checked here is validation, not ownership.
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "--field-manager",
                MANAGER,
                "-n",
                &ns.name,
                "-f",
                "-",
            ],
            &body,
        );
        if !ok {
            failures.push(format!("{}: {err}", case.file));
        }
    }
    assert!(failures.is_empty(), "good manifests refused:\n{}", failures.join("\n"));
    println!("{} good manifests accepted", cases.len());
}

/// Vietnamese with its tone marks, in both Unicode normal forms: the API stores what it is given.
const VIETNAMESE_NAMES: [&str; 3] = [
    "Ủy ban nhân dân thành phố Đà Nẵng",
    // The same words in decomposed form (NFD): base letters followed by combining marks.
    "U\u{309}y ban nhân dân tha\u{300}nh phô\u{301} Đa\u{300} Na\u{306}\u{303}ng",
    "Trung tâm Phục vụ hành chính công – Sở Thông tin và Truyền thông",
];

#[tokio::test]
async fn vietnamese_names_round_trip_unchanged() {
    let cluster = cluster();
    install_api(cluster);
    let created = ClusterScoped::default();
    let client = cluster.client().await;
    let tenants: Api<Tenant> = Api::all(client);
    // maxLength counts characters, not bytes: 256 Vietnamese characters fit, though they take
    // far more than 256 bytes.
    let long = "Ủy ban nhân dân ".repeat(16);
    assert_eq!(long.chars().count(), 256);
    assert!(long.len() > 256);
    for (i, display_name) in VIETNAMESE_NAMES.iter().chain([&long.as_str()]).enumerate() {
        let name = unique_name("vi");
        let manifest = format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n  agency:\n    code: H48.{}\n    displayName: \"{display_name}\"\n    level: Department\n  parent: da-nang\n  quota: {{cpu: 1, memory: 1Gi, storage: 1Gi, pods: 1, services: 1, publicHosts: 1, lgspApis: 1}}\n",
            60 + i
        );
        created.track(&manifest);
        let (ok, _, err) =
            cluster.kubectl_stdin(&["apply", "--server-side", "--field-manager", MANAGER, "-f", "-"], &manifest);
        assert!(ok, "{display_name:?} refused: {err}");
        let stored = tenants.get(&name).await.expect("reading the Tenant back");
        assert_eq!(stored.spec.agency.display_name, *display_name);
        assert_eq!(stored.spec.agency.display_name.as_bytes(), display_name.as_bytes());
        let printed = cluster.kubectl_ok(&["get", "tenant", &name, "-o", "jsonpath={.spec.agency.displayName}"]);
        assert_eq!(printed, *display_name);
    }
}

#[test]
fn kubectl_get_govpaas_lists_every_kind_with_useful_columns() {
    let cluster = cluster();
    install_api(cluster);
    let platform = PlatformUse::acquire(cluster);
    let namespaces = Namespaces::new(cluster);
    let created = ClusterScoped::default();
    let ns = &namespaces.tenant;
    let tenant = unique_name("so-noi-vu");
    let domain = domain_of(ns);
    let manifests = [
        format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {tenant}\nspec:\n  agency:\n    code: H48.12\n    displayName: \"Sở Nội vụ thành phố Đà Nẵng\"\n    level: Department\n  parent: da-nang\n  quota: {{cpu: 4, memory: 8Gi, storage: 100Gi, pods: 50, services: 10, publicHosts: 5, lgspApis: 5}}\n"
        ),
        format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: Portal\nmetadata:\n  name: dich-vu-cong\nspec:\n  hosts: [dichvucong.{domain}]\n  mode: Partial\n"
        ),
        "apiVersion: govpaas.io/v1alpha1\nkind: DocumentService\nmetadata:\n  name: van-ban\nspec:\n  storage: {size: 50Gi}\n  exchange: {enabled: true}\n".to_owned(),
        "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: ho-tich\nspec:\n  provides:\n  - {name: tra-cuu-ho-tich, service: ho-tich, port: 8080, description: \"Tra cứu hộ tịch\"}\n".to_owned(),
    ];
    for manifest in &manifests {
        created.track(manifest);
        let (ok, _, err) = cluster.kubectl_stdin(
            &["apply", "--server-side", "--field-manager", MANAGER, "-n", &ns.name, "-f", "-"],
            manifest,
        );
        assert!(ok, "{err}\n{manifest}");
    }
    let listing = cluster.kubectl_ok(&["get", "govpaas", "-A"]);
    for expected in [
        // Every kind, by name.
        "platform.govpaas.io/default".to_owned(),
        format!("tenant.govpaas.io/{tenant}"),
        "portal.govpaas.io/dich-vu-cong".to_owned(),
        "documentservice.govpaas.io/van-ban".to_owned(),
        "datasharingservice.govpaas.io/ho-tich".to_owned(),
        // The columns that answer each kind's first question.
        "BASE DOMAIN".to_owned(),
        platform.base_domain.clone(),
        "CODE".to_owned(),
        "LEVEL".to_owned(),
        "AGENCY".to_owned(),
        "PARENT".to_owned(),
        "Sở Nội vụ thành phố Đà Nẵng".to_owned(),
        "H48.12".to_owned(),
        "URL".to_owned(),
        "MODE".to_owned(),
        "Partial".to_owned(),
        "ROUTES".to_owned(),
        "EXCHANGE".to_owned(),
        "STORAGE".to_owned(),
        "50Gi".to_owned(),
        "PROVIDES".to_owned(),
        "GRANTED".to_owned(),
        "READY".to_owned(),
        "NAMESPACE".to_owned(),
        ns.name.clone(),
    ] {
        assert!(listing.contains(&expected), "`kubectl get govpaas -A` lacks {expected:?}:\n{listing}");
    }
    println!("{listing}");
    // A provincial admin finds an agency's children, or an agency by code, with field selectors.
    for selector in ["spec.parent=da-nang", "spec.agency.code=H48.12", "spec.agency.level=Department"] {
        let found = cluster.kubectl_ok(&["get", "tenants", "--field-selector", selector, "-o", "name"]);
        assert!(found.contains(&format!("tenant.govpaas.io/{tenant}")), "{selector}: {found}");
    }
    // Short names work too.
    for short in ["gpf", "tnt", "ptl", "docs", "dss"] {
        cluster.kubectl_ok(&["get", short, "-A"]);
    }
}

/// The API server compares agency codes by the same rule as the operator
/// (`govpaas_crds::agency::normalise`): consuming one API of two codes is refused as consuming it
/// twice exactly when the Rust rule says the codes are one agency, whichever form each is written
/// in and whichever legacy groups are zero.
#[test]
fn the_api_server_compares_agency_codes_normalised_like_the_operator() {
    use govpaas_crds::agency::normalise;
    let cluster = cluster();
    install_api(cluster);
    let namespaces = Namespaces::new(cluster);
    let pairs = [
        ("H49", "000.00.00.H49"),
        ("H49.12", "000.00.12.H49"),
        ("H49.12.03", "000.03.12.H49"),
        ("H49.12.03.120", "120.03.12.H49"),
        ("H49.00.03", "000.03.00.H49"),
        ("H49.12.00.001", "001.00.12.H49"),
        // Not the same agency.
        ("H49.12.00", "000.00.12.H49"),
        ("H49.12", "000.12.00.H49"),
        ("H49.12", "000.00.12.H50"),
        ("H49", "000.00.01.H49"),
        ("H49.120", "120.00.00.H49"),
        ("K49.12", "000.00.12.H49"),
    ];
    let mut failures = Vec::new();
    for (a, b) in pairs {
        let manifest = format!(
            "apiVersion: govpaas.io/v1alpha1\nkind: DataSharingService\nmetadata:\n  name: so-sanh\nspec:\n  consumes:\n  - {{name: mot, agencyCode: \"{a}\", api: tra-cuu}}\n  - {{name: hai, agencyCode: \"{b}\", api: tra-cuu}}\n"
        );
        let (accepted, _, err) =
            cluster.kubectl_stdin(&["create", "--dry-run=server", "-n", &namespaces.tenant.name, "-f", "-"], &manifest);
        let same = normalise(a) == normalise(b);
        if accepted == same {
            failures.push(format!(
                "{a} and {b}: the operator says same agency = {same}, the API server accepted = {accepted}: {err}"
            ));
        } else if same && !err.contains("consumes the same API twice") {
            failures.push(format!("{a} and {b}: refused for another reason: {err}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The API server (Go's RE2 tables, through the CEL rule `visible_text`) and the operator (Rust's
/// `regex`, through `govpaas_crds::common::invisible_character`) agree on every character: each
/// control (Cc) and format (Cf) character is refused in free text, and the visible ones around
/// them — Vietnamese combining marks, dashes, spaces — are accepted.
#[tokio::test]
async fn the_api_server_and_the_operator_agree_on_invisible_characters() {
    use govpaas_crds::common::invisible_character;
    use kube::api::PostParams;
    let cluster = cluster();
    install_api(cluster);
    let namespaces = Namespaces::new(cluster);
    let services: Api<govpaas_crds::DataSharingService> =
        Api::namespaced(cluster.client().await, &namespaces.tenant.name);
    let invisible: Vec<char> = (0..=0x10_FFFF_u32)
        .filter_map(char::from_u32)
        .filter(|c| invisible_character(&c.to_string()).is_some())
        .collect();
    assert!(invisible.len() > 200, "Cc and Cf have more than 200 characters, found {}", invisible.len());
    let visible: Vec<char> = (0x0300..=0x036F_u32) // combining marks, Vietnamese tones among them
        .chain(0x2000..=0x2015) // spaces and dashes beside the zero-width ones
        .chain([0x20, 0xA0, 0x1EA0, 0x1EF9, 0x0110, 0x0111, 0x3000, 0xFE0F])
        .filter_map(char::from_u32)
        .filter(|c| invisible_character(&c.to_string()).is_none())
        .collect();
    let mut disagreements = Vec::new();
    // The indices of `spec.provides[<i>].description` in a refusal.
    let refused_indices = |message: &str| -> BTreeSet<usize> {
        message
            .split("spec.provides[")
            .skip(1)
            .filter_map(|rest| rest.split_once("].description")?.0.parse().ok())
            .collect()
    };
    for chunk in invisible.iter().chain(&visible).copied().collect::<Vec<_>>().chunks(32) {
        let provides: Vec<serde_json::Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, c)| {
                serde_json::json!({"name": format!("a{i}"), "service": "s", "port": 80, "description": format!("Tra cứu{c}hộ tịch")})
            })
            .collect();
        let service: govpaas_crds::DataSharingService = serde_json::from_value(serde_json::json!({
            "apiVersion": "govpaas.io/v1alpha1",
            "kind": "DataSharingService",
            "metadata": {"name": "ky-tu"},
            "spec": {"provides": provides},
        }))
        .expect("a DataSharingService");
        let refused: BTreeSet<usize> =
            match services.create(&PostParams { dry_run: true, ..Default::default() }, &service).await {
                Ok(_) => BTreeSet::new(),
                Err(kube::Error::Api(status)) => refused_indices(&status.message),
                Err(other) => panic!("{other}"),
            };
        for (i, c) in chunk.iter().enumerate() {
            let operator = invisible_character(&c.to_string()).is_some();
            if refused.contains(&i) != operator {
                disagreements.push(format!(
                    "U+{:04X}: the API server refuses it: {}, the operator: {operator}",
                    u32::from(*c),
                    refused.contains(&i)
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    println!("{} invisible and {} visible characters agreed on", invisible.len(), visible.len());
}

/// A small deterministic generator (xorshift), so the sample below is the same on every run.
struct Sample(u64);

impl Sample {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % below as u64).unwrap()
    }

    fn join(&mut self, tokens: &[&str], max: usize) -> String {
        (0..1 + self.next(max)).map(|_| tokens[self.next(tokens.len())]).collect()
    }
}

/// The API server (schema and CEL) and the operator's route builder
/// (`govpaas_crds::common::check_http_path`) accept exactly the same API paths; the API server
/// and `parse_duration` with the field's bounds the same durations, and a refused duration is
/// never a CEL conversion error.
#[tokio::test]
async fn the_api_server_and_the_operator_agree_on_paths_and_durations() {
    use govpaas_crds::common::{check_http_path, parse_duration};
    use govpaas_crds::{DataSharingService, Platform};
    use kube::api::PostParams;
    let cluster = cluster();
    install_api(cluster);
    let namespaces = Namespaces::new(cluster);
    let _platform = PlatformUse::acquire(cluster);
    let client = cluster.client().await;
    let services: Api<DataSharingService> = Api::namespaced(client.clone(), &namespaces.tenant.name);
    let platforms: Api<Platform> = Api::all(client);
    let dry_run = PostParams { dry_run: true, ..Default::default() };
    // Accepted, or refused with the API server's message.
    async fn outcome<K>(api: &Api<K>, params: &PostParams, object: serde_json::Value) -> Result<(), String>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
    {
        let object: K = serde_json::from_value(object).expect("a well-typed object");
        match api.create(params, &object).await {
            Ok(_) => Ok(()),
            // The one Platform exists: what passes validation ends here.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(kube::Error::Api(status)) => Err(status.message),
            Err(other) => panic!("{other}"),
        }
    }
    let mut sample = Sample(0x9E37_79B9_7F4A_7C15);
    let mut disagreements = Vec::new();
    let mut accepted = [0, 0];

    let tokens = [
        "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%25", "%C3%A1", "%e1", "%", "%0", "%G1", "a",
        "api", "v1", "-", "~", "\\", " ", "\t", "ạ", "/a", "/b", "/api", "/v1", "x", "/x", "a.b", "/a.b",
    ];
    for _ in 0..300 {
        let path = format!("/{}", sample.join(&tokens, 6));
        let service = serde_json::json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "DataSharingService", "metadata": {"name": "duong-dan"},
            "spec": {"provides": [{"name": "a", "service": "s", "port": 80, "path": path}]},
        });
        let server = outcome(&services, &dry_run, service).await;
        let operator = check_http_path(&path);
        accepted[0] += usize::from(server.is_ok());
        if server.is_ok() != operator.is_ok() {
            disagreements.push(format!("path {path:?}: API server {server:?}, operator {operator:?}"));
        }
    }

    let digits = ["0", "1", "9", "24", "59", "60", "86400", "999999", "2562047", "9999999", "12345678", ""];
    let units = ["h", "m", "s", "h", "m", "s", "d", ".", ""];
    for _ in 0..300 {
        let value: String = (0..1 + sample.next(3))
            .map(|_| format!("{}{}", digits[sample.next(digits.len())], units[sample.next(units.len())]))
            .collect();
        let platform = serde_json::json!({
            "apiVersion": "govpaas.io/v1alpha1", "kind": "Platform", "metadata": {"name": "default"},
            "spec": {"baseDomain": "danang.gov.vn", "lgsp": {"checkpointInterval": value}},
        });
        let server = outcome(&platforms, &dry_run, platform).await;
        let operator =
            parse_duration(&value).is_ok_and(|d| d >= Duration::from_secs(1) && d <= Duration::from_secs(24 * 3600));
        accepted[1] += usize::from(server.is_ok());
        if server.is_ok() != operator {
            disagreements.push(format!("checkpointInterval {value:?}: API server {server:?}, operator {operator}"));
        }
        if let Err(message) = &server
            && (message.contains("type conversion") || message.contains("no such overload"))
        {
            disagreements.push(format!("checkpointInterval {value:?}: a CEL error instead of a sentence: {message}"));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // The sample has both sides of each rule.
    assert!((20..280).contains(&accepted[0]), "{} of 300 paths accepted", accepted[0]);
    assert!((10..290).contains(&accepted[1]), "{} of 300 durations accepted", accepted[1]);
    println!("300 paths ({} accepted) and 300 durations ({} accepted) agreed on", accepted[0], accepted[1]);
}
