//! The process driver: `sh -c <cmd>` (or `command` + `args`) in its own process group,
//! in the task's sandbox, with stdout/stderr appended to files there.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::task::JoinHandle;

use super::log_rotation::{self, DEFAULT_LIMIT};
use super::process_group::{group_alive, process_alive, signal_group};
use super::{Driver, DriverError, Exit, Launch, Running};

const POLL: Duration = Duration::from_millis(100);

/// Runs tasks as plain processes.
#[derive(Clone, Debug)]
pub struct ProcessDriver {
    log_limit: u64,
    rotate_every: Duration,
}

impl Default for ProcessDriver {
    fn default() -> Self {
        ProcessDriver {
            log_limit: DEFAULT_LIMIT,
            rotate_every: Duration::from_secs(1),
        }
    }
}

impl ProcessDriver {
    /// A driver rotating logs past `limit` bytes, checked every `every`.
    pub fn with_log_limit(limit: u64, every: Duration) -> Self {
        ProcessDriver {
            log_limit: limit,
            rotate_every: every,
        }
    }

    fn rotator(&self, sandbox: &Path) -> JoinHandle<()> {
        let files = [sandbox.join("stdout"), sandbox.join("stderr")];
        let (limit, every) = (self.log_limit, self.rotate_every);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                for f in &files {
                    if let Err(error) = log_rotation::rotate_if_larger(f, limit) {
                        tracing::warn!(%error, file = %f.display(), "rotating a task log");
                    }
                }
            }
        })
    }
}

fn sandbox_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_path_buf();
    move |source| DriverError::Sandbox { what, path, source }
}

fn open_log(path: &Path) -> Result<std::fs::File, DriverError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(sandbox_err("opening", path))
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
        let (program, args): (String, Vec<String>) = match (&c.cmd, c.command.split_first()) {
            (Some(cmd), _) => ("/bin/sh".into(), vec!["-c".into(), cmd.clone()]),
            (None, Some((first, rest))) => (
                first.clone(),
                rest.iter().chain(c.args.iter()).cloned().collect(),
            ),
            (None, None) => return Err(DriverError::NoCommand),
        };
        if program.is_empty() {
            return Err(DriverError::NoCommand);
        }
        let sandbox = &launch.sandbox;
        std::fs::create_dir_all(sandbox).map_err(sandbox_err("creating", sandbox))?;
        let cwd = c
            .working_dir
            .as_ref()
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| sandbox.clone());
        if !cwd.is_dir() {
            return Err(DriverError::WorkingDir(cwd));
        }
        let stdout = open_log(&sandbox.join("stdout"))?;
        let stderr = open_log(&sandbox.join("stderr"))?;
        let mut command = std::process::Command::new(&program);
        command
            .args(&args)
            .current_dir(&cwd)
            .env_clear()
            .envs(launch.process_environment())
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // Its own group, so a kill reaches everything it forks.
            .process_group(0);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(false);
        let child = command.spawn().map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => DriverError::CommandNotFound(program.clone()),
            std::io::ErrorKind::PermissionDenied => DriverError::NotExecutable(program.clone()),
            _ => DriverError::Spawn {
                command: program.clone(),
                source,
            },
        })?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| DriverError::Spawn {
                command: program.clone(),
                source: std::io::Error::other("the process has no id"),
            })?;
        tracing::info!(task = %launch.task_id, pid, program = %program, "started");
        Ok(Box::new(ProcessHandle {
            pid,
            child: Some(child),
            rotator: self.rotator(sandbox),
        }))
    }

    fn adopt(&self, pid: i32, launch: &Launch) -> Option<Box<dyn Running>> {
        if !process_alive(pid) {
            return None;
        }
        tracing::info!(task = %launch.task_id, pid, "re-adopted");
        Some(Box::new(ProcessHandle {
            pid,
            child: None,
            rotator: self.rotator(&launch.sandbox),
        }))
    }
}

