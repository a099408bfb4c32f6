//! The local control plane's PKI, made with rcgen: a cluster CA, the API server's serving certificate,
//! client certificates for the admin and each component, and the service-account signing key pair.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// The first address of the service range; the API server's in-cluster address.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

/// Files of one certificate and its key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every file the components need.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca: CertFiles,
    pub apiserver: CertFiles,
    pub admin: CertFiles,
    pub controller_manager: CertFiles,
    pub scheduler: CertFiles,
    pub kwok: CertFiles,
    /// The real node's kubelet (`system:node:<name>` in `system:nodes`, which the Node authorizer and
    /// NodeRestriction admit), kube-proxy (`system:kube-proxy`, bound to `system:node-proxier` by the
    /// API server's default RBAC), and the API server's own client certificate towards kubelets.
    pub kubelet: CertFiles,
    pub kube_proxy: CertFiles,
    /// kube-router's firewall ([`crate::node::KUBE_ROUTER_USER`], bound to its ClusterRole).
    pub kube_router: CertFiles,
    pub apiserver_kubelet_client: CertFiles,
    pub service_account_key: PathBuf,
    pub service_account_pub: PathBuf,
}

fn params(common_name: &str, organization: Option<&str>, sans: Vec<String>) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    p.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365);
    Ok(p)
}

fn write(dir: &Path, name: &str, cert_pem: &str, key: &KeyPair) -> Result<CertFiles> {
    let files = CertFiles { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
    fs::write(&files.cert, cert_pem)?;
    fs::write(&files.key, key.serialize_pem())?;
    Ok(files)
}

/// Creates a fresh PKI in `dir`; `extra_ips` are more addresses the API server serves on (the real
/// node's).
pub fn create(dir: &Path, extra_ips: &[&str]) -> Result<Pki> {
    fs::create_dir_all(dir)?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = params("govpaas-local-cluster-ca", None, vec![])?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca = write(dir, "ca", &ca_cert.pem(), &ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |name: &str, cn: &str, org: Option<&str>, sans: Vec<String>, server: bool| -> Result<CertFiles> {
        let key = KeyPair::generate()?;
        let mut p = params(cn, org, sans)?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages =
            vec![if server { ExtendedKeyUsagePurpose::ServerAuth } else { ExtendedKeyUsagePurpose::ClientAuth }];
        let cert = p.signed_by(&key, &issuer)?;
        write(dir, name, &cert.pem(), &key)
    };

    let apiserver_sans = [
        "127.0.0.1",
        "localhost",
        KUBERNETES_SERVICE_IP,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(String::from)
    .into_iter()
    .chain(extra_ips.iter().map(|ip| ip.to_string()))
    .collect();
    let apiserver = leaf("apiserver", "kube-apiserver", None, apiserver_sans, true)?;
    let admin = leaf("admin", "govpaas-local-admin", Some("system:masters"), vec![], false)?;
    let controller_manager = leaf("controller-manager", "system:kube-controller-manager", None, vec![], false)?;
    let scheduler = leaf("scheduler", "system:kube-scheduler", None, vec![], false)?;
    // kwok plays every kubelet: it writes Node and Pod status across the cluster.
    let kwok = leaf("kwok", "kwok-controller", Some("system:masters"), vec![], false)?;

    let kubelet = leaf("kubelet", &format!("system:node:{}", crate::node::NAME), Some("system:nodes"), vec![], false)?;
    let kube_proxy = leaf("kube-proxy", "system:kube-proxy", None, vec![], false)?;
    let kube_router = leaf("kube-router", crate::node::KUBE_ROUTER_USER, None, vec![], false)?;
    let apiserver_kubelet_client =
        leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", Some("system:masters"), vec![], false)?;

    let sa_key = KeyPair::generate()?;
    let service_account_key = dir.join("service-account.key");
    let service_account_pub = dir.join("service-account.pub");
    fs::write(&service_account_key, sa_key.serialize_pem())?;
    fs::write(&service_account_pub, sa_key.public_key_pem())?;

    Ok(Pki {
        ca,
        apiserver,
        admin,
        controller_manager,
        scheduler,
        kwok,
        kubelet,
        kube_proxy,
        kube_router,
        apiserver_kubelet_client,
        service_account_key,
        service_account_pub,
    })
}

/// A kubeconfig for one identity, with files referenced by absolute path.
pub fn kubeconfig(server: &str, ca: &Path, client: &CertFiles, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: govpaas-local\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: {user}@govpaas-local\n  context:\n    cluster: govpaas-local\n    user: {user}\ncurrent-context: {user}@govpaas-local\n",
        ca = ca.display(),
        cert = client.cert.display(),
        key = client.key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_pki_whose_files_parse_as_pem() {
        let dir = std::env::temp_dir().join(format!("govpaas-pki-test-{}", std::process::id()));
        let pki = create(&dir, &["10.201.0.1"]).unwrap();
        for f in [&pki.ca.cert, &pki.apiserver.cert, &pki.admin.cert] {
            assert!(fs::read_to_string(f).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        }
        assert!(fs::read_to_string(&pki.service_account_pub).unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
        let kc = kubeconfig("https://127.0.0.1:6443", &pki.ca.cert, &pki.admin, "admin");
        assert!(kc.contains("server: https://127.0.0.1:6443"));
        fs::remove_dir_all(dir).unwrap();
    }
}
