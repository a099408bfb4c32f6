//! Whether a service fits its namespace's quota, decided before anything is applied.
//!
//! Kubernetes enforces ResourceQuotas when a Pod or a claim is created; left to that, a service
//! that does not fit shows up as a ReplicaSet's `FailedCreate` Event that nobody reads, and a
//! Deployment that never becomes ready. So the controller compares what the service will consume
//! (replicas × the size preset's requests and limits, the volume, the Service) with each
//! ResourceQuota's `hard − used`, counting what the service already holds as its own, and names
//! every resource that is short. Public hosts are not a Kubernetes resource: the tenant's
//! `quota.publicHosts` is checked against the hosts of the tenant's older services.
//!
//! Only an increase can be short: a resource the change does not grow beyond what the service was
//! admitted with (its Deployment's `spec.replicas`, not the Pods that happen to exist) never blocks
//! it, even when the quota was lowered below what is in use. What the quota refuses later anyway (a
//! Pod that dies and may not be replaced) is the ReplicaSet's `FailedCreate`, read by
//! [`replica_failure`] into the same condition.

use std::collections::BTreeMap;
use std::fmt;

use govpaas_crds::platform::SizePreset;
use govpaas_crds::quantity::{Amount, QuantityError, Style};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ResourceQuota;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What a service consumes, in ResourceQuota terms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub pods: Amount,
    pub requests_cpu: Amount,
    pub requests_memory: Amount,
    pub limits_cpu: Amount,
    pub limits_memory: Amount,
    pub requests_storage: Amount,
    pub claims: Amount,
    pub services: Amount,
}

/// A ResourceQuota key a service's usage is compared with.
#[derive(Clone, Copy)]
struct Tracked {
    /// What the user calls it (the Tenant's `quota` field where there is one).
    resource: &'static str,
    style: Style,
    of: fn(&Usage) -> Amount,
}

fn tracked(key: &str, storage_class: Option<&str>) -> Option<Tracked> {
    let t = |resource, style, of| Some(Tracked { resource, style, of });
    match key {
        "pods" | "count/pods" => t("pods", Style::Decimal, |u| u.pods),
        "cpu" | "requests.cpu" => t("cpu", Style::Decimal, |u| u.requests_cpu),
        "memory" | "requests.memory" => t("memory", Style::Binary, |u| u.requests_memory),
        "limits.cpu" => t("limits.cpu", Style::Decimal, |u| u.limits_cpu),
        "limits.memory" => t("limits.memory", Style::Binary, |u| u.limits_memory),
        "requests.storage" => t("storage", Style::Binary, |u| u.requests_storage),
        "persistentvolumeclaims" | "count/persistentvolumeclaims" => {
            t("persistentvolumeclaims", Style::Decimal, |u| u.claims)
        }
        "services" | "count/services" => t("services", Style::Decimal, |u| u.services),
        _ => {
            let class = storage_class?;
            if key == format!("{class}.storageclass.storage.k8s.io/requests.storage") {
                t("storage", Style::Binary, |u| u.requests_storage)
            } else if key == format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims") {
                t("persistentvolumeclaims", Style::Decimal, |u| u.claims)
            } else {
                None
            }
        }
    }
}

impl Usage {
    /// `replicas` Pods of the `preset` size.
    pub fn of_pods(replicas: i32, preset: &SizePreset) -> Result<Usage, QuantityError> {
        let times = |quantity: &Quantity| {
            let one = Amount::of(quantity)?;
            let mut sum = Amount::ZERO;
            for _ in 0..replicas.max(0) {
                sum = sum.checked_add(one).ok_or_else(|| QuantityError::TooLarge(quantity.0.clone()))?;
            }
            Ok::<_, QuantityError>(sum)
        };
        Ok(Usage {
            pods: Amount::from_units(replicas.max(0).into()),
            requests_cpu: times(&preset.requests.cpu)?,
            requests_memory: times(&preset.requests.memory)?,
            limits_cpu: times(&preset.limits.cpu)?,
            limits_memory: times(&preset.limits.memory)?,
            ..Usage::default()
        })
    }

    /// What a Deployment's Pods hold now: each existing Pod (`status.replicas`) with its template's
    /// requests and limits. Unparsable quantities count as zero: Kubernetes accepted them, so they
    /// parse; and a lower count only makes the check stricter.
    pub fn held_by(deployment: &Deployment) -> Usage {
        let pods = deployment.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        Self::of_template(deployment, pods)
    }

