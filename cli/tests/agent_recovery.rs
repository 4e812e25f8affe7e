//! Tasks under the shim, with real processes (as root): the process driver through the
//! real `drover shim` (exit codes, logs, kills, adoption refusing a reused pid), and
//! `drover agent` against `drover up` across `kill -9` of the agent — an exit that
//! happened meanwhile is reported with its code, a running task is adopted with its
//! logs still flowing — plus cgroup limits: an OOM kill and usage in the status.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::agents::{self, group_alive, kill_group, task_field, wait_until, Proc};
use common::Cluster;
use drover_agent::driver::process::ProcessDriver;
use drover_agent::driver::{shim, Checkpointed, Driver, Exit, Launch};
use drover_api::container::ContainerSpec;

const ADMIN_TOKEN: &str = "admin-token-for-recovery-test";
const AGENT_TOKEN: &str = "agent-token-for-recovery-n1";

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn driver() -> ProcessDriver {
    ProcessDriver::new(PathBuf::from(env!("CARGO_BIN_EXE_drover")))
}

fn must_be_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        uid, "0",
        "these tests start tasks in cgroups and must run as root"
    );
}

/// Kills task groups even when a test fails.
struct Groups(Vec<i32>);

impl Drop for Groups {
    fn drop(&mut self) {
        self.0.iter().copied().for_each(kill_group);
    }
}

fn launch(dir: &Path, container: ContainerSpec) -> Launch {
    Launch {
        task_id: "t1".into(),
        app_id: "app".into(),
        host: "h1".into(),
        sandbox: dir.join("task/sandbox"),
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

#[tokio::test]
async fn exit_codes_env_and_logs_come_through_the_shim() -> TestResult {
    must_be_root();
    let dir = tempfile::tempdir()?;
    let d = driver();
    let mut r = d.start(&launch(dir.path(), cmd("exit 3"))).await?;
    assert_eq!(r.wait().await?, Exit::Code(3));
    let mut r = d.start(&launch(dir.path(), command(&["true"]))).await?;
    assert_eq!(r.wait().await?, Exit::Code(0));

    let mut c =
        cmd("echo $PORT0 $PORT_HTTP $PORT1 $HOST $TASK_ID $APP_ID $GREETING; pwd; echo oops >&2");
    c.env.insert("GREETING".into(), "hi".into());
    c.env.insert("PORT0".into(), "1".into());
    let l = launch(dir.path(), c);
    let mut r = d.start(&l).await?;
    assert!(r.shim_pid().is_some_and(|p| p != r.pid()));
    assert_eq!(r.wait().await?, Exit::Code(0));
    let out = std::fs::read_to_string(l.sandbox.join("stdout"))?;
    let sandbox = std::fs::canonicalize(&l.sandbox)?;
    assert!(
        out.ends_with(&format!(
            "31005 31005 31006 h1 t1 app hi\n{}\n",
            sandbox.display()
        )),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(l.sandbox.join("stderr"))?, "oops\n");
    // The shim kept the exit for whoever asks later.
    let record = shim::read_exit(&shim::state_dir_for(&l.sandbox)).ok_or("no exit.json")?;
    assert_eq!(record.exit(), Exit::Code(0));
    Ok(())
}

#[tokio::test]
async fn start_failures_are_named() -> TestResult {
    must_be_root();
    let dir = tempfile::tempdir()?;
    let l = launch(dir.path(), command(&["drover-no-such-command", "x"]));
    let err = driver().start(&l).await.err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("command not found: drover-no-such-command")
    );
    let mut c = cmd("true");
    c.driver = Some(drover_api::container::Driver::Runc);
    let err = driver().start(&launch(dir.path(), c)).await.err();
    assert_eq!(
        err.map(|e| e.to_string()),
        Some("driver runc is not available on this node".to_string())
    );
    Ok(())
}

#[tokio::test]
async fn kill_sends_sigterm_to_the_group_then_sigkill_after_the_grace() -> TestResult {
    must_be_root();
    let dir = tempfile::tempdir()?;
    // sh forks sleep (two processes in the group): both must go, the shim survives.
    let l = launch(dir.path(), cmd("sleep 300 & sleep 300; wait"));
    let mut r = driver().start(&l).await?;
    let mut groups = Groups(vec![r.pid()]);
    let pid = r.pid();
    assert!(group_alive(pid));
    let t = Instant::now();
    let exit = r.kill(Duration::from_secs(10)).await?;
    assert_eq!(exit, Exit::Signal(15));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(!group_alive(pid));

    let l = launch(
        dir.path(),
        cmd("trap '' TERM; echo ready; while :; do sleep 0.1; done"),
    );
    let mut r = driver().start(&l).await?;
    groups.0.push(r.pid());
    let out = l.sandbox.join("stdout");
    wait_until(5, "ready", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("ready"))
    });
    let t = Instant::now();
    let exit = r.kill(Duration::from_millis(700)).await?;
    let took = t.elapsed();
    assert_eq!(exit, Exit::Signal(9));
    assert!(took >= Duration::from_millis(700), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!group_alive(r.pid()));
    Ok(())
}

