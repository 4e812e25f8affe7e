//! Why a health or readiness check cannot be set up for a task. Failures of a check
//! that runs are not errors: they are `Outcome::Fail` sentences.

use thiserror::Error;

/// A check that cannot be resolved against its task.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HealthError {
    /// `portName` names no port of the task.
    #[error("no port named {name:?} (the task's named ports: {known})")]
    UnknownPortName {
        /// The name asked for.
        name: String,
        /// The names the task has, comma-separated, or "none".
        known: String,
    },
    /// A port number outside 1–65535.
    #[error("port {0} is not between 1 and 65535")]
    InvalidPort(i64),
    /// Neither `port` nor `portName`, and the task has no PORT0 to default to.
    #[error("neither port nor portName is set and the task has no ports")]
    NoPort,
    /// Both `port` and `portName`.
    #[error("port and portName are mutually exclusive")]
    AmbiguousPort,
    /// None or several of `http`, `tcp`, `exec`.
    #[error("exactly one of http, tcp or exec must be set, found {0}")]
    CheckKind(usize),
    /// `exec.command` is empty.
    #[error("exec command is empty")]
    EmptyCommand,
    /// An HTTP path that is not a plain absolute request target.
    #[error("HTTP path {0:?} must start with '/' and contain no spaces or control characters")]
    InvalidPath(String),
    /// HTTPS checks are not implemented yet.
    #[error("HTTPS checks are not supported yet ({url}); use scheme HTTP or a tcp check")]
    HttpsUnsupported {
        /// The URL the check would have fetched.
        url: String,
    },
    /// A timing field out of range.
    #[error("{field} must be {expected}, got {value}")]
    InvalidTiming {
        /// camelCase field name.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it was.
        value: i64,
    },
    /// One of the task's checks, by its field path (`healthChecks[1]`).
    #[error("{path}: {error}")]
    InCheck {
        /// `healthChecks[i]` or `readinessChecks[i]`.
        path: String,
        /// What is wrong with it.
        error: Box<HealthError>,
    },
}
