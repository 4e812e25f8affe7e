//! The task shim (`drover shim`): the small parent every task runs under, so the task
//! outlives the agent and its exit status outlives both.
//!
//! The shim `setsid()`s (its own session: an agent killed or Ctrl-C'd takes nothing
//! with it), joins the task's cgroups just for the spawn (the task inherits them) and
//! steps back out into their parent at once (so the shim's own memory and CPU are not
//! charged to the task; where the parent refuses processes, cgroup v2, it stays),
//! spawns the task in its own process group (the shim stays outside it, so signalling
//! the group never kills the shim), copies the task's stdout/stderr into size-rotated
//! files (logs keep flowing and no SIGPIPE hits the task while the agent is down),
//! records `task.pid`, waits, and records `exit.json` atomically. SIGTERM/SIGINT sent
//! to the shim are forwarded to the task's group. When the group leader exits, what is
//! left of its group is SIGKILLed: a task ends with its leader, as a container does.
//!
//! Files in the state directory: `spec.json` (what to run), `task.pid`, `exit.json`,
//! `start-error.json` (the task could not be spawned), `shim.log` (the shim's own log).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use super::cgroups;
use super::log_rotation;
use super::process_group::{group_alive, process_alive, signal_group};
use super::{DriverError, Exit};

const SPEC_FILE: &str = "spec.json";
const PID_FILE: &str = "task.pid";
const EXIT_FILE: &str = "exit.json";
const START_ERROR_FILE: &str = "start-error.json";
const LOG_FILE: &str = "shim.log";

/// How often an agent polls for `task.pid` / `exit.json`.
const POLL: Duration = Duration::from_millis(50);
/// How long the shim may take to start the task.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What the shim runs, and where it keeps what it learns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShimSpec {
    /// The program and its arguments (`argv[0]` is looked up in `env`'s `PATH`).
    pub argv: Vec<String>,
    /// The task's whole environment (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// File receiving the task's stdout (appended, rotated past `log_max_bytes`).
    pub stdout: PathBuf,
    /// File receiving the task's stderr.
    pub stderr: PathBuf,
    /// Size past which a log file is rotated to `<file>.1`.
    pub log_max_bytes: u64,
    /// `cgroup.procs` files the shim writes its pid into for the spawn (the task
    /// inherits them; the shim then leaves); empty for none (runc manages its own).
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// Where `task.pid`, `exit.json`, … are written.
    pub state_dir: PathBuf,
}

/// A task running under a shim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShimHandle {
    /// The shim's pid.
    pub shim_pid: i32,
    /// The task's pid (leader of its process group: the group id too).
    pub task_pid: i32,
    /// The task's start time (`/proc/PID/stat` field 22): tells a reused pid apart.
    pub task_start_time: u64,
    /// The shim's state directory.
    pub state_dir: PathBuf,
}

/// `task.pid`: who runs, so an agent can check a pid was not reused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PidRecord {
    /// The task's pid.
    pub pid: i32,
    /// Its start time (clock ticks after boot).
    pub start_time: u64,
    /// The shim's pid.
    pub shim_pid: i32,
    /// The shim's start time.
    #[serde(default)]
    pub shim_start_time: u64,
}

/// `exit.json`: how the task ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitRecord {
    /// Exit status, when it exited.
    pub code: Option<i32>,
    /// Signal that ended it, when one did.
    pub signal: Option<i32>,
    /// When the shim saw it end.
    pub finished_at: DateTime<Utc>,
    /// Its cgroup recorded an OOM kill.
    #[serde(default)]
    pub oom_killed: bool,
    /// Its cgroup's usage at the end (the shim removes the cgroup when it can).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<cgroups::Usage>,
}

impl ExitRecord {
    /// How it ended, as drivers report it.
    pub fn exit(&self) -> Exit {
        match (self.code, self.signal) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Unknown,
        }
    }

    /// A record for a task whose status nobody kept (its shim died first).
    pub fn unknown() -> Self {
        ExitRecord {
            code: None,
            signal: None,
            finished_at: Utc::now(),
            oom_killed: false,
            usage: None,
        }
    }
}

