//! `drover agent` against `drover up`: registers its Node, runs a Task's process with
//! its host port, kills it when the Task is deleted, and fails a Task whose command
//! does not exist with a message naming it.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{wait_for, Cluster};

const ADMIN_TOKEN: &str = "admin-token-for-agent-test";
const AGENT_TOKEN: &str = "agent-token-for-n1";

/// Kills the agent and every process group a test saw, even when the test fails.
struct Guard {
    agent: Child,
    groups: Vec<i32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        for pgid in &self.groups {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A process of group `pgid` that is not a zombie.
fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        f.len() > 2 && f[0] != "Z" && f[2] == pgid.to_string()
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_answers(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"HTTP/1."))
}

fn spawn_agent(c: &Cluster, data_dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args([
            "agent",
            "--server",
            &c.server,
            "--token",
            AGENT_TOKEN,
            "--hostname",
            "n1",
        ])
        .arg("--ca-file")
        .arg(c.dir.path().join("pki/ca.crt"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--attribute", "rack=r1"])
        .env("DROVER_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn drover agent")
}

fn start() -> (Cluster, Guard, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("tokens.yaml"),
        format!(
            "- token: {ADMIN_TOKEN}\n  user: admin\n  role: admin\n- token: {AGENT_TOKEN}\n  user: agent-n1\n  role: agent\n  node: n1\n"
        ),
    )
    .expect("write tokens.yaml");
    let c = Cluster::up_in(dir);
    let agent_dir = tempfile::tempdir().expect("agent dir");
    let agent = spawn_agent(&c, agent_dir.path());
    let guard = Guard {
        agent,
        groups: Vec::new(),
    };
    wait_for(
        || {
            let out = c.kubectl(&[
                "get",
                "nodes.drover.dev",
                "n1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            out.status.success() && String::from_utf8_lossy(&out.stdout) == "True"
        },
        "node n1 to be registered and Ready",
    );
    (c, guard, agent_dir)
}

fn task_field(c: &Cluster, name: &str, path: &str) -> String {
    let out = c.kubectl(&[
        "get",
        "tasks.drover.dev",
        name,
        "-o",
        &format!("jsonpath={path}"),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn agent_registers_runs_a_task_on_its_port_and_kills_it_on_delete() {
    let (c, mut guard, agent_dir) = start();
    let node = c.ok(&["get", "nodes.drover.dev", "n1", "-o", "json"]);
    let node: serde_json::Value = serde_json::from_str(&node).expect("node json");
    assert_eq!(node["spec"]["attributes"]["rack"], "r1");
    assert_eq!(node["status"]["drivers"][0]["name"], "process");
    assert!(node["status"]["capacity"]["memMiB"].as_i64().unwrap_or(0) > 0);

    let port = free_port();
    let manifest = c.write(
        "web.yaml",
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: web-0\nspec:\n  nodeName: n1\n  container:\n    cmd: busybox httpd -f -p $PORT_HTTP\n  ports:\n    - name: http\n      hostPort: {port}\n  killGracePeriodSeconds: 5\n"
        ),
    );
    c.ok(&["apply", "-f", &manifest.display().to_string()]);
    wait_for(
        || task_field(&c, "web-0", "{.status.phase}") == "Running",
        "task web-0 to be Running",
    );
    let pid: i32 = task_field(&c, "web-0", "{.status.pid}")
        .parse()
        .expect("a pid in the status");
    guard.groups.push(pid);
    assert!(group_alive(pid));
    wait_for(
        || http_answers(port),
        "busybox httpd to answer on the task's port",
    );
    assert!(agent_dir
        .path()
        .join("tasks/default_web-0/state.json")
        .is_file());
    assert!(agent_dir
        .path()
        .join("tasks/default_web-0/sandbox/stderr")
        .is_file());

    c.ok(&["delete", "tasks.drover.dev", "web-0"]);
    wait_for(|| !group_alive(pid), "the task's processes to be killed");
    assert!(!http_answers(port));
}

#[test]
fn a_task_whose_command_does_not_exist_fails_naming_it() {
    let (c, _guard, _agent_dir) = start();
    let manifest = c.write(
        "bad.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: bad-0\nspec:\n  nodeName: n1\n  container:\n    cmd: drover-no-such-command --flag\n",
    );
    c.ok(&["apply", "-f", &manifest.display().to_string()]);
    wait_for(
        || task_field(&c, "bad-0", "{.status.phase}") == "Failed",
        "task bad-0 to fail",
    );
    let message = task_field(&c, "bad-0", "{.status.message}");
    assert!(
        message.contains("command not found: drover-no-such-command"),
        "{message}"
    );
    assert_eq!(task_field(&c, "bad-0", "{.status.exitCode}"), "127");

    // The agent keeps serving: a second task still runs to completion.
    let ok = c.write(
        "ok.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: ok-0\nspec:\n  nodeName: n1\n  container:\n    command: [\"sh\", \"-c\", \"exit 0\"]\n",
    );
    c.ok(&["apply", "-f", &ok.display().to_string()]);
    wait_for(
        || task_field(&c, "ok-0", "{.status.phase}") == "Finished",
        "task ok-0 to finish",
    );
    assert_eq!(
        task_field(&c, "ok-0", "{.status.message}"),
        "exited with code 0"
    );
}

#[test]
fn a_restarted_agent_re_adopts_its_running_task() {
    let (c, mut guard, agent_dir) = start();
    let manifest = c.write(
        "sleeper.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: sleeper-0\nspec:\n  nodeName: n1\n  container:\n    command: [\"sleep\", \"300\"]\n  killGracePeriodSeconds: 5\n",
    );
    c.ok(&["apply", "-f", &manifest.display().to_string()]);
    wait_for(
        || task_field(&c, "sleeper-0", "{.status.phase}") == "Running",
        "task sleeper-0 to be Running",
    );
    let pid: i32 = task_field(&c, "sleeper-0", "{.status.pid}")
        .parse()
        .expect("a pid in the status");
    guard.groups.push(pid);

    // The agent dies; its task does not.
    let _ = guard.agent.kill();
    let _ = guard.agent.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert!(group_alive(pid));
    guard.agent = spawn_agent(&c, agent_dir.path());
    std::thread::sleep(Duration::from_secs(1));
    assert!(group_alive(pid));
    assert_eq!(task_field(&c, "sleeper-0", "{.status.phase}"), "Running");
    assert_eq!(
        task_field(&c, "sleeper-0", "{.status.pid}"),
        pid.to_string()
    );

    // Only the new agent can kill it now.
    c.ok(&["delete", "tasks.drover.dev", "sleeper-0"]);
    wait_for(|| !group_alive(pid), "the re-adopted task to be killed");
}
