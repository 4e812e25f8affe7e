//! The agent's error type: what can go wrong talking to the API server, on disk, or
//! in a driver.

use std::path::PathBuf;

use crate::driver::DriverError;
use crate::lifecycle::TransitionError;

/// Everything the agent's subsystems report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("API request failed: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig (or the connection settings built from the flags) is unusable.
    #[error("client configuration: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A file or directory of the agent's data dir could not be used.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the agent was doing.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An object (from the API or the checkpoint) did not decode.
    #[error("decoding {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A driver failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Every host port of the node's range is taken.
    #[error("no free host port in {begin}-{end}")]
    NoFreePort {
        /// First port of the range.
        begin: i32,
        /// Last port of the range.
        end: i32,
    },
    /// A lifecycle transition was refused.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The HTTP status of an API error, if this is one.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Error::Kube(kube::Error::Api(status)) => Some(status.code),
            _ => None,
        }
    }
}
