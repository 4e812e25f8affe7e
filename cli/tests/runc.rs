//! The runc driver end to end: `drover agent` (as root, with the real runc) against
//! `drover up`, running Tasks in containers whose rootfs the test builds from
//! busybox-static — from a directory and from an OCI image layout — with host
//! networking and HTTP health checks; an OOM kill under `memMiB`; bad specs failing
//! with clear messages while another container keeps running; adoption of a
//! running container by a restarted agent; and exec health checks run inside the
//! container (`runc exec`), their timeout killing them.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::agents::{self, free_port, task_field};
use common::rootfs::{busybox_rootfs, oci_layout};
use common::{wait_for, Cluster};

const ADMIN_TOKEN: &str = "admin-token-for-runc-test";
const AGENT_TOKEN: &str = "agent-token-for-n1";

/// One cluster, one agent and everything they started; torn down even on panic:
/// the agent, then every container in the agent's runc root, then rootfs mounts.
struct Env {
    agent: Option<Child>,
    agent_dir: tempfile::TempDir,
    files: tempfile::TempDir,
    c: Cluster,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        for id in self.containers() {
            let _ = self.runc(&["kill", "--all", &id, "KILL"]);
            for _ in 0..50 {
                let state = self.runc(&["state", &id]);
                if !state.contains("\"running\"") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.runc(&["delete", "--force", &id]);
        }
        let tasks = self.agent_dir.path().join("tasks");
        if let Ok(entries) = std::fs::read_dir(tasks) {
            for e in entries.flatten() {
                let rootfs = e.path().join("sandbox/bundle/rootfs");
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(&rootfs)
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Env {
    fn runc_root(&self) -> PathBuf {
        self.agent_dir.path().join("runc")
    }

    /// runc's stdout (empty on failure).
    fn runc(&self, args: &[&str]) -> String {
        Command::new("runc")
            .arg("--root")
            .arg(self.runc_root())
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn containers(&self) -> Vec<String> {
        self.runc(&["list", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `runc state`: (status, pid) of the task's container, if runc knows it.
    fn container_state(&self, task: &str) -> Option<(String, i64)> {
        let id = self
            .containers()
            .into_iter()
            .find(|id| id.starts_with(&format!("drover-{task}-")))?;
        let v: serde_json::Value = serde_json::from_str(&self.runc(&["state", &id])).ok()?;
        Some((v["status"].as_str()?.to_string(), v["pid"].as_i64()?))
    }

    fn start_agent(&mut self) {
        let agent = agents::spawn_agent(&self.c, AGENT_TOKEN, "n1", self.agent_dir.path(), &[]);
        self.agent = Some(agent);
    }

    fn task(&self, name: &str, path: &str) -> String {
        task_field(&self.c, name, path)
    }

    fn apply(&self, name: &str, yaml: &str) {
        let manifest = self.c.write(&format!("{name}.yaml"), yaml);
        self.c.ok(&["apply", "-f", &manifest.display().to_string()]);
    }

    fn wait_phase(&self, name: &str, phase: &str) {
        wait_for(
            || {
                let now = self.task(name, "{.status.phase}");
                assert!(
                    now == phase || !matches!(now.as_str(), "Failed" | "Finished" | "Killed"),
                    "task {name} ended {now} instead of {phase}: {}",
                    self.task(name, "{.status.message}")
                );
                now == phase
            },
            &format!("task {name} to be {phase}"),
        );
    }
}

fn start() -> Env {
    let dir = agents::data_dir_with_tokens(ADMIN_TOKEN, AGENT_TOKEN, "agent-n1", "n1");
    let files = tempfile::tempdir().expect("files dir");
    busybox_rootfs(files.path());
    let mut env = Env {
        agent: None,
        agent_dir: tempfile::tempdir().expect("agent dir"),
        files,
        c: Cluster::up_in(dir),
    };
    env.start_agent();
    wait_for(
        || {
            let out = env.c.kubectl(&[
                "get",
                "nodes.drover.dev",
                "n1",
                "-o",
                "jsonpath={.status.drivers[*].name}",
            ]);
            String::from_utf8_lossy(&out.stdout).contains("runc")
        },
        "node n1 to register and advertise runc",
    );
    env
}

fn rootfs(env: &Env) -> PathBuf {
    env.files.path().join("rootfs")
}

/// The body of `GET path` on the port, if it answers 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1);
    (head.starts_with("HTTP/1.") && status == Some("200")).then(|| body.to_string())
}

fn web_task(name: &str, source: &str, command: &str, port: u16) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n    {source}\n{command}  ports:\n    - name: http\n      hostPort: {port}\n  healthChecks:\n    - http:\n        portName: http\n        path: /index.html\n      delaySeconds: 0\n      intervalSeconds: 1\n      gracePeriodSeconds: 5\n  resources:\n    cpus: 0.2\n    memMiB: 64\n  killGracePeriodSeconds: 2\n"
    )
}

fn assert_serves(env: &Env, name: &str, port: u16) {
    env.wait_phase(name, "Running");
    wait_for(
        || env.task(name, "{.status.healthy}") == "true",
        &format!("task {name} to be healthy"),
    );
    assert_eq!(
        http_get(port, "/index.html").as_deref(),
        Some("hello from runc\n")
    );
    let pid: i64 = env
        .task(name, "{.status.pid}")
        .parse()
        .expect("a pid in the status");
    let id = env.task(name, "{.status.containerId}");
    assert!(id.starts_with(&format!("drover-{name}-")), "{id}");
    let (status, container_pid) = env.container_state(name).expect("runc knows the container");
    assert_eq!((status.as_str(), container_pid), ("running", pid));
}

#[test]
fn a_container_from_a_rootfs_directory_serves_http_on_its_host_port() {
    let env = start();
    let port = free_port();
    let root = rootfs(&env);
    let (rw, ro) = (env.files.path().join("rw"), env.files.path().join("ro"));
    std::fs::create_dir_all(&rw).expect("rw dir");
    std::fs::create_dir_all(&ro).expect("ro dir");
    // Writes into its rootfs, into a writable volume, and tries a read-only one.
    let cmd = "    cmd: \"echo mine > /www/written && echo $TASK_ID > /rw/out && (echo x > /ro/f 2>/dev/null || echo refused > /rw/ro-result) && exec busybox httpd -f -p $PORT0 -h /www\"\n";
    let volumes = format!(
        "  volumes:\n    - name: rw\n      mountPath: /rw\n      hostPath: {}\n    - name: ro\n      mountPath: /ro\n      hostPath: {}\n      readOnly: true\n",
        rw.display(),
        ro.display()
    );
    let task = web_task("web-0", &format!("rootfs: {}", root.display()), cmd, port);
    env.apply("web-0", &format!("{task}{volumes}"));
    assert_serves(&env, "web-0", port);
    assert_eq!(http_get(port, "/written").as_deref(), Some("mine\n"));
    // The rootfs directory is the overlay's read-only lower layer: untouched.
    assert!(!root.join("www/written").exists());
    assert!(!root.join("rw").exists());
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).ok().as_deref(),
        Some("web-0\n")
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("ro-result"))
            .ok()
            .as_deref(),
        Some("refused\n")
    );
    assert!(!ro.join("f").exists());

    env.c.ok(&["delete", "tasks.drover.dev", "web-0"]);
    wait_for(
        || env.container_state("web-0").is_none(),
        "the container to be deleted",
    );
    assert!(http_get(port, "/index.html").is_none());
}

#[test]
fn a_container_from_an_oci_layout_uses_the_image_defaults() {
    let env = start();
    let layout = oci_layout(&rootfs(&env), env.files.path(), "v1");
    let port = free_port();
    // No command: the image's Entrypoint + Cmd run httpd on $PORT0.
    env.apply(
        "img-0",
        &web_task(
            "img-0",
            &format!("image: oci:{}:v1", layout.display()),
            "",
            port,
        ),
    );
    assert_serves(&env, "img-0", port);
    let images = env.agent_dir.path().join("images");
    let unpacked: Vec<String> = std::fs::read_dir(&images)
        .expect("the image store")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        unpacked.len() == 1 && unpacked[0].starts_with("sha256-"),
        "{unpacked:?}"
    );
    assert!(images
        .join(&unpacked[0])
        .join("rootfs/bin/busybox")
        .is_file());
}

#[test]
fn a_container_past_its_memory_limit_is_oom_killed() {
    let env = start();
    env.apply(
        "hog-0",
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: hog-0\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n    rootfs: {}\n    command: [\"sh\", \"-c\", \"x=$(head -c 200000000 /dev/zero | tr '\\\\0' a); echo survived\"]\n  resources:\n    memMiB: 32\n",
            rootfs(&env).display()
        ),
    );
    env.wait_phase_or_end("hog-0");
    assert_eq!(env.task("hog-0", "{.status.phase}"), "Failed");
    assert_eq!(env.task("hog-0", "{.status.reason}"), "OOMKilled");
    assert_eq!(
        env.task("hog-0", "{.status.message}"),
        "killed: out of memory (limit 32 MiB)"
    );
}

impl Env {
    /// Until the task reaches a terminal phase (whichever).
    fn wait_phase_or_end(&self, name: &str) {
        wait_for(
            || {
                matches!(
                    self.task(name, "{.status.phase}").as_str(),
                    "Failed" | "Finished" | "Killed"
                )
            },
            &format!("task {name} to end"),
        );
    }
}

#[test]
fn bad_container_specs_fail_clearly_while_another_container_keeps_running() {
    let env = start();
    let root = rootfs(&env);
    env.apply(
        "good-0",
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: good-0\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n    rootfs: {}\n    command: [\"sleep\", \"300\"]\n  killGracePeriodSeconds: 1\n",
            root.display()
        ),
    );
    env.wait_phase("good-0", "Running");
    let pid = env.task("good-0", "{.status.pid}");

    let bad = |name: &str, container: &str| {
        env.apply(
            name,
            &format!(
                "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n{container}"
            ),
        );
        env.wait_phase_or_end(name);
        assert_eq!(env.task(name, "{.status.phase}"), "Failed", "{name}");
        env.task(name, "{.status.message}")
    };
    let missing = env.files.path().join("no-such-rootfs");
    let msg = bad(
        "norootfs-0",
        &format!("    rootfs: {}\n    cmd: \"true\"\n", missing.display()),
    );
    assert_eq!(
        msg,
        format!(
            "container.rootfs {} does not exist (or is not a directory) on this node",
            missing.display()
        )
    );
    let msg = bad(
        "registry-0",
        "    image: docker.io/library/busybox\n    cmd: \"true\"\n",
    );
    // Registry pulls are another test's (registry.rs); whether this node cannot pull
    // or cannot reach docker.io, the message names the image.
    assert!(
        msg.starts_with("image ") && msg.contains("docker.io/library/busybox"),
        "{msg}"
    );
    let msg = bad(
        "nocmd-0",
        &format!(
            "    rootfs: {}\n    command: [\"/bin/drover-no-such-command\"]\n",
            root.display()
        ),
    );
    assert_eq!(
        msg,
        format!(
            "command not found: /bin/drover-no-such-command (not in the container's rootfs {})",
            root.display()
        )
    );

    // The good one never noticed.
    assert_eq!(env.task("good-0", "{.status.phase}"), "Running");
    assert_eq!(env.task("good-0", "{.status.pid}"), pid);
    let (status, _) = env.container_state("good-0").expect("good-0's container");
    assert_eq!(status, "running");
}

#[test]
fn a_restarted_agent_adopts_its_running_container() {
    let mut env = start();
    env.apply(
        "keep-0",
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: keep-0\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n    rootfs: {}\n    command: [\"sleep\", \"300\"]\n  killGracePeriodSeconds: 1\n",
            rootfs(&env).display()
        ),
    );
    env.wait_phase("keep-0", "Running");
    let pid: i64 = env.task("keep-0", "{.status.pid}").parse().expect("a pid");

    // kill -9 of the agent: the container lives on.
    if let Some(mut a) = env.agent.take() {
        let _ = a.kill();
        let _ = a.wait();
    }
    assert_eq!(
        env.container_state("keep-0"),
        Some(("running".to_string(), pid))
    );
    env.start_agent();
    // Re-registered, and the task was looked at again: still the same container.
    wait_for(
        || !env.task("keep-0", "{.status.startedAt}").is_empty(),
        "the task's status",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.task("keep-0", "{.status.phase}"), "Running");
    assert_eq!(env.task("keep-0", "{.status.pid}"), pid.to_string());
    assert_eq!(
        env.container_state("keep-0"),
        Some(("running".to_string(), pid))
    );

    // Only the new agent can stop it now.
    env.c.ok(&["delete", "tasks.drover.dev", "keep-0"]);
    wait_for(
        || env.container_state("keep-0").is_none(),
        "the adopted container to be killed and deleted",
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn a_container_that_exits_while_the_agent_is_away_is_reported_with_its_exit_code() {
    let mut env = start();
    env.apply(
        "brief-0",
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: brief-0\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n    rootfs: {}\n    cmd: \"sleep 1; exit 3\"\n",
            rootfs(&env).display()
        ),
    );
    env.wait_phase("brief-0", "Running");
    if let Some(mut a) = env.agent.take() {
        let _ = a.kill();
        let _ = a.wait();
    }
    // It ends while no agent watches; its shim keeps the exit status.
    wait_for(
        || env.container_state("brief-0").is_none(),
        "the container to exit",
    );
    assert_eq!(env.task("brief-0", "{.status.phase}"), "Running");
    env.start_agent();
    env.wait_phase_or_end("brief-0");
    assert_eq!(env.task("brief-0", "{.status.phase}"), "Failed");
    assert_eq!(env.task("brief-0", "{.status.exitCode}"), "3");
    assert_eq!(
        env.task("brief-0", "{.status.message}"),
        "exited with code 3"
    );
}

/// A runc task whose one health check is an exec check running `command` (YAML flow
/// list), every second with a 1 s timeout, killing after `max` consecutive failures.
fn exec_checked_task(name: &str, root: &Path, command: &str, max: u32) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n    rootfs: {}\n    cmd: \"echo inside > /tmp/marker && exec sleep 600\"\n    env:\n      CHECK_WANT: from-the-task\n  healthChecks:\n    - exec:\n        command: {command}\n      delaySeconds: 0\n      intervalSeconds: 1\n      timeoutSeconds: 1\n      gracePeriodSeconds: 0\n      maxConsecutiveFailures: {max}\n  resources:\n    cpus: 0.2\n  killGracePeriodSeconds: 1\n",
        root.display()
    )
}

