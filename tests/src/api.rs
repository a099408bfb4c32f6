//! Installing the govpaas API on the test cluster: the generated CRDs and admission policies,
//! exactly as the Helm chart ships them.

use std::path::Path;
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use govpaas_crds::generate::{ADMISSION_POLICIES_FILE, CRD_DIR, crds};

use crate::Cluster;

/// The field manager the tests install the API with.
pub const FIELD_MANAGER: &str = "govpaas-tests";

const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Applies the CRDs from `charts/govpaas/crds/`, waits until they are Established, applies the
/// admission policies from `charts/govpaas/templates/admission-policies.yaml`, and waits until the
/// API server has compiled them. Once per test process; safe when several processes race.
pub fn install_api(cluster: &Cluster) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| install(cluster));
}

fn apply_file(cluster: &Cluster, path: &Path) {
    let path = path.to_str().expect("a UTF-8 path");
    cluster.kubectl_ok(&["apply", "--server-side", "--force-conflicts", "--field-manager", FIELD_MANAGER, "-f", path]);
}

fn install(cluster: &Cluster) {
    apply_file(cluster, &cluster.root.join(CRD_DIR));
    let names: Vec<String> =
        crds().iter().map(|crd| format!("crd/{}", crd.metadata.name.as_deref().unwrap_or_default())).collect();
    let mut args = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    args.extend(names.iter().map(String::as_str));
    cluster.kubectl_ok(&args);

    let (ok, _, err) = cluster.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "--field-manager", FIELD_MANAGER, "-f", "-"],
        &admission_policies(cluster),
    );
    assert!(ok, "applying the admission policies: {err}");
    wait_for_policies(cluster);
}

/// The admission policies as the chart renders them in the release namespace
/// ([`crate::operator::NAMESPACE`]): the file is a Helm template only in naming it.
pub fn admission_policies(cluster: &Cluster) -> String {
    let template = std::fs::read_to_string(cluster.root.join(ADMISSION_POLICIES_FILE)).expect("the admission policies");
    template.replace(govpaas_crds::generate::RELEASE_NAMESPACE_TEMPLATE, crate::operator::NAMESPACE)
}

/// A policy whose `paramKind` the API server has not discovered yet fails closed with "failed to
/// configure policy"; a server-side dry-run of a Tenant with a domain shows when that is over.
fn wait_for_policies(cluster: &Cluster) {
    let probe = "apiVersion: govpaas.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: api-install-probe\nspec:\n  agency: {code: H01, displayName: probe, level: Province}\n  domain: probe.invalid\n  quota: {cpu: 0, memory: 0, storage: 0, pods: 0, services: 0, publicHosts: 0, lgspApis: 0}\n";
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let (ok, _, err) = cluster.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], probe);
        // A denial by the tenant-domain policy (a Platform with another base domain) also shows
        // that the policy runs.
        let compiled = ok || !(err.contains("failed to configure") || err.contains("failed to find resource"));
        if compiled {
            return;
        }
        assert!(Instant::now() < deadline, "the admission policies did not become ready: {err}");
        sleep(Duration::from_millis(500));
    }
}
