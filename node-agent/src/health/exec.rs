//! Exec check: a command run in the task's sandbox with the task's environment; exit
//! status 0 passes. The command runs in its own process group, killed whole if the
//! check is cancelled (timeout, monitor stopped) before it exits.
//!
//! A task in a container (`ExecContext::container`) is checked *inside* it: `runc
//! exec` runs the command in the container's namespaces, root filesystem, cgroup,
//! working directory and environment (its `config.json` process). runc's `init`
//! puts the command in a session of its own, so cancelling kills both the `runc
//! exec` group and the command's own group, found through `runc exec --pid-file`.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

use super::error::HealthError;
use super::probe::Outcome;

/// Used when the task's environment has no PATH, so `sh` and common tools are found.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where and with what environment exec checks run: the task's sandbox and env, or
/// inside its container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecContext {
    /// Working directory (the task's sandbox); empty: the agent's own.
    pub sandbox: PathBuf,
    /// The task's environment (the agent's own is not inherited).
    pub env: BTreeMap<String, String>,
    /// The task's container: checks run in it (then `sandbox` and `env` are unused:
    /// the container's own working directory and environment apply).
    pub container: Option<InContainer>,
}

/// A runc container to run exec checks in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InContainer {
    /// The `runc` executable.
    pub runc: PathBuf,
    /// `runc --root`.
    pub root: PathBuf,
    /// The container's id.
    pub id: String,
    /// A directory of the agent's (out of the container's reach) for the pid files
    /// of running checks.
    pub scratch: PathBuf,
}

/// Makes the pid files of concurrent checks distinct.
static EXEC_SEQ: AtomicU64 = AtomicU64::new(0);

/// Runs a command: one element is a shell line (`sh -c`), several are an argv.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecProbe {
    command: Vec<String>,
    context: ExecContext,
}

impl ExecProbe {
    /// A probe running `command` in `context`.
    pub fn new(command: Vec<String>, context: ExecContext) -> Result<Self, HealthError> {
        if command.first().is_none_or(|c| c.is_empty()) {
            return Err(HealthError::EmptyCommand);
        }
        Ok(Self { command, context })
    }

    /// "exec `pg_isready -h localhost`".
    pub fn describe(&self) -> String {
        format!("exec `{}`", self.command.join(" "))
    }

    /// Runs the command once and waits for it to exit.
    pub async fn run(&self) -> Outcome {
        if let Some(container) = &self.context.container {
            return self.run_in(container).await;
        }
        let mut cmd = self.command();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Outcome::Fail(format!("{} could not start: {e}", self.describe())),
        };
        // Declared after `child`, so it is dropped first: the group is killed while
        // its leader is still unreaped and its pid cannot have been reused.
        let mut group = GroupKill::new(child.id().and_then(|pid| i32::try_from(pid).ok()));
        let status = child.wait().await;
        group.disarm();
        match status {
            Ok(s) => self.verdict(s, ""),
            Err(e) => Outcome::Fail(format!("{} failed: {e}", self.describe())),
        }
    }

    /// `runc exec` in the container; runc's own error (exit 255) is the reason when
    /// the command could not run at all.
    async fn run_in(&self, container: &InContainer) -> Outcome {
        let seq = EXEC_SEQ.fetch_add(1, Ordering::Relaxed);
        let pid_file = container
            .scratch
            .join(format!("exec-{}-{seq}.pid", std::process::id()));
        let mut cmd = Command::new(&container.runc);
        cmd.arg("--root")
            .arg(&container.root)
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&container.id)
            .args(self.argv())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Outcome::Fail(format!(
                    "{} could not start: running {}: {e}",
                    self.describe(),
                    container.runc.display()
                ))
            }
        };
        let mut group = GroupKill::new(child.id().and_then(|pid| i32::try_from(pid).ok()));
        group.pid_file = Some(pid_file.clone());
        let output = child.wait_with_output().await;
        group.disarm();
        let _ = std::fs::remove_file(&pid_file);
        match output {
            Ok(out) => self.verdict(out.status, &runc_error(&out.stderr)),
            Err(e) => Outcome::Fail(format!("{} failed: {e}", self.describe())),
        }
    }

    /// Pass on status 0; else why, with runc's error when it could not run it.
    fn verdict(&self, s: std::process::ExitStatus, runc_error: &str) -> Outcome {
        if s.success() {
            return Outcome::Pass;
        }
        match (s.code(), s.signal()) {
            (Some(255), _) if !runc_error.is_empty() => Outcome::Fail(format!(
                "{} could not run in the container: {runc_error}",
                self.describe()
            )),
            (Some(code), _) => {
                Outcome::Fail(format!("{} exited with code {code}", self.describe()))
            }
            (None, Some(signal)) => {
                Outcome::Fail(format!("{} was killed by signal {signal}", self.describe()))
            }
            (None, None) => Outcome::Fail(format!("{} failed: {s}", self.describe())),
        }
    }

    /// One element: a shell line (`sh -c`); several: an argv.
    fn argv(&self) -> Vec<String> {
        match self.command.as_slice() {
            [line] => vec!["sh".into(), "-c".into(), line.clone()],
            other => other.to_vec(),
        }
    }

    fn command(&self) -> Command {
        let argv = self.argv();
        let mut cmd = match argv.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            None => Command::new("false"),
        };
        cmd.env_clear().envs(&self.context.env);
        if !self.context.env.contains_key("PATH") {
            cmd.env("PATH", DEFAULT_PATH);
        }
        if !self.context.sandbox.as_os_str().is_empty() {
            cmd.current_dir(&self.context.sandbox);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}

