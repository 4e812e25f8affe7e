//! The docker driver end to end: a real `dockerd` started by the test (its own socket
//! and data root), `drover up`, and `drover agent --docker-host` pointed at it. An
//! image imported from busybox-static serves HTTP with host networking and a health
//! check; its output reaches `drover logs`; an unknown image fails clearly while the
//! other container keeps running; a restarted agent adopts the running container (same
//! id), reports the exit code of one that ended while it was away and kills one whose
//! Task was deleted meanwhile; `memMiB` ends in an OOM kill; an agent without a daemon
//! does not advertise docker.

mod common;

use std::io::{Read, Write};
use std::process::Child;
use std::time::Duration;

use common::agents::{self, free_port, task_field};
use common::docker::Dockerd;
use common::{drover, wait_for, Cluster};

const ADMIN_TOKEN: &str = "admin-token-for-docker-test";
const AGENT_TOKEN: &str = "agent-token-for-n1";
const IMAGE: &str = "drover-busybox:test";

/// One dockerd, one cluster, one agent; torn down even on panic (the agent first, then
/// the cluster, then dockerd with every container in it).
struct Env {
    agent: Option<Child>,
    dockerd: Option<Dockerd>,
    c: Cluster,
    agent_dir: tempfile::TempDir,
    files: tempfile::TempDir,
    docker_host: String,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }
}

impl Env {
    fn dockerd(&self) -> &Dockerd {
        self.dockerd.as_ref().expect("this test runs a dockerd")
    }

    fn start_agent(&mut self) {
        let agent = agents::spawn_agent(
            &self.c,
            AGENT_TOKEN,
            "n1",
            self.agent_dir.path(),
            &["--docker-host", &self.docker_host],
        );
        self.agent = Some(agent);
    }

    fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
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

