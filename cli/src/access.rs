//! The only part that talks to the API server: one list per kind, with the user's kubeconfig and
//! permissions, and what to do when those permissions fall short.
//!
//! A provincial admin lists everything. An agency admin may not list Tenants (or govpaas
//! services) cluster-wide: the chart's `govpaas-agency-admin` ClusterRole is bound in its
//! tenant's namespaces only, and the operator's `govpaas-tenant-<name>` ClusterRole lets it get its
//! own Tenant by name. So on a 403 the reader asks the API server which Tenants the user may get
//! by name (a SelfSubjectRulesReview, which everyone may create), reads those, lists the services
//! in their namespaces, and says what it could not see and which RBAC would show it.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use govpaas_crds::{Platform, Tenant};
use k8s_openapi::api::authorization::v1::{ResourceRule, SelfSubjectRulesReview, SelfSubjectRulesReviewSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::Scope;

/// Where the user's credentials come from, as kubectl's own flags say it.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub as_user: Option<String>,
    pub as_groups: Vec<String>,
}

/// Why reading failed, in words for the user.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "the API server does not serve {0}: is govpaas installed on this cluster (helm install govpaas charts/govpaas)?"
    )]
    NotInstalled(String),
    #[error("the API server did not accept your credentials (401): log in again or check your kubeconfig")]
    Unauthorized,
    #[error("reading {what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("{0}")]
    Config(String),
}

/// A client from the kubeconfig (`--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`; in a
/// Pod, its ServiceAccount), with kubectl's `--context`, `--as` and `--as-group`.
pub async fn client(options: &ClientOptions) -> Result<Client, AccessError> {
    let kubeconfig = match &options.kubeconfig {
        Some(path) => {
            Some(Kubeconfig::read_from(path).map_err(|e| AccessError::Config(format!("{}: {e}", path.display())))?)
        }
        None => Kubeconfig::read().ok(),
    };
    let selection = KubeConfigOptions { context: options.context.clone(), ..Default::default() };
    let mut config = match kubeconfig {
        Some(kubeconfig) => kube::Config::from_custom_kubeconfig(kubeconfig, &selection)
            .await
            .map_err(|e| AccessError::Config(format!("the kubeconfig: {e}")))?,
        None => kube::Config::infer().await.map_err(|e| AccessError::Config(format!("no kubeconfig found: {e}")))?,
    };
    if let Some(user) = &options.as_user {
        config.auth_info.impersonate = Some(user.clone());
    }
    if !options.as_groups.is_empty() {
        config.auth_info.impersonate_groups = Some(options.as_groups.clone());
    }
    // An answer that never comes should not hang a terminal.
    config.connect_timeout = Some(Duration::from_secs(10));
    config.read_timeout = Some(Duration::from_secs(60));
    Client::try_from(config).map_err(|e| AccessError::Config(format!("a client from the kubeconfig: {e}")))
}

/// Reads govpaas objects, noting what it could not read.
pub struct Reader {
    client: Client,
    /// What the user could not see, and why: printed as notes, carried in every report.
    pub notes: Vec<String>,
}

/// Tenants read, and whether they are all of them.
pub struct Tenants {
    pub items: Vec<Tenant>,
    pub scope: Scope,
}

impl Reader {
    pub fn new(client: Client) -> Self {
        Reader { client, notes: Vec::new() }
    }

    /// Every Tenant; for a user who may not list them, the ones it may get by name.
    pub async fn tenants(&mut self) -> Result<Tenants, AccessError> {
        let api: Api<Tenant> = Api::all(self.client.clone());
        match api.list(&ListParams::default()).await {
            Ok(list) => return Ok(Tenants { items: list.items, scope: Scope::Complete }),
            Err(error) if status_code(&error) == Some(403) => {}
            Err(error) => return Err(classify(error, "tenants.govpaas.io")),
        }
        let names = self.readable_tenant_names().await?;
        let mut items = Vec::new();
        for name in &names {
            match api.get_opt(name).await {
                Ok(Some(tenant)) => items.push(tenant),
                Ok(None) => {}
                Err(error) if status_code(&error) == Some(403) => {}
                Err(error) => return Err(classify(error, "tenants.govpaas.io")),
            }
        }
        if items.is_empty() {
            return Err(AccessError::Forbidden(no_tenant_readable()));
        }
        let shown: Vec<String> = items.iter().map(|t| t.name_any()).collect();
        self.notes.push(format!("{} Showing the Tenants you may read: {}.", cannot_list_tenants(), shown.join(", ")));
        Ok(Tenants { items, scope: Scope::Partial })
    }