    /// What a Deployment was admitted with: `spec.replicas` Pods of its template. A Pod that died
    /// and cannot be replaced (the quota shrank meanwhile) is still the service's: declaring the
    /// same again is no growth.
    pub fn admitted_by(deployment: &Deployment) -> Usage {
        Self::of_template(deployment, deployment.spec.replicas.unwrap_or(1))
    }

    fn of_template(deployment: &Deployment, pods: i32) -> Usage {
        let pods = pods.max(0);
        let containers = deployment.spec.template.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
        let sum =
            |pick: fn(&k8s_openapi::api::core::v1::ResourceRequirements) -> Option<&BTreeMap<String, Quantity>>,
             key: &str| {
                let mut one = Amount::ZERO;
                for container in containers {
                    let amount = container
                        .resources
                        .as_ref()
                        .and_then(pick)
                        .and_then(|m| m.get(key))
                        .and_then(|q| Amount::of(q).ok())
                        .unwrap_or(Amount::ZERO);
                    one = one.checked_add(amount).unwrap_or(one);
                }
                let mut all = Amount::ZERO;
                for _ in 0..pods {
                    all = all.checked_add(one).unwrap_or(all);
                }
                all
            };
        Usage {
            pods: Amount::from_units(pods.into()),
            requests_cpu: sum(|r| r.requests.as_ref(), "cpu"),
            requests_memory: sum(|r| r.requests.as_ref(), "memory"),
            limits_cpu: sum(|r| r.limits.as_ref(), "cpu"),
            limits_memory: sum(|r| r.limits.as_ref(), "memory"),
            ..Usage::default()
        }
    }

    /// One Service.
    pub fn one_service() -> Usage {
        Usage { services: Amount::from_units(1), ..Usage::default() }
    }

    /// One volume claim of `size`.
    pub fn one_claim(size: Amount) -> Usage {
        Usage { claims: Amount::from_units(1), requests_storage: size, ..Usage::default() }
    }

    /// The sum (saturating: these are far below the bounds).
    pub fn plus(self, other: Usage) -> Usage {
        let add = |a: Amount, b: Amount| a.checked_add(b).unwrap_or(a);
        Usage {
            pods: add(self.pods, other.pods),
            requests_cpu: add(self.requests_cpu, other.requests_cpu),
            requests_memory: add(self.requests_memory, other.requests_memory),
            limits_cpu: add(self.limits_cpu, other.limits_cpu),
            limits_memory: add(self.limits_memory, other.limits_memory),
            requests_storage: add(self.requests_storage, other.requests_storage),
            claims: add(self.claims, other.claims),
            services: add(self.services, other.services),
        }
    }
}

/// One resource a service needs more of than its quota has left.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall {
    /// `pods`, `cpu`, `memory`, `storage`, `services`, `publicHosts`, …
    pub resource: String,
    /// What the service needs in all.
    pub needed: String,
    /// What is left for it (its own current usage included).
    pub available: String,
    /// Where the limit comes from.
    pub limit: String,
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} needs {} but {} is left ({})", self.resource, self.needed, self.available, self.limit)
    }
}

/// The resources that `wanted` needs beyond what each of `quotas` (the namespace's
/// ResourceQuotas, with their status) leaves. Only growth beyond what the service was `admitted`
/// with is checked, against `hard − used` plus what the service `held` (counted in `used`).
pub fn shortfalls(
    quotas: &[ResourceQuota],
    wanted: &Usage,
    admitted: &Usage,
    held: &Usage,
    storage_class: Option<&str>,
) -> Vec<Shortfall> {
    let mut short = Vec::new();
    for quota in quotas {
        let Some(status) = &quota.status else { continue };
        let quota_name = quota.metadata.name.as_deref().unwrap_or("?");
        let used = status.used.clone().unwrap_or_default();
        for (key, hard) in status.hard.iter().flatten() {
            let Some(t) = tracked(key, storage_class) else { continue };
            let need = (t.of)(wanted);
            let have = (t.of)(held);
            // A resource the change does not grow never blocks it.
            if need <= (t.of)(admitted) {
                continue;
            }
            let Ok(hard_amount) = Amount::of(hard) else { continue };
            let used_amount = match used.get(key).map(Amount::of) {
                Some(Ok(amount)) => amount,
                Some(Err(_)) => continue,
                None => Amount::ZERO,
            };
            let Some(left) = hard_amount.checked_sub(used_amount).and_then(|l| l.checked_add(have)) else { continue };
            if need > left {
                short.push(Shortfall {
                    resource: t.resource.to_owned(),
                    needed: need.format(t.style),
                    available: (if left.is_negative() { Amount::ZERO } else { left }).format(t.style),
                    limit: format!(
                        "ResourceQuota {quota_name}: {key} hard {}, used {}",
                        hard_amount.format(t.style),
                        used_amount.format(t.style)
                    ),
                });
            }
        }
    }
    short.sort_by(|a, b| a.resource.cmp(&b.resource));
    short.dedup_by(|a, b| a.resource == b.resource);
    short
}

