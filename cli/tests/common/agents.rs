//! What the tests that run their own `drover agent` share: spawning one, guards that
//! kill it and every task process it left behind (even when the test fails), and
//! reading what the cluster says about a task.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::Cluster;

/// A data directory for `drover up` whose token file holds `admin` (role admin) and
/// `agent` (role agent, user `user`, node `node`).
pub fn data_dir_with_tokens(admin: &str, agent: &str, user: &str, node: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("tokens.yaml"),
        format!(
            "- token: {admin}\n  user: admin\n  role: admin\n- token: {agent}\n  user: {user}\n  role: agent\n  node: {node}\n"
        ),
    )
    .expect("write tokens.yaml");
    dir
}

/// Whether node `node` is registered with a True Ready condition.
pub fn node_ready(c: &Cluster, node: &str) -> bool {
    let out = c.kubectl(&[
        "get",
        "nodes.drover.dev",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ]);
    out.status.success() && String::from_utf8_lossy(&out.stdout) == "True"
}

/// `drover agent` for node `hostname`, authenticating with `token` and the cluster's CA,
/// keeping its state in `data_dir`; `extra` flags are appended.
pub fn spawn_agent(
    c: &Cluster,
    token: &str,
    hostname: &str,
    data_dir: &Path,
    extra: &[&str],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["agent", "--server", &c.server, "--token", token])
        .args(["--hostname", hostname])
        .arg("--ca-file")
        .arg(c.dir.path().join("pki/ca.crt"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env(
            "DROVER_LOG",
            std::env::var("DROVER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn drover agent")
}

/// A process a test started (an agent, a controller, `drover logs -f`): on drop, even
/// when the test fails, it is killed, then every process group in `groups`, then every
/// task an agent checkpointed under `tasks`.
pub struct Proc {
    pub child: Option<Child>,
    pub tasks: Option<PathBuf>,
    pub groups: Vec<i32>,
}

impl Proc {
    /// A process that leaves no tasks behind.
    pub fn new(child: Child) -> Proc {
        Proc {
            child: Some(child),
            tasks: None,
            groups: Vec::new(),
        }
    }

    /// An agent keeping its state in `data_dir`: its checkpointed tasks die with it.
    pub fn agent(child: Child, data_dir: &Path) -> Proc {
        Proc {
            child: Some(child),
            tasks: Some(data_dir.join("tasks")),
            groups: Vec::new(),
        }
    }

    /// The running process, for its pipes.
    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("the process was already killed")
    }

    /// Kills the process (only: its tasks live on) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        for &pgid in &self.groups {
            kill_group(pgid);
        }
        if let Some(tasks) = &self.tasks {
            checkpointed_pids(tasks).into_iter().for_each(kill_group);
        }
    }
}

/// A port nothing listens on now (127.0.0.1).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// SIGKILL to process group `pgid`.
pub fn kill_group(pgid: i32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// A process of group `pgid` that is not a zombie.
pub fn group_alive(pgid: i32) -> bool {
    drover_agent::driver::process_group::group_alive(pgid)
}

/// Pids an agent checkpointed under `tasks/*/state.json`.
pub fn checkpointed_pids(tasks: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("state.json")).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter_map(|s| s.get("pid").and_then(serde_json::Value::as_i64))
        .filter_map(|p| i32::try_from(p).ok())
        .collect()
}

/// Polls `cond` every 100 ms for up to `seconds`; panics naming `what` if it never holds.
pub fn wait_until(seconds: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {seconds} s waiting for {what}");
}

/// The JSONPath `path` of Task `name` (empty when kubectl fails).
pub fn task_field(c: &Cluster, name: &str, path: &str) -> String {
    let out = c.kubectl(&[
        "get",
        "tasks.drover.dev",
        name,
        "-o",
        &format!("jsonpath={path}"),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
