//! The process driver: `sh -c <cmd>` (or `command` + `args`) in the task's sandbox,
//! under a shim (`shim.rs`) that is its parent: its own process group, stdout/stderr
//! copied into size-rotated files there, its exit status kept in `exit.json` for
//! whichever agent asks — this one or the next after a restart — and, where the host
//! allows, its own cgroup with the task's cpu and memory limits (`cgroups.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::cgroups::{self, Layout, TaskCgroup, Usage};
use super::log_rotation::DEFAULT_LIMIT;
use super::process_group::{process_alive, signal_group};
use super::shim::{self, ShimHandle, ShimSpec};
use super::{Checkpointed, Driver, DriverError, Exit, Launch, Running};

/// Where the driver remembers a task's cgroup, in the shim's state directory.
const CGROUP_FILE: &str = "cgroup.json";

/// Runs tasks as plain processes, each under a shim.
#[derive(Clone, Debug)]
pub struct ProcessDriver {
    shim_exe: PathBuf,
    log_limit: u64,
}

impl Default for ProcessDriver {
    /// The shim is this very executable (`drover shim`): right for `drover agent` and
    /// `drover up`.
    fn default() -> Self {
        ProcessDriver::new(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("drover")))
    }
}

impl ProcessDriver {
    /// A driver starting tasks through `shim_exe shim --spec …`.
    pub fn new(shim_exe: PathBuf) -> Self {
        ProcessDriver {
            shim_exe,
            log_limit: DEFAULT_LIMIT,
        }
    }

    /// The same, rotating task logs past `limit` bytes.
    pub fn with_log_limit(self, limit: u64) -> Self {
        ProcessDriver {
            log_limit: limit,
            ..self
        }
    }
}

fn sandbox_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_path_buf();
    move |source| DriverError::Sandbox { what, path, source }
}

/// Creates the task's cgroup with its limits; without one, says why (and warns once
/// per agent: every task of this host would say the same).
fn prepare_cgroup(launch: &Launch) -> (Option<TaskCgroup>, Option<String>) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let cgroup = Layout::detect().and_then(|layout| {
        let cgroup = layout.task(&cgroups::relative_path(&cgroups::cgroup_name(launch)));
        cgroup.create(&launch.resources).map(|()| cgroup)
    });
    match cgroup {
        Ok(cgroup) => (Some(cgroup), None),
        Err(reason) => {
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(%reason, "tasks run without cpu and memory limits on this host");
            }
            (None, Some(reason.to_string()))
        }
    }
}