/// The public-host shortfall: `wanted` hosts, when the tenant's older services use `used_before`
/// of its `quota`.
pub fn public_hosts_shortfall(quota: i32, used_before: i64, wanted: usize) -> Option<Shortfall> {
    let wanted = i64::try_from(wanted).unwrap_or(i64::MAX);
    let left = (i64::from(quota) - used_before).max(0);
    (wanted > left).then(|| Shortfall {
        resource: "publicHosts".into(),
        needed: wanted.to_string(),
        available: left.to_string(),
        limit: format!("the Tenant's quota.publicHosts is {quota}, older services use {used_before}"),
    })
}

/// The message of the condition for `shortfalls` in `namespace`.
pub fn message(namespace: &str, shortfalls: &[Shortfall]) -> String {
    let names: Vec<&str> = shortfalls.iter().map(|s| s.resource.as_str()).collect();
    let details: Vec<String> = shortfalls.iter().map(ToString::to_string).collect();
    format!(
        "not enough quota in namespace {namespace} for {}: {}. Nothing was changed; lower replicas, size or storage, or ask the provincial admin to raise the tenant's quota",
        names.join(", "),
        details.join("; ")
    )
}

/// What a Deployment's ReplicaSet failed to create, from the Deployment's `ReplicaFailure`
/// condition (Kubernetes copies a ReplicaSet's `FailedCreate` there): a quota the precheck could not
/// foresee (another workload took the room meanwhile, a surge Pod).
pub fn replica_failure(deployment: &Deployment) -> Option<String> {
    deployment
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some("ReplicaFailure") && c.status.as_deref() == Some("True"))
        .map(|c| c.message.clone().or_else(|| c.reason.clone()).unwrap_or_else(|| "FailedCreate".to_owned()))
}

#[cfg(test)]
mod tests {
    use govpaas_crds::platform::ComputeResources;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceQuotaStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn quota(hard: &[(&str, &str)], used: &[(&str, &str)]) -> ResourceQuota {
        let map = |pairs: &[(&str, &str)]| {
            Some(pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect::<BTreeMap<_, _>>())
        };
        ResourceQuota {
            metadata: ObjectMeta { name: Some("govpaas-quota".into()), ..Default::default() },
            status: Some(ResourceQuotaStatus { hard: map(hard), used: map(used) }),
            ..Default::default()
        }
    }

    fn small() -> SizePreset {
        SizePreset { requests: ComputeResources::new("100m", "128Mi"), limits: ComputeResources::new("500m", "512Mi") }
    }

    #[test]
    fn pods_times_preset() {
        let usage = Usage::of_pods(3, &small()).unwrap();
        assert_eq!(usage.pods, Amount::from_units(3));
        assert_eq!(usage.requests_cpu, Amount::parse("300m").unwrap());
        assert_eq!(usage.limits_memory, Amount::parse("1536Mi").unwrap());
        assert_eq!(Usage::of_pods(0, &small()).unwrap(), Usage::default());
    }

    #[test]
    fn a_new_service_that_fits_is_not_short() {
        let q = quota(&[("pods", "10"), ("requests.cpu", "2"), ("requests.memory", "4Gi")], &[("pods", "2")]);
        let wanted = Usage::of_pods(2, &small()).unwrap().plus(Usage::one_service());
        assert!(shortfalls(&[q], &wanted, &Usage::default(), &Usage::default(), None).is_empty());
    }