/// `start-error.json`: why the shim could not spawn the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartError {
    /// `notFound`, `permissionDenied` or `other`.
    pub kind: String,
    /// The program.
    pub program: String,
    /// The OS error.
    pub message: String,
}

impl StartError {
    fn into_driver_error(self) -> DriverError {
        match self.kind.as_str() {
            "notFound" => DriverError::CommandNotFound(self.program),
            "permissionDenied" => DriverError::NotExecutable(self.program),
            _ => DriverError::Spawn {
                command: self.program,
                source: std::io::Error::other(self.message),
            },
        }
    }
}

/// The state directory a driver uses for a task whose sandbox is `sandbox`
/// (`<task-dir>/shim`, beside the sandbox, out of the task's reach).
pub fn state_dir_for(sandbox: &Path) -> PathBuf {
    sandbox.with_file_name("shim")
}

/// `/proc/PID/stat` field 22: when the process started, in clock ticks after boot.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&text)
}

/// Field 22 of a `/proc/PID/stat` line (the name, field 2, may hold spaces and ')').
pub fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field 22 is the 20th of it.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The process `pid` lives (not a zombie) and is the one that started at `start_time`.
pub fn same_process_alive(pid: i32, start_time: u64) -> bool {
    process_alive(pid) && process_start_time(pid) == Some(start_time)
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_path_buf();
    move |source| DriverError::Sandbox { what, path, source }
}

/// Writes `value` as JSON to `dir/name` atomically (temporary file + rename).
fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), DriverError> {
    let path = dir.join(name);
    let text = serde_json::to_vec_pretty(value)
        .map_err(|e| io_err("encoding", &path)(std::io::Error::other(e)))?;
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err("renaming to", &path))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(v) => Some(v),
        Err(error) => {
            tracing::warn!(%error, file = %path.display(), "ignoring an unreadable shim file");
            None
        }
    }
}

/// `exit.json` of a state directory, once the shim wrote it.
pub fn read_exit(state_dir: &Path) -> Option<ExitRecord> {
    read_json(&state_dir.join(EXIT_FILE))
}

/// `task.pid` of a state directory, once the shim wrote it.
pub fn read_pid(state_dir: &Path) -> Option<PidRecord> {
    read_json(&state_dir.join(PID_FILE))
}