fn read_cgroup(state_dir: &Path) -> Option<TaskCgroup> {
    let text = std::fs::read(state_dir.join(CGROUP_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write_cgroup(state_dir: &Path, cgroup: Option<&TaskCgroup>) -> Result<(), DriverError> {
    let path = state_dir.join(CGROUP_FILE);
    std::fs::create_dir_all(state_dir).map_err(sandbox_err("creating", state_dir))?;
    match cgroup {
        Some(c) => {
            let text = serde_json::to_vec(c)
                .map_err(|e| sandbox_err("encoding", &path)(std::io::Error::other(e)))?;
            std::fs::write(&path, text).map_err(sandbox_err("writing", &path))
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(sandbox_err("removing", &path)(e))
            }
            _ => Ok(()),
        },
    }
}

/// What adoption does with a checkpointed task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// Its shim recorded how it ended: report that.
    Ended,
    /// The very process still runs: watch it.
    Running,
    /// Its pid now belongs to another process (a reused pid): refuse it.
    PidReused,
    /// Its shim lives and is about to record the end: watch it.
    Ending,
    /// Nothing is left of it.
    Gone,
}

/// Decides adoption from what the host shows, in this order: a recorded exit, the same
/// process (pid and start time), a reused pid, a live shim.
pub fn adoption(
    exit_recorded: bool,
    same_process: bool,
    pid_alive: bool,
    shim_alive: bool,
) -> Adoption {
    if exit_recorded {
        Adoption::Ended
    } else if same_process {
        Adoption::Running
    } else if pid_alive {
        Adoption::PidReused
    } else if shim_alive {
        Adoption::Ending
    } else {
        Adoption::Gone
    }
}

#[async_trait::async_trait]
impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn start(&self, launch: &Launch) -> Result<Box<dyn Running>, DriverError> {
        let c = &launch.container;
        if let Some(driver) = c
            .driver
            .filter(|d| *d != drover_api::container::Driver::Process)
        {
            return Err(DriverError::Unsupported(driver.as_str().to_string()));
        }
        let argv: Vec<String> = match (&c.cmd, c.command.split_first()) {
            (Some(cmd), _) => vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
            (None, Some((first, rest))) => std::iter::once(first)
                .chain(rest)
                .chain(&c.args)
                .cloned()
                .collect(),
            (None, None) => return Err(DriverError::NoCommand),
        };
        if argv[0].is_empty() {
            return Err(DriverError::NoCommand);
        }
        let sandbox = &launch.sandbox;
        std::fs::create_dir_all(sandbox).map_err(sandbox_err("creating", sandbox))?;
        let cwd = c
            .working_dir
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| sandbox.clone());
        if !cwd.is_dir() {
            return Err(DriverError::WorkingDir(cwd));
        }
        let state_dir = shim::state_dir_for(sandbox);
        let (cgroup, note) = prepare_cgroup(launch);
        write_cgroup(&state_dir, cgroup.as_ref())?;
        let spec = ShimSpec {
            argv,
            env: launch.process_environment(),
            cwd,
            stdout: sandbox.join("stdout"),
            stderr: sandbox.join("stderr"),
            log_max_bytes: self.log_limit,
            cgroup_procs: cgroup
                .as_ref()
                .map(TaskCgroup::procs_files)
                .unwrap_or_default(),
            state_dir,
        };
        let shim = match shim::spawn(&self.shim_exe, &spec).await {
            Ok(shim) => shim,
            Err(error) => {
                if let Some(cgroup) = &cgroup {
                    cgroup.remove().await;
                }
                return Err(error);
            }
        };
        tracing::info!(task = %launch.task_id, pid = shim.task_pid, shim = shim.shim_pid, program = %spec.argv[0], "started");
        Ok(Box::new(ProcessHandle {
            shim,
            cgroup,
            note,
            ended: None,
        }))
    }

    fn adopt_checkpointed(
        &self,
        checkpoint: &Checkpointed,
        launch: &Launch,
    ) -> Option<Box<dyn Running>> {
        let state_dir = shim::state_dir_for(&launch.sandbox);
        let pid = checkpoint.pid;
        // The shim's record of this start (not of an earlier task of the same name).
        let record = shim::read_pid(&state_dir).filter(|r| r.pid == pid);
        let start_time = checkpoint
            .start_time
            .or(record.as_ref().map(|r| r.start_time))
            .or_else(|| shim::process_start_time(pid))?;
        let shim_pid = checkpoint
            .shim_pid
            .or(record.as_ref().map(|r| r.shim_pid))
            .unwrap_or(0);
        let shim_alive = record.as_ref().is_some_and(|r| {
            r.shim_pid == shim_pid && shim::same_process_alive(shim_pid, r.shim_start_time)
        });
        let decision = adoption(
            record.is_some() && shim::read_exit(&state_dir).is_some(),
            shim::same_process_alive(pid, start_time),
            process_alive(pid),
            shim_alive,
        );
        tracing::info!(task = %launch.task_id, pid, shim_pid, ?decision, "adoption");
        match decision {
            Adoption::Ended | Adoption::Running | Adoption::Ending => {
                Some(Box::new(ProcessHandle {
                    shim: ShimHandle {
                        shim_pid,
                        task_pid: pid,
                        task_start_time: start_time,
                        state_dir: state_dir.clone(),
                    },
                    cgroup: read_cgroup(&state_dir),
                    note: None,
                    ended: None,
                }))
            }
            Adoption::PidReused | Adoption::Gone => None,
        }
    }
}

/// How a task ended, with what its cgroup said at the end.
#[derive(Clone, Copy, Debug)]
struct Ended {
    exit: Exit,
    oom_killed: bool,
    usage: Option<Usage>,
}

