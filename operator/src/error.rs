//! The operator's one error type.
//!
//! Every fallible step of every controller returns [`Error`]. Its variant names are stable and
//! low-cardinality, so [`Error::metric_label`] can label metrics and logs without ever leaking an
//! object's name or an error's text into a label. User mistakes are *not* errors here: they become
//! status conditions and Events (see `reconcile::conditions`), so a bad Tenant never makes the
//! controller retry hot.

use kube::runtime::watcher;

/// Anything that can make a reconcile or the operator's start fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request (it is retried with backoff).
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// A watch stream failed (the watcher retries with backoff on its own).
    #[error("watch failed: {0}")]
    Watch(#[from] watcher::Error),

    /// No usable cluster configuration (kubeconfig or in-cluster).
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),

    /// A desired object could not be turned into JSON for server-side apply.
    #[error("cannot serialize {kind} {name}: {source}")]
    Serialize { kind: &'static str, name: String, source: serde_json::Error },

    /// An object from the API lacks a field every stored object has (name, uid).
    #[error("{kind} is missing {field}")]
    MissingField { kind: &'static str, field: &'static str },

    /// An Event could not be published (reported, never fatal to the reconcile).
    #[error("cannot publish an Event: {0}")]
    Event(#[source] kube::Error),

    /// A reconcile did not finish in time and was cancelled (it is retried with backoff; every step
    /// is an idempotent apply, so a cancelled reconcile leaves nothing half-done that the retry
    /// does not finish).
    #[error("the reconcile did not finish within {} s", .0.as_secs())]
    Timeout(std::time::Duration),

    /// Leader election failed, or this instance lost the Lease while leading.
    #[error("leader election: {0}")]
    Leadership(String),

    /// The watches a controller's reconciles read from stopped before they had listed once (the
    /// operator is shutting down).
    #[error("the {0} controller's caches stopped before they were ready")]
    CachesStopped(&'static str),

    /// The metrics and health port could not be served.
    #[error("cannot serve metrics and health on {address}: {source}")]
    Serve { address: std::net::SocketAddr, source: std::io::Error },
}

impl Error {
    /// The variant's name: a fixed label for metrics, never object names or error text.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "Kube",
            Error::Watch(_) => "Watch",
            Error::Config(_) => "Config",
            Error::Serialize { .. } => "Serialize",
            Error::MissingField { .. } => "MissingField",
            Error::Event(_) => "Event",
            Error::Timeout(_) => "Timeout",
            Error::Leadership(_) => "Leadership",
            Error::CachesStopped(_) => "CachesStopped",
            Error::Serve { .. } => "Serve",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_are_variant_names() {
        let missing = Error::MissingField { kind: "Tenant", field: "metadata.uid" };
        assert_eq!(missing.metric_label(), "MissingField");
        assert_eq!(Error::Config("no kubeconfig".into()).metric_label(), "Config");
        let serialize = Error::Serialize {
            kind: "Namespace",
            name: "so-noi-vu".into(),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert_eq!(serialize.metric_label(), "Serialize");
        assert!(!serialize.metric_label().contains("so-noi-vu"));
    }
}
