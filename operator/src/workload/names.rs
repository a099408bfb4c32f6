//! Names of the objects the operator creates for a service, derived from the service's name.
//!
//! Each kind of service adds its own suffix (`-portal`, `-docs`), so a Portal and a
//! DocumentService of the same name in one namespace never collide, and `kubectl get pods` says
//! what each Pod is. A Service name must be an RFC 1035 label (a letter first, at most 63
//! characters, no dots), which is stricter than what an object name may be: [`check_service_name`]
//! says so before anything is created, instead of an API error half-way through.

/// The longest Service name Kubernetes accepts.
pub const MAX_SERVICE_NAME: usize = 63;

/// `<name><suffix>`: the Deployment, Service, Ingress and PodDisruptionBudget of a service.
pub fn workload(name: &str, suffix: &str) -> String {
    format!("{name}{suffix}")
}

/// Whether `name` can name a service whose children are called `<name><suffix>`; the message
/// says what to change when it cannot.
pub fn check_service_name(name: &str, suffix: &str) -> Result<(), String> {
    let max = MAX_SERVICE_NAME - suffix.len();
    let first_is_letter = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    let allowed = name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let last_ok = name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if name.len() > max {
        return Err(format!(
            "metadata.name {name:?} is {} characters long; at most {max} fit, because its Kubernetes Service is named {name}{suffix} and a Service name has at most {MAX_SERVICE_NAME}",
            name.len()
        ));
    }
    if !(first_is_letter && allowed && last_ok) {
        return Err(format!(
            "metadata.name {name:?} cannot name a Kubernetes Service ({name}{suffix}): use lower-case letters, digits and '-', starting with a letter, without dots"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_must_be_dns_1035_labels() {
        assert!(check_service_name("dichvucong", "-portal").is_ok());
        assert!(check_service_name(&"a".repeat(56), "-portal").is_ok());
        let long = check_service_name(&"a".repeat(57), "-portal").unwrap_err();
        assert!(long.contains("at most 56 fit"), "{long}");
        for bad in ["1cong", "cong.thong.tin", "cong-", ""] {
            let err = check_service_name(bad, "-portal").unwrap_err();
            assert!(err.contains("starting with a letter"), "{bad}: {err}");
        }
        assert_eq!(workload("van-ban", "-docs"), "van-ban-docs");
    }
}
