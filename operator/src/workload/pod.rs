//! Pod templates that Pod Security `restricted` admits (the level every tenant namespace enforces),
//! with the requests and limits of the Platform's size presets.

use std::collections::BTreeMap;

use govpaas_crds::common::Size;
use govpaas_crds::platform::{PlatformSpec, SizePreset};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction, PodSecurityContext, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::reconcile::labels;

/// The unprivileged user and group every govpaas workload runs as.
pub const RUN_AS: i64 = 10001;
/// The port a service's web server listens on, plain HTTP behind the ingress controller.
pub const HTTP_PORT: i32 = 8080;
/// The name of [`HTTP_PORT`] on the container and the Service.
pub const HTTP_PORT_NAME: &str = "http";

/// The labels that select one service's Pods. Kept to the two that never change, because a
/// Deployment's selector is immutable.
pub fn selector_labels(component: &str, instance: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_owned(), format!("govpaas-{component}")),
        (labels::INSTANCE.to_owned(), instance.to_owned()),
    ])
}

/// [`selector_labels`] as a LabelSelector.
pub fn selector(component: &str, instance: &str) -> LabelSelector {
    LabelSelector { match_labels: Some(selector_labels(component, instance)), ..Default::default() }
}

/// The Platform's preset for `size`.
pub fn preset(platform: &PlatformSpec, size: Size) -> &SizePreset {
    match size {
        Size::Small => &platform.sizes.small,
        Size::Medium => &platform.sizes.medium,
        Size::Large => &platform.sizes.large,
    }
}

/// Requests and limits of one replica.
pub fn resources(preset: &SizePreset) -> ResourceRequirements {
    let of = |cpu: &Quantity, memory: &Quantity| {
        BTreeMap::from([("cpu".to_owned(), cpu.clone()), ("memory".to_owned(), memory.clone())])
    };
    ResourceRequirements {
        requests: Some(of(&preset.requests.cpu, &preset.requests.memory)),
        limits: Some(of(&preset.limits.cpu, &preset.limits.memory)),
        ..Default::default()
    }
}

/// Pod-level settings of `restricted`: a non-root user, the runtime's seccomp profile, and a group
/// that owns mounted volumes (changed only when the volume's root does not match yet, so a large
/// document volume is not walked on every start).
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// Container-level settings of `restricted`, plus a read-only root file system (writable paths are
/// mounted explicitly).
pub fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        run_as_non_root: Some(true),
        read_only_root_filesystem: Some(true),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// A named TCP container port.
pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort { name: Some(name.into()), container_port: port, protocol: Some("TCP".into()), ..Default::default() }
}

/// An HTTP GET probe on the named port.
pub fn http_probe(path: &str, port_name: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port_name.into()),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

/// The volume every container gets at `/tmp`: the root file system is read-only.
pub const TMP_VOLUME: &str = "tmp";

/// The `/tmp` scratch volume, bounded so a runaway temp file cannot fill the node.
pub fn tmp_volume() -> Volume {
    Volume {
        name: TMP_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity("64Mi".into())), ..Default::default() }),
        ..Default::default()
    }
}

/// A volume mount.
pub fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// A plain environment variable.
pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

/// A service's web server container: the image, the preset's resources, `restricted` security,
/// an `http` port probed at `/healthz`, `/tmp` mounted, plus `ports`, `env` and `mounts`.
pub fn web_container(
    name: &str,
    image: &str,
    preset: &SizePreset,
    ports: Vec<ContainerPort>,
    env: Vec<EnvVar>,
    mut mounts: Vec<VolumeMount>,
) -> Container {
    mounts.insert(0, mount(TMP_VOLUME, "/tmp", false));
    let mut all_ports = vec![container_port(HTTP_PORT_NAME, HTTP_PORT)];
    all_ports.extend(ports);
    Container {
        name: name.into(),
        image: Some(image.into()),
        image_pull_policy: Some("IfNotPresent".into()),
        ports: Some(all_ports),
        env: (!env.is_empty()).then_some(env),
        resources: Some(resources(preset)),
        security_context: Some(container_security_context()),
        readiness_probe: Some(http_probe("/healthz", HTTP_PORT_NAME, 10, 3)),
        liveness_probe: Some(http_probe("/healthz", HTTP_PORT_NAME, 20, 6)),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;

    #[test]
    fn presets_become_requests_and_limits() {
        let platform = fixtures::platform();
        let medium = resources(preset(&platform.spec, Size::Medium));
        assert_eq!(medium.requests.as_ref().unwrap()["cpu"].0, "250m");
        assert_eq!(medium.limits.as_ref().unwrap()["memory"].0, "1Gi");
    }

    #[test]
    fn security_contexts_meet_restricted() {
        let pod = pod_security_context();
        assert_eq!(pod.run_as_non_root, Some(true));
        assert_eq!(pod.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let container = container_security_context();
        assert_eq!(container.allow_privilege_escalation, Some(false));
        assert_eq!(container.capabilities.unwrap().drop.unwrap(), ["ALL"]);
    }
}