#[test]
fn exec_checks_run_inside_the_container_and_kill_it_when_they_fail() {
    let env = start();
    let root = rootfs(&env);
    // Passes only inside the container: its /tmp is the container's own tmpfs (the
    // marker is not on the host), /www/index.html is the rootfs's, and the env is the
    // container's.
    let inside = r#"["sh", "-c", "test -f /tmp/marker && test -f /www/index.html && test \"$CHECK_WANT\" = from-the-task"]"#;
    assert!(!Path::new("/www/index.html").exists() && !Path::new("/tmp/marker").exists());
    env.apply(
        "checked-0",
        &exec_checked_task("checked-0", &root, inside, 2),
    );
    // Hangs: the 1 s timeout must kill it, three times, and then the task.
    let hangs = r#"["sh", "-c", "test -f /tmp/marker && exec sleep 30"]"#;
    env.apply("hung-0", &exec_checked_task("hung-0", &root, hangs, 3));

    env.wait_phase("checked-0", "Running");
    // Its CPU quota (set once it runs, not while runc starts it): 0.2 cpu.
    let pid = env.task("checked-0", "{.status.pid}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    // v1: the `cpu` hierarchy's cpu.cfs_quota_us; v2: cpu.max.
    let v1 = cgroups.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (controllers, path) = rest.split_once(':')?;
        controllers.split(',').any(|c| c == "cpu").then(|| {
            Path::new("/sys/fs/cgroup")
                .join(controllers)
                .join(path.trim_start_matches('/'))
                .join("cpu.cfs_quota_us")
        })
    });
    let (quota_file, want) = match v1 {
        Some(file) => (file, "20000"),
        None => {
            let path = cgroups
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .expect("a cgroup");
            let file = Path::new("/sys/fs/cgroup")
                .join(path.trim_start_matches('/'))
                .join("cpu.max");
            (file, "20000 100000")
        }
    };
    wait_for(
        || std::fs::read_to_string(&quota_file).is_ok_and(|q| q.trim() == want),
        &format!("{} to be {want}", quota_file.display()),
    );
    wait_for(
        || env.task("checked-0", "{.status.healthy}") == "true",
        "task checked-0 to be healthy (its exec check passes in the container)",
    );

    // A timed-out check is killed: at most the one running is in the container (had
    // they been left running, three would be there before the task is killed).
    let mut most = 0;
    wait_for(
        || {
            most = most.max(checks_running_in("hung-0"));
            matches!(
                env.task("hung-0", "{.status.phase}").as_str(),
                "Failed" | "Finished" | "Killed"
            )
        },
        "task hung-0 to end",
    );
    assert!(
        most <= 1,
        "{most} timed-out exec checks were running at once"
    );
    assert_eq!(env.task("hung-0", "{.status.phase}"), "Failed");
    assert_eq!(env.task("hung-0", "{.status.reason}"), "HealthCheckFailed");
    let message = env.task("hung-0", "{.status.message}");
    assert!(
        message.starts_with("killed as unhealthy: 3 consecutive health check failures: ")
            && message.contains("timed out after 1 s"),
        "{message}"
    );

    // The healthy one is still running and healthy all along.
    assert_eq!(env.task("checked-0", "{.status.phase}"), "Running");
    assert_eq!(env.task("checked-0", "{.status.healthy}"), "true");
}

/// How many `sleep 30` (the hanging check) run in the cgroup of `task`'s container.
fn checks_running_in(task: &str) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let dir = e.path();
            std::fs::read(dir.join("cmdline")).is_ok_and(|c| c == b"sleep\x0030\x00")
                && std::fs::read_to_string(dir.join("cgroup"))
                    .is_ok_and(|c| c.contains(&format!("/{task}-")))
        })
        .count()
}
