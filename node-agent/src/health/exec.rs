//! Exec check: a command run in the task's sandbox with the task's environment; exit
//! status 0 passes. The command runs in its own process group, killed whole if the
//! check is cancelled (timeout, monitor stopped) before it exits.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;

use super::error::HealthError;
use super::probe::Outcome;

/// Used when the task's environment has no PATH, so `sh` and common tools are found.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where and with what environment exec checks run: the task's sandbox and env.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecContext {
    /// Working directory (the task's sandbox); empty: the agent's own.
    pub sandbox: PathBuf,
    /// The task's environment (the agent's own is not inherited).
    pub env: BTreeMap<String, String>,
}

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
        let mut cmd = self.command();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Outcome::Fail(format!("{} could not start: {e}", self.describe())),
        };
        // Declared after `child`, so it is dropped first: the group is killed while
        // its leader is still unreaped and its pid cannot have been reused.
        let mut group = GroupKill(child.id().and_then(|pid| i32::try_from(pid).ok()));
        let status = child.wait().await;
        group.disarm();
        match status {
            Ok(s) if s.success() => Outcome::Pass,
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => {
                    Outcome::Fail(format!("{} exited with code {code}", self.describe()))
                }
                (None, Some(signal)) => {
                    Outcome::Fail(format!("{} was killed by signal {signal}", self.describe()))
                }
                (None, None) => Outcome::Fail(format!("{} failed: {s}", self.describe())),
            },
            Err(e) => Outcome::Fail(format!("{} failed: {e}", self.describe())),
        }
    }

    fn command(&self) -> Command {
        let mut cmd = match self.command.as_slice() {
            [line] => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(line);
                c
            }
            [program, args @ ..] => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            [] => Command::new("false"),
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

/// Kills a check's whole process group when dropped armed (the check was cancelled).
struct GroupKill(Option<i32>);

impl GroupKill {
    /// The command exited and was reaped: its pid may be reused, never signal it.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
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
