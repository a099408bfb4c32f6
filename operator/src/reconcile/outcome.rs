//! Why a reconcile stopped before it applied everything, as a type: a stable reason users and
//! alerts can tell apart ([`Halt`]), or an error the controller retries ([`Stop::Failed`]). Steps
//! return `Result<T, Stop>`, so `?` carries either out of a reconcile: an API error converts to
//! [`Stop::Failed`], a [`Halt`] to [`Stop::Halt`].

use super::Problem;
use crate::error::Error;

/// Why a reconcile applied nothing (or stopped part-way, retrying at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// The object belongs to a Tenant another operator serves (`--tenant-selector`): nothing is
    /// written.
    NotServed,
    /// Waiting for something outside the object (the Platform, its tenant, a CA): `Ready` is False
    /// with the problem's reason.
    Waiting(Problem),
    /// Declared in a way that cannot be applied, or does not fit: nothing was changed; `Ready` is
    /// False with a Warning Event.
    Refused(Problem),
    /// A certificate could not be issued: nothing was changed.
    CertificateFailed(String),
    /// An object changed after this reconcile read it (a Secret edited by hand mid-reconcile):
    /// nothing is wrong, and the next reconcile, at once, decides on what is there now.
    ChangedMeanwhile,
}

impl Halt {
    /// What a user is told: the problem's message, or the halt itself when it carries none.
    pub fn into_message(self) -> String {
        match self {
            Halt::Waiting(problem) | Halt::Refused(problem) => problem.message,
            other => format!("{other:?}"),
        }
    }
}

/// What ends a reconcile step early.
#[derive(Debug)]
pub enum Stop {
    Halt(Halt),
    Failed(Error),
}

impl Stop {
    /// Waiting, with a stable `reason`.
    pub fn waiting(reason: &'static str, message: impl Into<String>) -> Self {
        Stop::Halt(Halt::Waiting(Problem::new(reason, message)))
    }

    /// Refused, as `problem` says.
    pub fn refused(problem: Problem) -> Self {
        Stop::Halt(Halt::Refused(problem))
    }
}

impl From<Halt> for Stop {
    fn from(halt: Halt) -> Self {
        Stop::Halt(halt)
    }
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Failed(error)
    }
}

impl From<kube::Error> for Stop {
    fn from(error: kube::Error) -> Self {
        Stop::Failed(Error::Kube(error))
    }
}

/// The result of a reconcile step.
pub type Step<T> = std::result::Result<T, Stop>;