    fn wait_end(&self, name: &str) {
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

    /// The names of the drivers node n1 advertises.
    fn drivers(&self) -> String {
        let out = self.c.kubectl(&[
            "get",
            "nodes.drover.dev",
            "n1",
            "-o",
            "jsonpath={.status.drivers[*].name}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `drover logs` of a task (`extra`: e.g. `--stream stderr`).
    fn logs(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["logs", name];
        args.extend_from_slice(extra);
        let out = drover(&self.c, &args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A cluster and an agent whose `--docker-host` is `dockerd`'s (or, without one, a
/// socket nobody serves).
fn start(dockerd: Option<Dockerd>) -> Env {
    let dir = agents::data_dir_with_tokens(ADMIN_TOKEN, AGENT_TOKEN, "agent-n1", "n1");
    let files = tempfile::tempdir().expect("files dir");
    let docker_host = match &dockerd {
        Some(d) => d.host.clone(),
        None => format!("unix://{}/no-dockerd.sock", files.path().display()),
    };
    let mut env = Env {
        agent: None,
        agent_dir: tempfile::tempdir().expect("agent dir"),
        files,
        c: Cluster::up_in(dir),
        docker_host,
        dockerd,
    };
    env.start_agent();
    wait_for(|| env.drivers().contains("process"), "node n1 to register");
    env
}

/// dockerd with the busybox image, and the cluster.
fn start_with_docker() -> Env {
    let dockerd = Dockerd::start();
    let files = tempfile::tempdir().expect("image dir");
    dockerd.import_busybox(files.path(), IMAGE);
    let env = start(Some(dockerd));
    wait_for(
        || env.drivers().contains("docker"),
        "node n1 to advertise docker",
    );
    env
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

fn docker_task(name: &str, image: &str, container: &str, rest: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: n1\n  container:\n    driver: docker\n    image: \"{image}\"\n{container}{rest}"
    )
}

#[test]
fn a_docker_task_serves_http_and_logs_and_an_unknown_image_fails_clearly() {
    let env = start_with_docker();
    let version = env.dockerd().json("GET", "/version")["Version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let out = env.c.kubectl(&[
        "get",
        "nodes.drover.dev",
        "n1",
        "-o",
        "jsonpath={.status.drivers[?(@.name==\"docker\")].version}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), version);

    // A web server with a health check, a volume and output on both streams.
    let port = free_port();
    let rw = env.files.path().join("rw");
    std::fs::create_dir_all(&rw).expect("volume dir");
    let web = docker_task(
        "web-0",
        IMAGE,
        "    cmd: \"echo hello from the container; echo to stderr >&2; echo $TASK_ID > /rw/out; exec httpd -f -p $PORT0 -h /www\"\n",
        &format!(
            "  ports:\n    - name: http\n      hostPort: {port}\n  healthChecks:\n    - http:\n        portName: http\n        path: /index.html\n      delaySeconds: 0\n      intervalSeconds: 1\n      gracePeriodSeconds: 5\n  resources:\n    cpus: 0.2\n    memMiB: 64\n  volumes:\n    - name: rw\n      mountPath: /rw\n      hostPath: {}\n  killGracePeriodSeconds: 2\n",
            rw.display()
        ),
    );
    env.apply("web-0", &web);
    env.wait_phase("web-0", "Running");
    wait_for(
        || env.task("web-0", "{.status.healthy}") == "true",
        "web-0 to be healthy",
    );
    assert_eq!(
        http_get(port, "/index.html").as_deref(),
        Some("hello from docker\n")
    );
    assert_eq!(
        std::fs::read_to_string(rw.join("out")).ok().as_deref(),
        Some("web-0\n")
    );
    let id = env.task("web-0", "{.status.containerId}");
    let inspect = env
        .dockerd()
        .inspect(&id)
        .expect("dockerd knows web-0's container");
    assert_eq!(inspect["State"]["Running"], true);
    assert_eq!(inspect["Config"]["Labels"]["drover.dev/task"], "web-0");
    assert_eq!(inspect["HostConfig"]["NetworkMode"], "host");
    assert_eq!(inspect["HostConfig"]["Memory"], 64 * 1024 * 1024);
    assert_eq!(inspect["HostConfig"]["NanoCpus"], 200_000_000);
    // Its usage is read from docker's cgroup of it.
    wait_for(
        || {
            env.task("web-0", "{.status.usage.memoryBytes}")
                .parse::<u64>()
                .is_ok_and(|b| b > 0)
        },
        "web-0's memory usage in its status",
    );
    let name = inspect["Name"].as_str().unwrap_or_default().to_string();
    assert!(name.starts_with("/drover-web-0-"), "{name}");
    wait_for(
        || {
            env.logs("web-0", &[])
                .contains("hello from the container\n")
        },
        "web-0's stdout in drover logs",
    );
    wait_for(
        || env.logs("web-0", &["--stream", "stderr"]) == "to stderr\n",
        "web-0's stderr in drover logs",
    );

    // An image the daemon lacks: a clear failure; web-0 never notices.
    env.apply(
        "bad-0",
        &docker_task("bad-0", "busybox:nope", "    cmd: \"true\"\n", ""),
    );
    env.wait_end("bad-0");
    assert_eq!(env.task("bad-0", "{.status.phase}"), "Failed");
    assert_eq!(
        env.task("bad-0", "{.status.message}"),
        "image busybox:nope not found on this node's docker daemon; load or import it first"
    );

    assert_eq!(env.task("web-0", "{.status.phase}"), "Running");
    assert_eq!(env.task("web-0", "{.status.containerId}"), id);
    assert!(http_get(port, "/index.html").is_some());

    // Its container goes with the task.
    env.c.ok(&["delete", "tasks.drover.dev", "web-0"]);
    wait_for(
        || env.dockerd().inspect(&id).is_none(),
        "web-0's container to be killed and removed",
    );
    assert!(http_get(port, "/index.html").is_none());
}

#[test]
fn a_restarted_agent_adopts_its_running_container_and_reports_one_that_ended() {
    let mut env = start_with_docker();
    env.apply(
        "keep-0",
        &docker_task(
            "keep-0",
            IMAGE,
            "    cmd: \"echo started; exec sleep 300\"\n",
            "  killGracePeriodSeconds: 1\n",
        ),
    );
    env.wait_phase("keep-0", "Running");
    let id = env.task("keep-0", "{.status.containerId}");
    wait_for(
        || env.logs("keep-0", &[]) == "started\n",
        "keep-0's output in drover logs",
    );

    // One that ends while no agent watches.
    env.apply(
        "brief-0",
        &docker_task(
            "brief-0",
            IMAGE,
            "    cmd: \"echo bye; sleep 2; exit 3\"\n",
            "",
        ),
    );
    env.wait_phase("brief-0", "Running");
    let brief = env.task("brief-0", "{.status.containerId}");
    // And one whose Task is deleted while no agent watches: an orphan to kill.
    env.apply(
        "gone-0",
        &docker_task(
            "gone-0",
            IMAGE,
            "    command: [\"sleep\", \"300\"]\n",
            "  killGracePeriodSeconds: 1\n",
        ),
    );
    env.wait_phase("gone-0", "Running");
    let gone = env.task("gone-0", "{.status.containerId}");

    // kill -9 of the agent: the containers live on.
    env.kill_agent();
    wait_for(
        || {
            env.dockerd()
                .inspect(&brief)
                .is_some_and(|v| v["State"]["Running"] == false)
        },
        "brief-0's container to exit",
    );
    assert_eq!(env.task("brief-0", "{.status.phase}"), "Running");
    env.c.ok(&["delete", "tasks.drover.dev", "gone-0"]);
    assert!(env
        .dockerd()
        .inspect(&gone)
        .is_some_and(|v| v["State"]["Running"] == true));
    env.start_agent();

    // The new agent reports how brief-0 ended, with its output, and removes it.
    env.wait_end("brief-0");
    assert_eq!(env.task("brief-0", "{.status.phase}"), "Failed");
    assert_eq!(env.task("brief-0", "{.status.exitCode}"), "3");
    assert_eq!(
        env.task("brief-0", "{.status.message}"),
        "exited with code 3"
    );
    assert_eq!(env.logs("brief-0", &[]), "bye\n");
    wait_for(
        || env.dockerd().inspect(&brief).is_none(),
        "brief-0's container to be removed",
    );

    // keep-0 was adopted (the new agent has been through its tasks: it reported
    // brief-0): same container, still running, its output not copied twice.
    assert_eq!(env.task("keep-0", "{.status.phase}"), "Running");
    assert_eq!(env.task("keep-0", "{.status.containerId}"), id);
    assert_eq!(env.logs("keep-0", &[]), "started\n");
    assert!(env
        .dockerd()
        .inspect(&id)
        .is_some_and(|v| v["State"]["Running"] == true));

    // Only the new agent can stop it now; its container goes with the task.
    // The orphan's container was killed and removed.
    wait_for(
        || env.dockerd().inspect(&gone).is_none(),
        "gone-0's orphaned container to be killed and removed",
    );

    env.c.ok(&["delete", "tasks.drover.dev", "keep-0"]);
    wait_for(
        || env.dockerd().inspect(&id).is_none(),
        "keep-0's container to be killed and removed",
    );
}

#[test]
fn a_docker_container_past_its_memory_limit_is_oom_killed() {
    let env = start_with_docker();
    env.apply(
        "hog-0",
        &docker_task(
            "hog-0",
            IMAGE,
            "    command: [\"sh\", \"-c\", \"head -c 200m /dev/zero | tail\"]\n",
            "  resources:\n    memMiB: 32\n",
        ),
    );
    env.wait_end("hog-0");
    assert_eq!(
        (
            env.task("hog-0", "{.status.phase}"),
            env.task("hog-0", "{.status.reason}"),
            env.task("hog-0", "{.status.message}")
        ),
        (
            "Failed".to_string(),
            "OOMKilled".to_string(),
            "killed: out of memory (limit 32 MiB)".to_string()
        )
    );
    let id = env.task("hog-0", "{.status.containerId}");
    wait_for(
        || env.dockerd().inspect(&id).is_none(),
        "hog-0's container to be removed",
    );
}

#[test]
fn without_a_docker_daemon_the_node_does_not_advertise_docker() {
    let env = start(None);
    // Registered (process is there) with the drivers found at start: not docker.
    assert!(!env.drivers().contains("docker"), "{}", env.drivers());
    env.apply(
        "nodocker-0",
        &docker_task("nodocker-0", IMAGE, "    cmd: \"true\"\n", ""),
    );
    env.wait_end("nodocker-0");
    assert_eq!(env.task("nodocker-0", "{.status.phase}"), "Failed");
    assert_eq!(
        env.task("nodocker-0", "{.status.message}"),
        format!(
            "driver docker is not available on this node: no Docker daemon answers at {} (start dockerd, or give the agent --docker-host)",
            env.docker_host
        )
    );
}