#[tokio::test]
async fn adoption_needs_the_same_start_time_and_reports_a_recorded_exit() -> TestResult {
    must_be_root();
    let dir = tempfile::tempdir()?;
    let d = driver();
    let l = launch(
        dir.path(),
        cmd("while [ ! -e go ]; do sleep 0.05; done; exit 7"),
    );
    let first = d.start(&l).await?;
    let _groups = Groups(vec![first.pid()]);
    let checkpoint = Checkpointed {
        pid: first.pid(),
        start_time: first.start_time(),
        shim_pid: first.shim_pid(),
    };
    assert_eq!(checkpoint.start_time, shim::process_start_time(first.pid()));
    // The first agent goes away without waiting.
    drop(first);
    // Same pid, another start time: a reused pid, not ours.
    let reused = Checkpointed {
        start_time: checkpoint.start_time.map(|t| t + 1),
        ..checkpoint
    };
    assert!(d.adopt_checkpointed(&reused, &l).is_none());
    let adopted = d.adopt_checkpointed(&checkpoint, &l).ok_or("not adopted")?;
    assert_eq!(adopted.pid(), checkpoint.pid);
    // It ends while nobody watches; the shim keeps its status.
    std::fs::write(l.sandbox.join("go"), "")?;
    let state_dir = shim::state_dir_for(&l.sandbox);
    wait_until(5, "exit.json", || shim::read_exit(&state_dir).is_some());
    drop(adopted);
    let mut later = d
        .adopt_checkpointed(&checkpoint, &l)
        .ok_or("the ended task was not adopted")?;
    assert_eq!(later.wait().await?, Exit::Code(7));
    Ok(())
}

#[tokio::test]
async fn logs_are_rotated_by_the_shim() -> TestResult {
    must_be_root();
    let dir = tempfile::tempdir()?;
    let l = launch(
        dir.path(),
        cmd("i=0; while [ $i -lt 200 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done"),
    );
    let mut r = driver().with_log_limit(1024).start(&l).await?;
    assert_eq!(r.wait().await?, Exit::Code(0));
    let rotated = drover_agent::driver::log_rotation::rotated_path(&l.sandbox.join("stdout"));
    assert!(rotated.is_file());
    assert!(std::fs::metadata(l.sandbox.join("stdout"))?.len() <= 2048);
    Ok(())
}

// ---- drover agent against drover up ----

/// The agent (killed with every task it checkpointed, even when a test fails), then
/// its data directory.
struct Guard {
    agent: Proc,
    agent_dir: tempfile::TempDir,
}

fn spawn_agent(c: &Cluster, data_dir: &Path) -> Child {
    agents::spawn_agent(c, AGENT_TOKEN, "n1", data_dir, &[])
}

fn start() -> (Cluster, Guard) {
    must_be_root();
    let dir = agents::data_dir_with_tokens(ADMIN_TOKEN, AGENT_TOKEN, "agent-n1", "n1");
    let c = Cluster::up_in(dir);
    let agent_dir = tempfile::tempdir().expect("agent dir");
    let agent = spawn_agent(&c, agent_dir.path());
    let guard = Guard {
        agent: Proc::agent(agent, agent_dir.path()),
        agent_dir,
    };
    wait_until(15, "node n1 to be Ready", || agents::node_ready(&c, "n1"));
    (c, guard)
}

fn apply_task(c: &Cluster, name: &str, container_and_more: &str) {
    let manifest = c.write(
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: n1\n  killGracePeriodSeconds: 2\n{container_and_more}"
        ),
    );
    c.ok(&["apply", "-f", &manifest.display().to_string()]);
}

fn running_pid(c: &Cluster, name: &str) -> i32 {
    wait_until(15, &format!("task {name} to be Running"), || {
        task_field(c, name, "{.status.phase}") == "Running"
    });
    task_field(c, name, "{.status.pid}")
        .parse()
        .expect("a pid in the status")
}

fn kill_agent(guard: &mut Guard) {
    guard.agent.kill();
}

