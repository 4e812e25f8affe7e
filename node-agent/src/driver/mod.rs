//! Drivers run a task's container behind one trait. `process` (a plain process in its
//! own group and sandbox) is the only driver so far; runc and docker will sit beside it.
//! `process_group` holds the few syscalls on groups, `log_rotation` keeps logs bounded.

pub mod log_rotation;
pub mod process;
pub mod process_group;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use drover_api::container::ContainerSpec;
use drover_api::health::HealthCheck;

/// `PATH` for tasks when the agent has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a driver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The executable does not exist.
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// The executable exists but may not be run.
    #[error("command not executable: {0} (permission denied)")]
    NotExecutable(String),
    /// The container names nothing to run.
    #[error("nothing to run: the container has neither cmd nor command")]
    NoCommand,
    /// This agent has no such driver.
    #[error("driver {0} is not available on this node")]
    Unsupported(String),
    /// The working directory is missing.
    #[error("working directory {} does not exist", .0.display())]
    WorkingDir(PathBuf),
    /// Spawning failed for another reason.
    #[error("cannot start {command}: {source}")]
    Spawn {
        /// The executable.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Preparing the sandbox or log files failed.
    #[error("{what} {}: {source}", path.display())]
    Sandbox {
        /// What the driver was doing.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Waiting for the process failed.
    #[error("waiting for process {pid}: {source}")]
    Wait {
        /// The process.
        pid: i32,
        /// The OS error.
        source: std::io::Error,
    },
    /// Signalling the process group failed.
    #[error("signalling process group {pgid}: {source}")]
    Signal {
        /// The group.
        pgid: i32,
        /// The errno.
        source: nix::Error,
    },
}

/// Everything a driver needs to start one task.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// `TASK_ID`.
    pub task_id: String,
    /// `APP_ID` (the owner's name, empty when none).
    pub app_id: String,
    /// `HOST`.
    pub host: String,
    /// Working directory and log directory.
    pub sandbox: PathBuf,
    /// What to run.
    pub container: ContainerSpec,
    /// Ports (name, host port), in the Task's order.
    pub ports: Vec<(Option<String>, u16)>,
    /// Health checks, run by the supervisor (not the driver) while the task runs.
    pub health_checks: Vec<HealthCheck>,
    /// Readiness checks, likewise.
    pub readiness_checks: Vec<HealthCheck>,
}

impl Launch {
    /// The task's environment: the user's variables, then `PORT0..n`, `PORT`, `PORTS`,
    /// `PORT_<NAME>`, `HOST`, `TASK_ID`, `APP_ID` (ours win: a user `PORT0` would lie).
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = self.container.env.clone();
        for (i, (name, port)) in self.ports.iter().enumerate() {
            env.insert(format!("PORT{i}"), port.to_string());
            if let Some(name) = name {
                let var: String = name
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                env.insert(format!("PORT_{var}"), port.to_string());
            }
        }
        if let Some((_, first)) = self.ports.first() {
            env.insert("PORT".into(), first.to_string());
            let all: Vec<String> = self.ports.iter().map(|(_, p)| p.to_string()).collect();
            env.insert("PORTS".into(), all.join(","));
        }
        env.insert("HOST".into(), self.host.clone());
        env.insert("TASK_ID".into(), self.task_id.clone());
        env.insert("APP_ID".into(), self.app_id.clone());
        env
    }

    /// The whole environment the task's process gets: the agent's `PATH` (or a default
    /// one), then `environment()`. Health `exec` checks run with the same.
    pub fn process_environment(&self) -> BTreeMap<String, String> {
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
        let mut env = BTreeMap::from([("PATH".to_string(), path)]);
        env.extend(self.environment());
        env
    }

    /// What a person calls this command (for messages): the executable name.
    pub fn program_name(&self) -> String {
        match (&self.container.cmd, self.container.command.first()) {
            (Some(cmd), _) => cmd
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string(),
            (None, Some(c)) => c.clone(),
            (None, None) => String::new(),
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// Ended while not our child (adopted after an agent restart): status unknown.
    Unknown,
}

impl Exit {
    /// From a wait status.
    pub fn from_status(status: std::process::ExitStatus) -> Exit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Unknown,
        }
    }

    /// "exited with code 3", "killed by SIGKILL", …
    pub fn describe(self) -> String {
        match self {
            Exit::Code(code) => format!("exited with code {code}"),
            Exit::Signal(sig) => format!("killed by {}", signal_name(sig)),
            Exit::Unknown => "exited while the agent was not watching (status unknown)".into(),
        }
    }
}

/// `SIGKILL` for 9, or `signal 64` when nix does not know it.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// A way of running tasks.
#[async_trait::async_trait]
pub trait Driver: Send + Sync {
    /// `process`, `runc`, `docker`.
    fn name(&self) -> &'static str;

    /// Starts the task; returns once it runs (or could not start).
    async fn start(&self, launch: &Launch) -> Result<Box<dyn Running>, DriverError>;

    /// Takes back a task started by an earlier agent, if its process still lives.
    fn adopt(&self, pid: i32, launch: &Launch) -> Option<Box<dyn Running>>;
}

/// A started task.
#[async_trait::async_trait]
pub trait Running: Send {
    /// Its process id (the group leader for the process driver).
    fn pid(&self) -> i32;

    /// Until it ends. Cancel-safe.
    async fn wait(&mut self) -> Result<Exit, DriverError>;

    /// SIGTERM, `grace`, SIGKILL; returns how it ended.
    async fn kill(&mut self, grace: Duration) -> Result<Exit, DriverError>;
}
