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
                layer: String::new(),
                namespace: "tenant".into(),
                update: false,
                body: body.clone(),
            };
            for line in body.lines().take_while(|l| l.starts_with('#')) {
                if let Some(v) = line.strip_prefix("# expect: ") {
                    case.expects.push(v.to_owned());
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
            ["tenant", "plain", "suspended", "no-domain"].contains(&case.namespace.as_str()),
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
    agency_code: String,
}

impl Namespaces {
    fn new(cluster: &'static Cluster) -> Self {
        let agency_code = "H49.12".to_owned();
        let make_tenant = |prefix: &str, suspended: bool, domain: bool| {
            let ns = TestNamespace::new(cluster, prefix);
            let mut labels = vec![
                format!("{}={}", metadata::TENANT_LABEL, ns.name),
                format!("{}={agency_code}", metadata::AGENCY_CODE_LABEL),
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
            tenant: make_tenant("api-tenant", false, true),
            plain: TestNamespace::new(cluster, "api-plain"),
            suspended: make_tenant("api-suspended", true, true),
            no_domain: make_tenant("api-no-domain", false, false),
            agency_code,
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
            if in_tenant.0 && !suspended.0 {
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
        PlatformUse { base_domain }
    }
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
            &["apply", "--server-side", "--dry-run=server", "--field-manager", MANAGER, "-n", &ns.name, "-f", "-"],
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
        "ENDPOINT".to_owned(),
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