#[test]
fn an_exit_while_the_agent_is_down_is_reported_with_its_code() {
    let (c, mut guard) = start();
    apply_task(
        &c,
        "seven-0",
        "  container:\n    cmd: \"while [ ! -e go ]; do sleep 0.1; done; exit 7\"\n",
    );
    let pid = running_pid(&c, "seven-0");
    kill_agent(&mut guard);
    let task_dir = guard.agent_dir.path().join("tasks/default_seven-0");
    std::fs::write(task_dir.join("sandbox/go"), "").expect("let the task exit");
    wait_until(5, "the shim to record the exit", || {
        shim::read_exit(&task_dir.join("shim")).is_some()
    });
    assert!(!group_alive(pid));
    assert_eq!(
        task_field(&c, "seven-0", "{.status.phase}"),
        "Running",
        "nobody reported it yet"
    );

    guard.agent.child = Some(spawn_agent(&c, guard.agent_dir.path()));
    wait_until(15, "seven-0 to be Failed", || {
        task_field(&c, "seven-0", "{.status.phase}") == "Failed"
    });
    assert_eq!(task_field(&c, "seven-0", "{.status.exitCode}"), "7");
    assert_eq!(task_field(&c, "seven-0", "{.status.reason}"), "Exited");
    assert_eq!(
        task_field(&c, "seven-0", "{.status.message}"),
        "exited with code 7"
    );
}

#[test]
fn a_running_task_survives_the_agent_and_is_adopted_with_its_logs_flowing() {
    let (c, mut guard) = start();
    apply_task(
        &c,
        "ticker-0",
        "  container:\n    cmd: \"i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done\"\n",
    );
    let pid = running_pid(&c, "ticker-0");
    let stdout = guard
        .agent_dir
        .path()
        .join("tasks/default_ticker-0/sandbox/stdout");
    let size = || std::fs::metadata(&stdout).map(|m| m.len()).unwrap_or(0);
    kill_agent(&mut guard);
    let down = size();
    wait_until(5, "the log to grow while the agent is down", || {
        size() > down + 40
    });
    assert!(group_alive(pid));

    guard.agent.child = Some(spawn_agent(&c, guard.agent_dir.path()));
    // Adopted: the same pid, still running, and still logging.
    let back = size();
    wait_until(5, "the log to keep growing", || size() > back + 40);
    assert_eq!(task_field(&c, "ticker-0", "{.status.phase}"), "Running");
    assert_eq!(task_field(&c, "ticker-0", "{.status.pid}"), pid.to_string());
    assert!(group_alive(pid));

    // The new agent owns it: deleting the Task kills it.
    c.ok(&["delete", "tasks.drover.dev", "ticker-0"]);
    wait_until(10, "the adopted task to be killed", || !group_alive(pid));
}

#[test]
fn a_task_past_its_memory_limit_is_oom_killed() {
    let (c, _guard) = start();
    apply_task(
        &c,
        "hog-0",
        "  resources:\n    memMiB: 32\n  container:\n    command: [\"busybox\", \"sh\", \"-c\", \"x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); echo survived\"]\n",
    );
    wait_until(20, "hog-0 to fail", || {
        task_field(&c, "hog-0", "{.status.phase}") == "Failed"
    });
    assert_eq!(task_field(&c, "hog-0", "{.status.reason}"), "OOMKilled");
    let message = task_field(&c, "hog-0", "{.status.message}");
    assert!(
        message.starts_with("killed: out of memory (limit 32 MiB)"),
        "{message}"
    );
}

#[test]
fn a_running_task_reports_its_usage_and_runs_in_its_limited_cgroup() {
    let (c, _guard) = start();
    apply_task(
        &c,
        "user-0",
        "  resources:\n    memMiB: 48\n    cpus: 0.5\n  container:\n    cmd: \"x=$(head -c 2000000 /dev/zero | tr '\\\\0' a); exec sleep 300\"\n",
    );
    let pid = running_pid(&c, "user-0");
    // Its memory cgroup has the limit.
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("task cgroups");
    let memory = cgroups
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .expect("a memory cgroup");
    assert!(memory.contains("/drover/user-0-"), "{memory}");
    let dir = PathBuf::from(format!("/sys/fs/cgroup/memory{memory}"));
    let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).expect("limit");
    assert_eq!(limit.trim(), (48u64 << 20).to_string());
    wait_until(15, "usage in the status", || {
        task_field(&c, "user-0", "{.status.usage.memoryBytes}")
            .parse::<u64>()
            .is_ok_and(|m| m > 0)
    });
    let cpu: f64 = task_field(&c, "user-0", "{.status.usage.cpuSeconds}")
        .parse()
        .expect("cpuSeconds");
    assert!(cpu >= 0.0);
    assert!(!task_field(&c, "user-0", "{.status.usage.sampledAt}").is_empty());

    // Gone with the task.
    c.ok(&["delete", "tasks.drover.dev", "user-0"]);
    wait_until(10, "the task's cgroup to be removed", || !dir.exists());
}