/// runc's message in its stderr (`time=… level=error msg="…"`), or its last line.
fn runc_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
        return String::new();
    };
    match line.split_once("msg=\"") {
        Some((_, rest)) => rest.trim_end_matches('"').replace("\\\"", "\""),
        None => line.trim().to_string(),
    }
}

/// Kills a check's whole process group when dropped armed (the check was cancelled),
/// and first the group of the command `runc exec` started, if its pid file says one.
struct GroupKill {
    group: Option<i32>,
    pid_file: Option<PathBuf>,
}

impl GroupKill {
    fn new(group: Option<i32>) -> Self {
        GroupKill {
            group,
            pid_file: None,
        }
    }

    /// The command exited and was reaped: its pid may be reused, never signal it.
    fn disarm(&mut self) {
        self.group = None;
        self.pid_file = None;
    }
}

/// The pid in a `--pid-file`, once runc wrote it.
fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(path) = self.pid_file.take() {
            // runc exec is still its parent (unreaped), so the pid is still its.
            if let Some(pid) = read_pid(&path).filter(|p| *p > 0) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = std::fs::remove_file(&path);
        }
        if let Some(pgid) = self.group {
            // ESRCH (already gone) is fine; nothing else can be done in a destructor.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn probe(command: &[&str], context: ExecContext) -> ExecProbe {
        let command = command.iter().map(|s| s.to_string()).collect();
        match ExecProbe::new(command, context) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn true_passes_and_false_fails_with_its_code() {
        assert_eq!(
            probe(&["true"], ExecContext::default()).run().await,
            Outcome::Pass
        );
        assert_eq!(
            probe(&["exit 2"], ExecContext::default()).run().await,
            Outcome::Fail("exec `exit 2` exited with code 2".into())
        );
        assert_eq!(
            probe(&["false"], ExecContext::default()).run().await,
            Outcome::Fail("exec `false` exited with code 1".into())
        );
    }

    #[tokio::test]
    async fn runs_in_the_sandbox_with_the_task_env() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("marker"), "x")?;
        let context = ExecContext {
            sandbox: dir.path().to_path_buf(),
            env: BTreeMap::from([("WANT".to_string(), "yes".to_string())]),
            container: None,
        };
        let check = probe(&["test -f marker && test \"$WANT\" = yes"], context.clone());
        assert_eq!(check.run().await, Outcome::Pass);
        let argv = probe(&["sh", "-c", "test -z \"$HOME\""], context);
        assert_eq!(
            argv.run().await,
            Outcome::Pass,
            "agent env is not inherited"
        );
        Ok(())
    }

    #[tokio::test]
    async fn missing_program_fails_with_a_reason() {
        let outcome = probe(&["/nonexistent/check", "x"], ExecContext::default())
            .run()
            .await;
        assert!(
            matches!(&outcome, Outcome::Fail(m) if m.starts_with("exec `/nonexistent/check x` could not start")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn cancelled_check_kills_its_process_group() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let pidfile = dir.path().join("pid");
        let context = ExecContext {
            sandbox: dir.path().to_path_buf(),
            env: BTreeMap::new(),
            container: None,
        };
        // The shell forks `sleep`; killing only the shell would leave it running.
        let check = probe(&["sleep 30 & echo $! > pid; wait"], context);
        let run = tokio::time::timeout(Duration::from_millis(500), check.run()).await;
        assert!(run.is_err(), "the check should still be running");
        let pid: i32 = std::fs::read_to_string(&pidfile)?
            .trim()
            .parse()
            .map_err(std::io::Error::other)?;
        let mut gone = false;
        for _ in 0..50 {
            if nix::sys::signal::kill(Pid::from_raw(pid), None).is_err()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
            {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "sleep {pid} survived the cancelled check");
        Ok(())
    }

    #[test]
    fn runc_errors_are_read_from_its_log_line() {
        let stderr = b"time=\"2026-12-01T06:11:42Z\" level=error msg=\"exec failed: \\\"test\\\": executable file not found in $PATH\"\n";
        assert_eq!(
            runc_error(stderr),
            "exec failed: \"test\": executable file not found in $PATH"
        );
        assert_eq!(runc_error(b"plain words\n\n"), "plain words");
        assert_eq!(runc_error(b""), "");
        let check = probe(&["test -f /x"], ExecContext::default());
        assert_eq!(check.argv(), ["sh", "-c", "test -f /x"]);
    }

    #[test]
    fn empty_command_is_rejected() {
        assert_eq!(
            ExecProbe::new(vec![], ExecContext::default()),
            Err(HealthError::EmptyCommand)
        );
        assert_eq!(
            ExecProbe::new(vec![String::new()], ExecContext::default()),
            Err(HealthError::EmptyCommand)
        );
    }
}