    /// Every object of a namespaced govpaas kind; when the user may not list it in all namespaces,
    /// those in the namespaces of `tenants` (the ones it may read).
    pub async fn namespaced<K>(&mut self, tenants: &Tenants) -> Result<(Vec<K>, Scope), AccessError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    {
        let plural = format!("{}.{}", K::plural(&()), K::group(&()));
        let api: Api<K> = Api::all(self.client.clone());
        match api.list(&ListParams::default()).await {
            Ok(list) => return Ok((list.items, tenants.scope)),
            Err(error) if status_code(&error) == Some(403) => {}
            Err(error) => return Err(classify(error, &plural)),
        }
        let namespaces: Vec<String> = crate::objects::namespace_owners(&tenants.items).into_keys().collect::<Vec<_>>();
        if namespaces.is_empty() {
            return Err(AccessError::Forbidden(cannot_list_namespaced(&plural, &[])));
        }
        let mut items = Vec::new();
        let mut refused = Vec::new();
        for namespace in &namespaces {
            let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
            match api.list(&ListParams::default()).await {
                Ok(list) => items.extend(list.items),
                Err(error) if status_code(&error) == Some(403) => refused.push(namespace.clone()),
                Err(error) => return Err(classify(error, &plural)),
            }
        }
        let readable: Vec<String> = namespaces.iter().filter(|n| !refused.contains(n)).cloned().collect();
        if readable.is_empty() {
            return Err(AccessError::Forbidden(cannot_list_namespaced(&plural, &namespaces)));
        }
        self.notes.push(format!(
            "you may not list {plural} in all namespaces (that needs RBAC `list` on `{}` in API group `{}`, cluster-wide); showing those in: {}.",
            K::plural(&()),
            K::group(&()),
            readable.join(", ")
        ));
        Ok((items, Scope::Partial))
    }

    /// The Platform `default`, or `None` (with a note) when the user may not read it.
    pub async fn platform(&mut self) -> Result<Option<Platform>, AccessError> {
        let api: Api<Platform> = Api::all(self.client.clone());
        match api.get_opt("default").await {
            Ok(platform) => Ok(platform),
            Err(error) if status_code(&error) == Some(403) => {
                self.notes.push(
                    "you may not read the Platform \"default\" (RBAC `get` on `platforms` in API group `govpaas.io`): the platform CA is not shown.".into(),
                );
                Ok(None)
            }
            Err(error) => Err(classify(error, "platforms.govpaas.io")),
        }
    }

    /// The bytes under `key` of the Secret `name` in `namespace`; `None` when the Secret or the
    /// key is missing.
    pub async fn secret_key(&self, namespace: &str, name: &str, key: &str) -> Result<Option<Vec<u8>>, AccessError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(secret) => Ok(secret.and_then(|s| s.data).and_then(|mut d| d.remove(key)).map(|v| v.0)),
            Err(error) if status_code(&error) == Some(403) => {
                Err(AccessError::Forbidden(cannot_get("Secret", "secrets", namespace, name)))
            }
            Err(error) => Err(classify(error, "secrets")),
        }
    }

    /// The text under `key` of the ConfigMap `name` in `namespace`; `None` when the ConfigMap or
    /// the key is missing.
    pub async fn config_map_key(&self, namespace: &str, name: &str, key: &str) -> Result<Option<String>, AccessError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        match api.get_opt(name).await {
            Ok(config_map) => Ok(config_map.and_then(|c| c.data).and_then(|mut d| d.remove(key))),
            Err(error) if status_code(&error) == Some(403) => {
                Err(AccessError::Forbidden(cannot_get("ConfigMap", "configmaps", namespace, name)))
            }
            Err(error) => Err(classify(error, "configmaps")),
        }
    }

    /// The Tenants the user may get by name, from the API server's own account of its rules.
    async fn readable_tenant_names(&mut self) -> Result<Vec<String>, AccessError> {
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec { namespace: Some("default".into()) },
            ..Default::default()
        };
        let api: Api<SelfSubjectRulesReview> = Api::all(self.client.clone());
        let answer = match api.create(&PostParams::default(), &review).await {
            Ok(answer) => answer,
            // Without the review we cannot know which Tenants to ask for.
            Err(error) if status_code(&error) == Some(403) => return Err(AccessError::Forbidden(no_tenant_readable())),
            Err(error) => return Err(classify(error, "selfsubjectrulesreviews.authorization.k8s.io")),
        };
        let status = answer.status.unwrap_or_default();
        if status.incomplete {
            self.notes.push("the API server's account of your permissions is incomplete (another authorizer decides some requests): Tenants you may read through it are not shown.".into());
        }
        Ok(readable_tenant_names(&status.resource_rules))
    }
}