/// A task started (or adopted) by the process driver.
struct ProcessHandle {
    shim: ShimHandle,
    cgroup: Option<TaskCgroup>,
    /// Why its limits are not enforced.
    note: Option<String>,
    ended: Option<Ended>,
}

impl ProcessHandle {
    fn alive(&self) -> bool {
        shim::same_process_alive(self.shim.task_pid, self.shim.task_start_time)
    }

    /// Records the end: the OOM verdict and last usage are read before the cgroup goes.
    async fn finish(&mut self, record: shim::ExitRecord) -> Exit {
        let cgroup_oom = self
            .cgroup
            .as_ref()
            .and_then(TaskCgroup::oom_kills)
            .is_some_and(|n| n > 0);
        let ended = Ended {
            exit: record.exit(),
            oom_killed: record.oom_killed || cgroup_oom,
            usage: self
                .cgroup
                .as_ref()
                .and_then(TaskCgroup::usage)
                .or(record.usage),
        };
        self.ended = Some(ended);
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove().await;
        }
        ended.exit
    }

    async fn wait_end(&mut self) -> Exit {
        if let Some(ended) = self.ended {
            return ended.exit;
        }
        let record = shim::wait_exit(&self.shim).await;
        self.finish(record).await
    }
}

#[async_trait::async_trait]
impl Running for ProcessHandle {
    fn pid(&self) -> i32 {
        self.shim.task_pid
    }

    async fn wait(&mut self) -> Result<Exit, DriverError> {
        Ok(self.wait_end().await)
    }

    async fn kill(&mut self, grace: Duration) -> Result<Exit, DriverError> {
        if let Some(ended) = self.ended {
            return Ok(ended.exit);
        }
        let pid = self.shim.task_pid;
        // Signal only the very process we started: its pid may have been reused.
        if self.alive() {
            signal_group(pid, Signal::SIGTERM)?;
        }
        let (record, escalated) =
            match tokio::time::timeout(grace, shim::wait_exit(&self.shim)).await {
                Ok(record) => (record, false),
                Err(_) => {
                    if self.alive() {
                        signal_group(pid, Signal::SIGKILL)?;
                    }
                    (shim::wait_exit(&self.shim).await, true)
                }
            };
        let exit = self.finish(record).await;
        // A task whose shim died with it has no recorded status, but which signal
        // ended it is known.
        let exit = match (exit, escalated) {
            (Exit::Unknown, false) => Exit::Signal(Signal::SIGTERM as i32),
            (Exit::Unknown, true) => Exit::Signal(Signal::SIGKILL as i32),
            (exit, _) => exit,
        };
        if let Some(ended) = &mut self.ended {
            ended.exit = exit;
        }
        tracing::info!(pid, how = %exit.describe(), "killed");
        Ok(exit)
    }

    fn shim_pid(&self) -> Option<i32> {
        Some(self.shim.shim_pid).filter(|p| *p > 0)
    }

    fn start_time(&self) -> Option<u64> {
        Some(self.shim.task_start_time)
    }

    fn usage(&self) -> Option<Usage> {
        match &self.ended {
            Some(ended) => ended.usage,
            None => self.cgroup.as_ref().and_then(TaskCgroup::usage),
        }
    }

    fn oom_killed(&self) -> bool {
        self.ended.is_some_and(|e| e.oom_killed)
    }

    fn limits_not_enforced(&self) -> Option<String> {
        self.note.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adoption_refuses_a_reused_pid() {
        // The checkpointed pid lives, but its start time is another process's.
        assert_eq!(adoption(false, false, true, false), Adoption::PidReused);
        // Even with the shim alive: the pid is not ours to watch or signal.
        assert_eq!(adoption(false, false, true, true), Adoption::PidReused);
        assert_eq!(adoption(false, true, true, true), Adoption::Running);
        // A recorded exit wins: it is reported, whatever has the pid now.
        assert_eq!(adoption(true, false, true, false), Adoption::Ended);
        assert_eq!(adoption(false, false, false, true), Adoption::Ending);
        assert_eq!(adoption(false, false, false, false), Adoption::Gone);
    }
}