    #[test]
    fn every_short_resource_is_named_once() {
        let q = quota(
            &[("pods", "3"), ("requests.cpu", "250m"), ("requests.memory", "4Gi"), ("requests.storage", "5Gi")],
            &[("pods", "2"), ("requests.cpu", "100m"), ("requests.storage", "0")],
        );
        let wanted = Usage::of_pods(2, &small())
            .unwrap()
            .plus(Usage::one_claim(Amount::parse("10Gi").unwrap()))
            .plus(Usage::one_service());
        let short = shortfalls(&[q.clone(), q], &wanted, &Usage::default(), &Usage::default(), None);
        let names: Vec<&str> = short.iter().map(|s| s.resource.as_str()).collect();
        assert_eq!(names, ["cpu", "pods", "storage"]);
        assert_eq!(
            short[0].to_string(),
            "cpu needs 200m but 150m is left (ResourceQuota govpaas-quota: requests.cpu hard 250m, used 100m)"
        );
        assert_eq!(short[2].needed, "10Gi");
        let msg = message("so-noi-vu", &short);
        assert!(msg.starts_with("not enough quota in namespace so-noi-vu for cpu, pods, storage: "), "{msg}");
    }

    #[test]
    fn what_the_service_holds_counts_as_its_own() {
        // Two running replicas use 2 of 3 pods; growing to 3 fits, to 4 does not.
        let q = quota(&[("pods", "3")], &[("pods", "2")]);
        let current = Usage::of_pods(2, &small()).unwrap();
        let three = Usage::of_pods(3, &small()).unwrap();
        assert!(shortfalls(std::slice::from_ref(&q), &three, &current, &current, None).is_empty());
        let four = Usage::of_pods(4, &small()).unwrap();
        let short = shortfalls(&[q], &four, &current, &current, None);
        assert_eq!(short[0].available, "3");
    }

    #[test]
    fn a_change_that_grows_nothing_is_never_short() {
        // The admin lowered the quota below what runs: an image change must still go through.
        let q = quota(&[("pods", "1")], &[("pods", "2")]);
        let current = Usage::of_pods(2, &small()).unwrap();
        assert!(shortfalls(&[q], &current, &current, &current, None).is_empty());
    }

    #[test]
    fn a_pod_the_quota_no_longer_lets_be_replaced_is_no_growth() {
        // Admitted with 2, one Pod died and the quota shrank to what is used: declaring 2 again is
        // not refused (the ReplicaSet's FailedCreate reports it); declaring 3 is.
        let q = quota(&[("pods", "2")], &[("pods", "2")]);
        let admitted = Usage::of_pods(2, &small()).unwrap();
        let held = Usage::of_pods(1, &small()).unwrap();
        assert!(shortfalls(std::slice::from_ref(&q), &admitted, &admitted, &held, None).is_empty());
        let three = Usage::of_pods(3, &small()).unwrap();
        let short = shortfalls(&[q], &three, &admitted, &held, None);
        assert_eq!((short[0].needed.as_str(), short[0].available.as_str()), ("3", "1"));
    }

    #[test]
    fn storage_class_quotas_count_as_storage() {
        let q = quota(&[("standard.storageclass.storage.k8s.io/requests.storage", "1Gi")], &[]);
        let wanted = Usage::one_claim(Amount::parse("2Gi").unwrap());
        let none = Usage::default();
        assert_eq!(shortfalls(std::slice::from_ref(&q), &wanted, &none, &none, Some("standard")).len(), 1);
        assert!(shortfalls(&[q], &wanted, &none, &none, Some("fast")).is_empty());
    }

    #[test]
    fn garbage_in_a_quota_status_is_skipped() {
        let q = quota(&[("pods", "lots")], &[("pods", "2")]);
        let none = Usage::default();
        assert!(shortfalls(&[q], &Usage::of_pods(5, &small()).unwrap(), &none, &none, None).is_empty());
    }

    #[test]
    fn a_deployment_holds_what_its_existing_pods_request() {
        let preset = small();
        let mut deployment = Deployment::default();
        deployment.spec.template.spec = Some(PodSpec {
            containers: vec![Container {
                resources: Some(crate::workload::pod::resources(&preset)),
                ..Default::default()
            }],
            ..Default::default()
        });
        deployment.spec.replicas = Some(3);
        assert_eq!(Usage::held_by(&deployment), Usage::default(), "no Pod yet");
        assert_eq!(Usage::admitted_by(&deployment), Usage::of_pods(3, &preset).unwrap());
        deployment.status = Some(DeploymentStatus { replicas: Some(2), ..Default::default() });
        assert_eq!(Usage::held_by(&deployment), Usage::of_pods(2, &preset).unwrap());
    }

    #[test]
    fn public_hosts() {
        assert!(public_hosts_shortfall(3, 1, 2).is_none());
        let short = public_hosts_shortfall(3, 2, 2).unwrap();
        assert_eq!(short.resource, "publicHosts");
        assert_eq!(short.available, "1");
        assert_eq!(public_hosts_shortfall(1, 5, 1).unwrap().available, "0");
    }
}
