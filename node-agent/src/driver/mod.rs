//! Drivers run a task's container behind one trait. `process` (a plain process in its
//! own group and sandbox) is the only driver so far; runc and docker will sit beside it.
//! `process_group` holds the few syscalls on groups, `log_rotation` keeps logs bounded.

pub mod cgroups;
pub mod docker;
pub mod log_rotation;
pub mod oci;
pub mod process;
pub mod process_group;
pub mod runc;
pub mod shim;

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
    /// The container runtime (runc) or its image refused the task; the message says why.
    #[error("{0}")]
    Runtime(String),
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
    /// What the task may use (`cpus`, `memMiB`): its cgroup limits where the host allows.
    pub resources: drover_api::resources::Resources,
    /// Volumes with their node paths (bind-mounted by container drivers).
    pub volumes: Vec<drover_api::kinds::task::VolumeBinding>,
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

    /// Takes back a task started by an earlier agent, if its process still lives: a
    /// checkpoint that knows only the pid.
    fn adopt(&self, pid: i32, launch: &Launch) -> Option<Box<dyn Running>> {
        self.adopt_checkpointed(
            &Checkpointed {
                pid,
                ..Default::default()
            },
            launch,
        )
    }

    /// Takes back a task from its checkpoint: only the very process that was started
    /// (same pid *and* start time: a reused pid is refused), or one whose shim recorded
    /// how it ended meanwhile (then `wait` returns that at once).
    fn adopt_checkpointed(
        &self,
        checkpoint: &Checkpointed,
        launch: &Launch,
    ) -> Option<Box<dyn Running>>;
}

/// What a checkpoint remembers of a started task, to take it back after a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checkpointed {
    /// The task's pid (its group leader).
    pub pid: i32,
    /// Its start time (`/proc/PID/stat` field 22), when known.
    pub start_time: Option<u64>,
    /// Its shim's pid, when it runs under one.
    pub shim_pid: Option<i32>,
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

    /// The container's id, for container drivers (`status.containerId`).
    fn container_id(&self) -> Option<String> {
        None
    }

    /// The shim's pid, when the task runs under one.
    fn shim_pid(&self) -> Option<i32> {
        None
    }

    /// The task's start time (`/proc/PID/stat` field 22), checkpointed for adoption.
    fn start_time(&self) -> Option<u64> {
        None
    }

    /// Its usage now (once ended: at its end), when it has a cgroup.
    fn usage(&self) -> Option<cgroups::Usage> {
        None
    }

    /// Once `wait` or `kill` returned: the kernel killed it for lack of memory.
    fn oom_killed(&self) -> bool {
        false
    }

    /// Why its cgroup limits are not enforced, when they are not.
    fn limits_not_enforced(&self) -> Option<String> {
        None
    }

    /// The container health `exec` checks run in (container drivers); None: they run
    /// on the host, in the task's sandbox.
    fn exec_in(&self) -> Option<crate::health::InContainer> {
        None
    }
}

/// The drivers of one agent, chosen per task by `container.driver` (default: `runc`
/// when the container has an image or rootfs, else `process`). Drivers this node lacks
/// refuse the task with "driver X is not available on this node".
pub struct Drivers {
    /// The process driver.
    pub process: std::sync::Arc<dyn Driver>,
    /// The runc driver, when runc is installed and the agent runs as root.
    pub runc: Option<std::sync::Arc<dyn Driver>>,
}

impl Drivers {
    fn pick(&self, launch: &Launch) -> Result<&dyn Driver, DriverError> {
        use drover_api::container::Driver as Kind;
        let kind = launch
            .container
            .driver
            .unwrap_or(if launch.container.has_filesystem() {
                Kind::Runc
            } else {
                Kind::Process
            });
        match kind {
            Kind::Process => Ok(self.process.as_ref()),
            Kind::Runc => self
                .runc
                .as_deref()
                .ok_or_else(|| DriverError::Unsupported("runc".into())),
            Kind::Docker => Err(DriverError::Unsupported("docker".into())),
        }
    }
}

#[async_trait::async_trait]
impl Driver for Drivers {
    fn name(&self) -> &'static str {
        "drivers"
    }

    async fn start(&self, launch: &Launch) -> Result<Box<dyn Running>, DriverError> {
        self.pick(launch)?.start(launch).await
    }

    /// An orphan's launch has no container: it may be a container (runc knows it by
    /// its id) or a process.
    fn adopt_checkpointed(
        &self,
        checkpoint: &Checkpointed,
        launch: &Launch,
    ) -> Option<Box<dyn Running>> {
        let unknown = launch.container.driver.is_none() && !launch.container.has_filesystem();
        if unknown {
            if let Some(r) = self
                .runc
                .as_ref()
                .and_then(|r| r.adopt_checkpointed(checkpoint, launch))
            {
                return Some(r);
            }
            return self.process.adopt_checkpointed(checkpoint, launch);
        }
        self.pick(launch)
            .ok()?
            .adopt_checkpointed(checkpoint, launch)
    }
}
