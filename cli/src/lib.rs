//! `kubectl govpaas`: the provincial admin's view of govpaas, read from the cluster with the
//! user's own kubeconfig and permissions.
//!
//! Every command lists each kind it needs once ([`access`], the only part that talks to the API
//! server) and hands the lists to a pure function that builds a report ([`tree`], [`quota`],
//! [`grants`], [`certs`]): a serialisable value with stable field names (`-o json|yaml`), which
//! the same module renders as a table ([`table`]) or, for grants, as Graphviz. [`audit`] verifies
//! the LGSP gateway's audit log with the certificates it reads from the cluster.

pub mod access;
pub mod args;
pub mod audit;
pub mod certs;
pub mod grants;
pub mod objects;
pub mod quota;
pub mod table;
pub mod tree;

#[cfg(test)]
mod fixtures;

/// The `apiVersion` of every report printed with `-o json|yaml`: the field names are a contract,
/// changed only with a new version.
pub const API_VERSION: &str = "kubectl.govpaas.io/v1";

/// How much of the cluster a report was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every object of the kinds listed.
    Complete,
    /// Only what the user may read (an agency admin): the Tenants it may get by name and the
    /// objects in their namespaces.
    Partial,
}