/// A process started (or adopted) by the process driver.
struct ProcessHandle {
    pid: i32,
    /// Our child, or None when adopted from an earlier agent (then we poll).
    child: Option<tokio::process::Child>,
    rotator: JoinHandle<()>,
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        self.rotator.abort();
    }
}

impl ProcessHandle {
    async fn wait_leader(&mut self) -> Result<Exit, DriverError> {
        let pid = self.pid;
        match &mut self.child {
            Some(child) => child
                .wait()
                .await
                .map(Exit::from_status)
                .map_err(|source| DriverError::Wait { pid, source }),
            None => {
                while process_alive(pid) {
                    tokio::time::sleep(POLL).await;
                }
                Ok(Exit::Unknown)
            }
        }
    }
}

#[async_trait::async_trait]
impl Running for ProcessHandle {
    fn pid(&self) -> i32 {
        self.pid
    }

    async fn wait(&mut self) -> Result<Exit, DriverError> {
        self.wait_leader().await
    }

    async fn kill(&mut self, grace: Duration) -> Result<Exit, DriverError> {
        let deadline = tokio::time::Instant::now() + grace;
        signal_group(self.pid, Signal::SIGTERM)?;
        let (exit, escalated) = match tokio::time::timeout_at(deadline, self.wait_leader()).await {
            Ok(exit) => (exit?, false),
            Err(_) => {
                signal_group(self.pid, Signal::SIGKILL)?;
                (self.wait_leader().await?, true)
            }
        };
        // An adopted process is not our child: its status is unknown, but which
        // signal ended it is not.
        let exit = match (exit, escalated) {
            (Exit::Unknown, false) => Exit::Signal(Signal::SIGTERM as i32),
            (Exit::Unknown, true) => Exit::Signal(Signal::SIGKILL as i32),
            (exit, _) => exit,
        };
        // The leader is gone; what it forked gets the rest of the grace period.
        while group_alive(self.pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        signal_group(self.pid, Signal::SIGKILL)?;
        tracing::info!(pid = self.pid, how = %exit.describe(), "killed");
        Ok(exit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::container::ContainerSpec;
    use std::time::Instant;

    fn launch(dir: &Path, container: ContainerSpec) -> Launch {
        Launch {
            task_id: "t1".into(),
            app_id: "app".into(),
            host: "h1".into(),
            sandbox: dir.join("sandbox"),
            container,
            ports: vec![(Some("http".into()), 31005), (None, 31006)],
            ..Default::default()
        }
    }

    fn cmd(s: &str) -> ContainerSpec {
        ContainerSpec {
            cmd: Some(s.into()),
            ..Default::default()
        }
    }

    fn command(args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            command: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn exit_codes_are_reported() -> TestResult {
        let dir = tempfile::tempdir()?;
        let d = ProcessDriver::default();
        let mut r = d.start(&launch(dir.path(), cmd("exit 3"))).await?;
        assert_eq!(r.wait().await?, Exit::Code(3));
        assert_eq!(Exit::Code(3).describe(), "exited with code 3");
        let mut r = d.start(&launch(dir.path(), command(&["true"]))).await?;
        assert_eq!(r.wait().await?, Exit::Code(0));
        Ok(())
    }

    #[tokio::test]
    async fn env_and_logs_land_in_the_sandbox() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut c = cmd(
            "echo $PORT0 $PORT_HTTP $PORT1 $HOST $TASK_ID $APP_ID $GREETING; pwd; echo oops >&2",
        );
        c.env.insert("GREETING".into(), "hi".into());
        c.env.insert("PORT0".into(), "1".into());
        let l = launch(dir.path(), c);
        let mut r = ProcessDriver::default().start(&l).await?;
        assert_eq!(r.wait().await?, Exit::Code(0));
        let out = std::fs::read_to_string(l.sandbox.join("stdout"))?;
        let sandbox = std::fs::canonicalize(&l.sandbox)?;
        assert_eq!(
            out,
            format!("31005 31005 31006 h1 t1 app hi\n{}\n", sandbox.display())
        );
        assert_eq!(std::fs::read_to_string(l.sandbox.join("stderr"))?, "oops\n");
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_command_is_named() -> TestResult {
        let dir = tempfile::tempdir()?;
        let l = launch(dir.path(), command(&["drover-no-such-command", "x"]));
        let err = ProcessDriver::default().start(&l).await.err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("command not found: drover-no-such-command".to_string())
        );
        Ok(())
    }

    #[tokio::test]
    async fn other_drivers_are_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let mut c = cmd("true");
        c.driver = Some(drover_api::container::Driver::Runc);
        let err = ProcessDriver::default()
            .start(&launch(dir.path(), c))
            .await
            .err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some("driver runc is not available on this node".to_string())
        );
        Ok(())
    }

    #[tokio::test]
    async fn kill_sends_sigterm_to_the_group() -> TestResult {
        let dir = tempfile::tempdir()?;
        // sh forks sleep (two processes in the group): both must go.
        let l = launch(dir.path(), cmd("sleep 300 & sleep 300; wait"));
        let mut r = ProcessDriver::default().start(&l).await?;
        let pid = r.pid();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(group_alive(pid));
        let t = Instant::now();
        let exit = r.kill(Duration::from_secs(10)).await?;
        assert_eq!(exit, Exit::Signal(15));
        assert_eq!(exit.describe(), "killed by SIGTERM");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(!group_alive(pid));
        Ok(())
    }

    #[tokio::test]
    async fn kill_escalates_to_sigkill_after_the_grace_period() -> TestResult {
        let dir = tempfile::tempdir()?;
        let l = launch(
            dir.path(),
            cmd("trap '' TERM; echo ready; while :; do sleep 0.1; done"),
        );
        let mut r = ProcessDriver::default().start(&l).await?;
        let pid = r.pid();
        let out = l.sandbox.join("stdout");
        for _ in 0..50 {
            if std::fs::read_to_string(&out)?.contains("ready") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = Instant::now();
        let exit = r.kill(Duration::from_millis(700)).await?;
        let took = t.elapsed();
        assert_eq!(exit, Exit::Signal(9));
        assert_eq!(exit.describe(), "killed by SIGKILL");
        assert!(took >= Duration::from_millis(700), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(!group_alive(pid));
        Ok(())
    }

    #[tokio::test]
    async fn an_adopted_process_is_watched_and_killed() -> TestResult {
        let dir = tempfile::tempdir()?;
        let l = launch(dir.path(), command(&["sleep", "300"]));
        let d = ProcessDriver::default();
        let first = d.start(&l).await?;
        let pid = first.pid();
        // The first agent goes away without killing it (the child is not reaped by it).
        std::mem::forget(first);
        let mut adopted = d.adopt(pid, &l).ok_or("not adopted")?;
        let exit = adopted.kill(Duration::from_secs(5)).await?;
        assert_eq!(exit, Exit::Signal(15));
        assert!(!process_alive(pid));
        assert!(d.adopt(pid, &l).is_none());
        Ok(())
    }

    #[tokio::test]
    async fn logs_are_rotated() -> TestResult {
        let dir = tempfile::tempdir()?;
        let l = launch(
            dir.path(),
            cmd("i=0; while [ $i -lt 200 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done; sleep 0.5"),
        );
        let d = ProcessDriver::with_log_limit(1024, Duration::from_millis(50));
        let mut r = d.start(&l).await?;
        assert_eq!(r.wait().await?, Exit::Code(0));
        let rotated = log_rotation::rotated_path(&l.sandbox.join("stdout"));
        assert!(rotated.is_file());
        assert!(std::fs::metadata(l.sandbox.join("stdout"))?.len() <= 8192);
        Ok(())
    }
}