/// Starts `shim_exe shim --spec <state_dir>/spec.json` and returns once the task runs
/// (`task.pid` exists), or with the reason it could not start.
pub async fn spawn(shim_exe: &Path, spec: &ShimSpec) -> Result<ShimHandle, DriverError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    if program.is_empty() {
        return Err(DriverError::NoCommand);
    }
    let dir = &spec.state_dir;
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    // A task of the same name ran here before: its records are not this one's.
    for stale in [PID_FILE, EXIT_FILE, START_ERROR_FILE] {
        match std::fs::remove_file(dir.join(stale)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("removing", &dir.join(stale))(e))
            }
            _ => {}
        }
    }
    write_json(dir, SPEC_FILE, spec)?;
    let log_path = dir.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err("opening", &log_path))?;
    let mut command = tokio::process::Command::new(shim_exe);
    command
        .arg("shim")
        .arg("--spec")
        .arg(dir.join(SPEC_FILE))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|source| DriverError::Spawn {
        command: format!("{} (the task shim)", shim_exe.display()),
        source,
    })?;
    let shim_pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    // The shim says how the start went in task.pid or start-error.json; read both once
    // per turn, after checking whether it exited (it may write either just before).
    let settled = || -> Option<Result<ShimHandle, DriverError>> {
        if let Some(record) = read_pid(dir) {
            return Some(Ok(ShimHandle {
                shim_pid,
                task_pid: record.pid,
                task_start_time: record.start_time,
                state_dir: dir.clone(),
            }));
        }
        read_json::<StartError>(&dir.join(START_ERROR_FILE))
            .map(|error| Err(error.into_driver_error()))
    };
    let result = loop {
        let exited = child.try_wait().ok().flatten();
        if let Some(outcome) = settled() {
            break outcome;
        }
        if let Some(status) = exited {
            let tail = log_tail(&log_path);
            break Err(DriverError::Spawn {
                command: program.clone(),
                source: std::io::Error::other(format!("the task shim exited ({status}): {tail}")),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.start_kill();
            break Err(DriverError::Spawn {
                command: program.clone(),
                source: std::io::Error::other(format!(
                    "the task shim did not start it within {}s: {}",
                    START_TIMEOUT.as_secs(),
                    log_tail(&log_path)
                )),
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // Reap the shim whenever it exits (after a restart, init does).
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    result
}

/// The last line of the shim's log, for an error message.
fn log_tail(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no message".into())
}

/// Until the task ends; works whether or not the shim is our child (an adopted task is
/// polled). A task whose shim died without writing `exit.json` ends with an unknown
/// status once the task is gone too.
pub async fn wait_exit(handle: &ShimHandle) -> ExitRecord {
    let shim_start = read_pid(&handle.state_dir).map(|r| r.shim_start_time);
    loop {
        if let Some(record) = read_exit(&handle.state_dir) {
            return record;
        }
        let shim_alive = process_alive(handle.shim_pid)
            && match shim_start {
                Some(t) if t != 0 => process_start_time(handle.shim_pid) == Some(t),
                _ => true,
            };
        if !shim_alive && !same_process_alive(handle.task_pid, handle.task_start_time) {
            return read_exit(&handle.state_dir).unwrap_or_else(ExitRecord::unknown);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The shim's whole life (`drover shim --spec FILE`): returns the shim's exit status.
pub fn run(spec_path: &Path) -> Result<(), DriverError> {
    let text = std::fs::read(spec_path).map_err(io_err("reading", spec_path))?;
    let spec: ShimSpec = serde_json::from_slice(&text)
        .map_err(|e| io_err("decoding", spec_path)(std::io::Error::other(e)))?;
    // Our own session: the agent's terminal, group and death are not ours.
    if let Err(error) = nix::unistd::setsid() {
        tracing::warn!(%error, "setsid");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| DriverError::Spawn {
            command: "the shim's runtime".into(),
            source,
        })?;
    runtime.block_on(supervise(spec))
}

async fn supervise(spec: ShimSpec) -> Result<(), DriverError> {
    use tokio::signal::unix::{signal, SignalKind};
    let dir = spec.state_dir.clone();
    // Handlers first: a SIGTERM arriving while the task starts must be forwarded too.
    let mut term = signal(SignalKind::terminate()).map_err(io_err("handling SIGTERM", &dir))?;
    let mut int = signal(SignalKind::interrupt()).map_err(io_err("handling SIGINT", &dir))?;
    // The spawn (fork, exec, the program's own start-up) is not throttled by the
    // task's CPU quota: lifted until the task runs.
    let lifted = LiftedQuotas::lift(&spec.cgroup_procs);
    let me = std::process::id().to_string();
    for procs in &spec.cgroup_procs {
        if let Err(error) = std::fs::write(procs, &me) {
            tracing::warn!(%error, file = %procs.display(), "joining a cgroup: the task runs without its limit");
        }
    }
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(DriverError::NoCommand);
    };
    let program = program.clone();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(&spec.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => "notFound",
                std::io::ErrorKind::PermissionDenied => "permissionDenied",
                _ => "other",
            };
            let error = StartError {
                kind: kind.into(),
                program: program.clone(),
                message: e.to_string(),
            };
            write_json(&dir, START_ERROR_FILE, &error)?;
            return Err(error.into_driver_error());
        }
    };
    let pid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    // The task is in its cgroups now (spawn returns after its exec): the shim leaves.
    step_out_of(&spec.cgroup_procs);
    drop(lifted);
    // The task has the usual score; the shim must not be the OOM victim.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let copiers = [
        child
            .stdout
            .take()
            .map(|out| tokio::spawn(copy_log(out, spec.stdout.clone(), spec.log_max_bytes))),
        child
            .stderr
            .take()
            .map(|err| tokio::spawn(copy_log(err, spec.stderr.clone(), spec.log_max_bytes))),
    ];
    let me_pid = i32::try_from(std::process::id()).unwrap_or(0);
    let record = PidRecord {
        pid,
        start_time: process_start_time(pid).unwrap_or(0),
        shim_pid: me_pid,
        shim_start_time: process_start_time(me_pid).unwrap_or(0),
    };
    write_json(&dir, PID_FILE, &record)?;
    tracing::info!(pid, program = %program, "task started");
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = term.recv() => forward(pid, Signal::SIGTERM),
            _ = int.recv() => forward(pid, Signal::SIGINT),
        }
    };
    let exit = match status {
        Ok(status) => Exit::from_status(status),
        Err(error) => {
            tracing::warn!(%error, pid, "waiting for the task");
            Exit::Unknown
        }
    };
    // What the leader left behind goes with it (and lets the pipes close).
    if group_alive(pid) {
        let _ = signal_group(pid, Signal::SIGKILL);
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while group_alive(pid) && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for copier in copiers.into_iter().flatten() {
        if tokio::time::timeout(Duration::from_secs(2), copier)
            .await
            .is_err()
        {
            tracing::warn!("a log pipe stayed open after the task ended");
        }
    }
    let cgroup_dirs: Vec<&Path> = spec
        .cgroup_procs
        .iter()
        .filter_map(|p| p.parent())
        .collect();
    let oom_killed = cgroup_dirs
        .iter()
        .any(|d| cgroups::oom_kills_in(d).unwrap_or(0) > 0);
    let usage = (!cgroup_dirs.is_empty())
        .then(|| cgroups::usage_in(&cgroup_dirs))
        .flatten();
    let (code, signal) = match exit {
        Exit::Code(c) => (Some(c), None),
        Exit::Signal(s) => (None, Some(s)),
        Exit::Unknown => (None, None),
    };
    let record = ExitRecord {
        code,
        signal,
        finished_at: Utc::now(),
        oom_killed,
        usage,
    };
    let written = write_json(&dir, EXIT_FILE, &record);
    tracing::info!(pid, how = %exit.describe(), oom_killed, "task ended");
    // Even when the record could not be written (its directory deleted meanwhile).
    leave_cgroups(&cgroup_dirs);
    written
}

/// CPU quotas lifted for a task's spawn, restored when dropped (also when the spawn
/// failed).
struct LiftedQuotas(Vec<(PathBuf, String)>);

impl LiftedQuotas {
    /// Lifts the CFS quota of the cgroups of these `cgroup.procs` files (v1
    /// `cpu.cfs_quota_us`, v2 `cpu.max`).
    fn lift(procs_files: &[PathBuf]) -> Self {
        let mut lifted = Vec::new();
        for dir in procs_files.iter().filter_map(|p| p.parent()) {
            for (file, unlimited) in [("cpu.cfs_quota_us", "-1"), ("cpu.max", "max")] {
                let path = dir.join(file);
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let now = text.trim().to_string();
                let limited = now.split_whitespace().next() != Some(unlimited);
                let lift = match now.split_once(' ') {
                    Some((_, period)) => format!("{unlimited} {period}"),
                    None => unlimited.to_string(),
                };
                if limited && std::fs::write(&path, &lift).is_ok() {
                    lifted.push((path, now));
                }
            }
        }
        LiftedQuotas(lifted)
    }
}

impl Drop for LiftedQuotas {
    fn drop(&mut self) {
        for (path, value) in &self.0 {
            if let Err(error) = std::fs::write(path, value) {
                tracing::warn!(%error, file = %path.display(), "restoring the task's CPU quota");
            }
        }
    }
}

/// Moves the shim from the task's cgroups (their `cgroup.procs` files) into their
/// parents, where the hierarchy allows it (v2 forbids processes in a parent whose
/// controllers are delegated: there the shim stays, as it always did).
fn step_out_of(procs_files: &[PathBuf]) {
    let me = std::process::id().to_string();
    for procs in procs_files {
        let Some(parent) = procs.parent().and_then(Path::parent) else {
            continue;
        };
        if let Err(error) = std::fs::write(parent.join("cgroup.procs"), &me) {
            tracing::debug!(%error, cgroup = %parent.display(), "the shim stays in the task's cgroup");
        }
    }
}

/// Removes the task's (now empty) cgroups, so none is left behind when no agent is
/// there to; one still busy is left for the agent.
fn leave_cgroups(dirs: &[&Path]) {
    let procs: Vec<PathBuf> = dirs.iter().map(|d| d.join("cgroup.procs")).collect();
    step_out_of(&procs);
    for dir in dirs {
        if let Err(error) = std::fs::remove_dir(dir) {
            tracing::debug!(%error, dir = %dir.display(), "task cgroup left for the agent");
        }
    }
}

fn forward(pid: i32, signal: Signal) {
    tracing::info!(pid, %signal, "forwarding to the task's group");
    if let Err(error) = signal_group(pid, signal) {
        tracing::warn!(%error, "forwarding a signal");
    }
}

fn open_append(path: &Path) -> Result<std::fs::File, DriverError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("opening", path))
}

/// Copies a pipe into `path` (appending), rotating it past `limit` bytes.
async fn copy_log(mut from: impl tokio::io::AsyncRead + Unpin, path: PathBuf, limit: u64) {
    use tokio::io::AsyncReadExt;
    let mut file = match open_append(&path) {
        Ok(f) => f,
        Err(error) => {
            tracing::warn!(%error, "task output is discarded");
            let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
            return;
        }
    };
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Err(error) = file.write_all(&buf[..n]) {
            tracing::warn!(%error, file = %path.display(), "writing task output");
        }
        size += n as u64;
        if limit > 0 && size > limit {
            match log_rotation::rotate_if_larger(&path, limit) {
                Ok(_) => size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                Err(error) => tracing::warn!(%error, file = %path.display(), "rotating a task log"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_is_field_22_even_with_odd_names() {
        let stat = "1234 (we ird) name)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("1 (x) S 1"), None);
        let me = i32::try_from(std::process::id()).unwrap_or(0);
        assert!(process_start_time(me).is_some_and(|t| t > 0));
        assert!(same_process_alive(me, process_start_time(me).unwrap_or(0)));
        assert!(!same_process_alive(
            me,
            process_start_time(me).unwrap_or(0) + 1
        ));
    }

    #[test]
    fn exit_records_round_trip_and_map_to_exits() {
        let r = ExitRecord {
            code: Some(7),
            signal: None,
            finished_at: Utc::now(),
            oom_killed: false,
            usage: None,
        };
        let text = serde_json::to_string(&r).unwrap_or_default();
        assert!(text.contains("\"finishedAt\""), "{text}");
        assert!(text.contains("\"oomKilled\":false"), "{text}");
        assert_eq!(
            serde_json::from_str::<ExitRecord>(&text).ok(),
            Some(r.clone())
        );
        assert_eq!(r.exit(), Exit::Code(7));
        assert_eq!(
            ExitRecord {
                code: None,
                signal: Some(9),
                ..r
            }
            .exit(),
            Exit::Signal(9)
        );
        assert_eq!(ExitRecord::unknown().exit(), Exit::Unknown);
    }

    #[test]
    fn start_errors_name_the_program() {
        let e = StartError {
            kind: "notFound".into(),
            program: "nope".into(),
            message: "No such file".into(),
        };
        assert_eq!(e.into_driver_error().to_string(), "command not found: nope");
    }
}