/// The names of Tenants that rules let one `get` by name (the operator's per-tenant ClusterRole).
pub fn readable_tenant_names(rules: &[ResourceRule]) -> Vec<String> {
    let has = |list: &Option<Vec<String>>, value: &str| list.iter().flatten().any(|v| v == value || v == "*");
    let mut names: Vec<String> = rules
        .iter()
        .filter(|r| has(&r.api_groups, govpaas_crds::GROUP) && has(&r.resources, "tenants"))
        .filter(|r| r.verbs.iter().any(|v| v == "get" || v == "*"))
        .flat_map(|r| r.resource_names.clone().unwrap_or_default())
        .collect();
    names.sort();
    names.dedup();
    names
}

fn cannot_list_tenants() -> String {
    "You may not list Tenants (tenants.govpaas.io) at cluster scope: the whole agency tree needs RBAC `list` on `tenants` in API group `govpaas.io` in a ClusterRole bound to you by a ClusterRoleBinding (the provincial admin's role).".into()
}

/// The message for a user who may read no Tenant at all.
pub fn no_tenant_readable() -> String {
    format!(
        "{} You may not read any Tenant by name either: an agency admin reads its own Tenant through the ClusterRole govpaas-tenant-<tenant> the operator creates for the users and groups in the Tenant's spec.admins; ask the provincial admin to list you there.",
        cannot_list_tenants()
    )
}

/// The message for a user who may list a namespaced kind neither in all namespaces nor in its
/// tenants' namespaces.
pub fn cannot_list_namespaced(plural: &str, namespaces: &[String]) -> String {
    let (resource, group) = plural.split_once('.').unwrap_or((plural, ""));
    let mut message = format!(
        "You may not list {plural} in all namespaces: that needs RBAC `list` on `{resource}` in API group `{group}`, cluster-wide (a ClusterRole bound by a ClusterRoleBinding)"
    );
    if namespaces.is_empty() {
        message.push_str(", and none of your Tenants has a namespace to look in.");
    } else {
        message.push_str(&format!(
            ", nor in your Tenants' namespaces ({}): there the govpaas-agency-admin ClusterRole grants it to the Tenant's spec.admins.",
            namespaces.join(", ")
        ));
    }
    message
}

/// The message for a user who may not get one object of a core kind.
pub fn cannot_get(kind: &str, resource: &str, namespace: &str, name: &str) -> String {
    format!(
        "You may not read the {kind} {name} in namespace {namespace}: that needs RBAC `get` on `{resource}` (API group \"\"), resource name {name}, in namespace {namespace} (a Role bound by a RoleBinding there)"
    )
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn classify(error: kube::Error, what: &str) -> AccessError {
    match status_code(&error) {
        Some(401) => AccessError::Unauthorized,
        // A list of a kind the API server does not serve (get_opt answers a missing object with None).
        Some(404) => AccessError::NotInstalled(what.to_owned()),
        _ => AccessError::Kube { what: what.to_owned(), source: error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> ResourceRule {
        let list = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
        ResourceRule {
            api_groups: list(groups),
            resources: list(resources),
            resource_names: if names.is_empty() { None } else { list(names) },
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_tenants_an_agency_admin_may_read_by_name() {
        let rules = [
            // The operator's govpaas-tenant-so-yte ClusterRole.
            rule(&["govpaas.io"], &["tenants"], &["so-yte"], &["get", "list", "watch"]),
            // What system:basic-user and the agency-admin role (in "default": none) add.
            rule(&["authorization.k8s.io"], &["selfsubjectrulesreviews"], &[], &["create"]),
            rule(&["govpaas.io"], &["portals"], &["x"], &["get"]),
            rule(&["govpaas.io"], &["tenants"], &["watch-only"], &["watch"]),
            rule(&["*"], &["*"], &["bv-danang", "so-yte"], &["*"]),
        ];
        assert_eq!(readable_tenant_names(&rules), ["bv-danang", "so-yte"]);
        assert!(readable_tenant_names(&[]).is_empty());
    }

    #[test]
    fn permission_messages_name_the_resource_and_the_rbac_needed() {
        let message = no_tenant_readable();
        assert!(message.contains("You may not list Tenants (tenants.govpaas.io) at cluster scope"), "{message}");
        assert!(message.contains("`list` on `tenants` in API group `govpaas.io`"), "{message}");
        assert!(message.contains("spec.admins"), "{message}");
        let message = cannot_list_namespaced("datasharingservices.govpaas.io", &["so-yte".into()]);
        assert!(message.contains("`list` on `datasharingservices` in API group `govpaas.io`"), "{message}");
        assert!(message.contains("(so-yte)"), "{message}");
    }
}
