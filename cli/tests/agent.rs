//! `drover agent` against `drover up`: registers its Node, runs a Task's process with
//! its host port, kills it when the Task is deleted, fails a Task whose command does
//! not exist with a message naming it, and runs health checks: healthy in the status,
//! killed (gracefully) as unhealthy once they fail.

mod common;

use std::io::{Read, Write};
use std::process::Child;
use std::time::Duration;

use common::agents::{self, free_port, group_alive, task_field, Proc};
use common::{wait_for, Cluster};

const ADMIN_TOKEN: &str = "admin-token-for-agent-test";
const AGENT_TOKEN: &str = "agent-token-for-n1";

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
    agents::spawn_agent(c, AGENT_TOKEN, "n1", data_dir, &["--attribute", "rack=r1"])
}

fn start() -> (Cluster, Proc, tempfile::TempDir) {
    let dir = agents::data_dir_with_tokens(ADMIN_TOKEN, AGENT_TOKEN, "agent-n1", "n1");
    let c = Cluster::up_in(dir);
    let agent_dir = tempfile::tempdir().expect("agent dir");
    let agent = spawn_agent(&c, agent_dir.path());
    let guard = Proc::new(agent);
    wait_for(
        || agents::node_ready(&c, "n1"),
        "node n1 to be registered and Ready",
    );
    (c, guard, agent_dir)
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
    guard.kill();
    std::thread::sleep(Duration::from_millis(300));
    assert!(group_alive(pid));
    guard.child = Some(spawn_agent(&c, agent_dir.path()));
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

#[test]
fn a_task_failing_its_health_check_is_killed_as_unhealthy_after_its_grace_period() {
    let (c, mut guard, agent_dir) = start();
    let port = free_port();
    // The whole group ignores SIGTERM: only the SIGKILL after the grace period ends it.
    let manifest = c.write(
        "health.yaml",
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: hc-0\nspec:\n  nodeName: n1\n  container:\n    cmd: \"trap '' TERM; mkdir -p www && echo ok > www/index.html && exec busybox httpd -f -p $PORT_HTTP -h www\"\n  ports:\n    - name: http\n      hostPort: {port}\n  healthChecks:\n    - http:\n        portName: http\n        path: /index.html\n      delaySeconds: 0\n      intervalSeconds: 1\n      gracePeriodSeconds: 0\n      maxConsecutiveFailures: 2\n  killGracePeriodSeconds: 1\n"
        ),
    );
    c.ok(&["apply", "-f", &manifest.display().to_string()]);
    wait_for(
        || task_field(&c, "hc-0", "{.status.healthy}") == "true",
        "task hc-0 to be healthy",
    );
    assert_eq!(task_field(&c, "hc-0", "{.status.phase}"), "Running");
    assert_eq!(task_field(&c, "hc-0", "{.status.ready}"), "true");
    let pid: i32 = task_field(&c, "hc-0", "{.status.pid}")
        .parse()
        .expect("a pid in the status");
    guard.groups.push(pid);

    // The page the check asks for goes away: 404, twice, then the kill.
    std::fs::remove_file(
        agent_dir
            .path()
            .join("tasks/default_hc-0/sandbox/www/index.html"),
    )
    .expect("remove the checked page");
    wait_for(
        || task_field(&c, "hc-0", "{.status.healthy}") == "false",
        "task hc-0 to be unhealthy",
    );
    let killing = std::time::Instant::now();
    wait_for(
        || task_field(&c, "hc-0", "{.status.phase}") == "Failed",
        "task hc-0 to be killed as unhealthy",
    );
    assert_eq!(
        task_field(&c, "hc-0", "{.status.reason}"),
        "HealthCheckFailed"
    );
    let message = task_field(&c, "hc-0", "{.status.message}");
    assert_eq!(
        message,
        format!(
            "killed as unhealthy: 2 consecutive health check failures: HTTP GET http://127.0.0.1:{port}/index.html returned 404"
        )
    );
    // SIGTERM was ignored: SIGKILL ended it, a grace period later.
    assert_eq!(task_field(&c, "hc-0", "{.status.signal}"), "9");
    assert!(
        killing.elapsed() >= Duration::from_millis(500),
        "killed too soon: {:?}",
        killing.elapsed()
    );
    assert_eq!(task_field(&c, "hc-0", "{.status.healthy}"), "false");
    assert!(!group_alive(pid));
}

#[test]
fn a_health_check_that_cannot_be_set_up_is_reported_and_kills_nothing() {
    let (c, mut guard, _agent_dir) = start();
    let port = free_port();
    // Valid for the API, but this agent cannot run HTTPS checks yet.
    let manifest = c.write(
        "badcheck.yaml",
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: bc-0\nspec:\n  nodeName: n1\n  container:\n    command: [\"sleep\", \"300\"]\n  ports:\n    - name: https\n      hostPort: {port}\n  healthChecks:\n    - http:\n        portName: https\n        scheme: HTTPS\n      delaySeconds: 0\n      intervalSeconds: 1\n      gracePeriodSeconds: 0\n      maxConsecutiveFailures: 1\n  killGracePeriodSeconds: 1\n"
        ),
    );
    c.ok(&["apply", "-f", &manifest.display().to_string()]);
    wait_for(
        || task_field(&c, "bc-0", "{.status.message}").contains("health checks not run"),
        "task bc-0 to report its check that cannot run",
    );
    let pid: i32 = task_field(&c, "bc-0", "{.status.pid}")
        .parse()
        .expect("a pid in the status");
    guard.groups.push(pid);
    let message = task_field(&c, "bc-0", "{.status.message}");
    assert!(
        message.contains("HTTPS checks are not supported"),
        "{message}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(task_field(&c, "bc-0", "{.status.phase}"), "Running");
    assert_eq!(task_field(&c, "bc-0", "{.status.healthy}"), "");
    assert!(group_alive(pid));
}

#[test]
fn a_task_without_checks_is_ready_with_no_health() {
    let (c, mut guard, _agent_dir) = start();
    let manifest = c.write(
        "plain.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: plain-0\nspec:\n  nodeName: n1\n  container:\n    command: [\"sleep\", \"300\"]\n  killGracePeriodSeconds: 1\n",
    );
    c.ok(&["apply", "-f", &manifest.display().to_string()]);
    wait_for(
        || task_field(&c, "plain-0", "{.status.phase}") == "Running",
        "task plain-0 to be Running",
    );
    let pid: i32 = task_field(&c, "plain-0", "{.status.pid}")
        .parse()
        .expect("a pid in the status");
    guard.groups.push(pid);
    assert_eq!(task_field(&c, "plain-0", "{.status.ready}"), "true");
    assert_eq!(task_field(&c, "plain-0", "{.status.healthy}"), "");
}
