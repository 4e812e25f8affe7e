//! Rolling upgrades end to end, with real binaries: `drover up` plus two more `drover
//! agent`s (three nodes on this machine), an App of busybox httpd instances spread by
//! `hostname:UNIQUE`, scaled past what the nodes allow and back, upgraded while a
//! sampler checks the healthy count never drops below minimumHealthCapacity, and a
//! version that never gets healthy rolled back after its progress deadline. Then a
//! `kill -9` in the middle of a scale to 50 (nothing lost, nothing doubled), and the
//! rollout on real etcd with `drover server` + `drover controller` apart.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::agents::{wait_until, Proc};
use common::Cluster;
use serde_json::Value;

fn drover() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drover"));
    c.env(
        "DROVER_LOG",
        std::env::var("DROVER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
    );
    c
}

/// One more agent, node `name`, talking to the cluster with its kubeconfig.
///
/// Each agent gets host ports of its own (`ports`): all of them run on this machine, and
/// a broken instance's HTTP check must not reach another node's server on the same port.
fn agent(c: &Cluster, name: &str, dir: &Path, ports: &str) -> Proc {
    let child = drover()
        .args([
            "agent",
            "--hostname",
            name,
            "--port-range",
            ports,
            "--kubeconfig",
        ])
        .arg(&c.kubeconfig)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn drover agent");
    Proc::agent(child, dir)
}

/// `drover ARGS` against the cluster.
fn run(c: &Cluster, args: &[&str]) -> Output {
    drover()
        .args(args)
        .env("KUBECONFIG", &c.kubeconfig)
        .output()
        .expect("run drover")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = c.kubectl(&all);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn tasks(c: &Cluster, app: &str) -> Vec<Value> {
    let v = json(c, &["get", "tasks", "-l", &format!("drover.dev/app={app}")]);
    v["items"].as_array().cloned().unwrap_or_default()
}

/// Tasks Running with passing health checks (and not being deleted).
fn healthy(tasks: &[Value]) -> Vec<&Value> {
    tasks
        .iter()
        .filter(|t| {
            t["metadata"]["deletionTimestamp"].is_null()
                && t["status"]["phase"] == "Running"
                && t["status"]["healthy"] == true
        })
        .collect()
}

fn app_field(c: &Cluster, name: &str, path: &str) -> String {
    let out = c.kubectl(&["get", "app", name, "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The body busybox httpd serves for /index.html on `port`.
fn page(port: i64) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port as u16)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.").then(|| {
        reply
            .rsplit("\r\n\r\n")
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    })
}

/// Every task of `app` is healthy, serves `content`, and there are `n` of them.
fn serving(c: &Cluster, app: &str, n: usize, content: &str) -> bool {
    let all = tasks(c, app);
    let up = healthy(&all);
    up.len() == n
        && all.len() == n
        && up.iter().all(|t| {
            t["spec"]["ports"][0]["hostPort"]
                .as_i64()
                .and_then(page)
                .as_deref()
                == Some(content)
        })
}

fn web(instances: usize, content: &str, deadline: u64) -> String {
    format!(
        r#"apiVersion: drover.dev/v1alpha1
kind: App
metadata:
  name: web
spec:
  instances: {instances}
  container:
    cmd: "mkdir -p www && echo {content} > www/index.html && exec busybox httpd -f -p $PORT0 -h www"
  resources: {{cpus: 0.25, memMiB: 16}}
  ports:
    - name: http
  healthChecks:
    - http: {{portName: http, path: /index.html}}
      delaySeconds: 0
      intervalSeconds: 1
      timeoutSeconds: 5
      gracePeriodSeconds: 3
      maxConsecutiveFailures: 3
  killGracePeriodSeconds: 2
  backoff: {{seconds: 0.5, factor: 1.0}}
  constraints:
    - [hostname, UNIQUE]
  upgradeStrategy:
    minimumHealthCapacity: 0.5
    maximumOverCapacity: 0
    progressDeadlineSeconds: {deadline}
"#
    )
}

/// A version whose tasks exit at once: never healthy.
fn broken(instances: usize, deadline: u64) -> String {
    web(instances, "v3", deadline).replace(
        "mkdir -p www && echo v3 > www/index.html && exec busybox httpd -f -p $PORT0 -h www",
        "exit 1",
    )
}

/// Samples the tasks of `app` until stopped: the smallest healthy count seen, how many
/// samples were taken, the largest count of live (not yet ended) tasks.
struct Sampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(usize, usize, usize)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(kubeconfig: PathBuf, cache: PathBuf, app: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((usize::MAX, 0, 0)));
        let (s, v, app) = (stop.clone(), seen.clone(), app.to_string());
        let thread = std::thread::spawn(move || {
            let kubectl = common::kubectl_path(None);
            while !s.load(Ordering::SeqCst) {
                let started = Instant::now();
                let out = Command::new(&kubectl)
                    .args([
                        "get",
                        "tasks",
                        "-l",
                        &format!("drover.dev/app={app}"),
                        "-o",
                        "json",
                        "--cache-dir",
                    ])
                    .arg(&cache)
                    .env("KUBECONFIG", &kubeconfig)
                    .output();
                if let Ok(out) = out {
                    if let Ok(list) = serde_json::from_slice::<Value>(&out.stdout) {
                        let items = list["items"].as_array().cloned().unwrap_or_default();
                        let n = healthy(&items).len();
                        let live = items
                            .iter()
                            .filter(|t| {
                                !matches!(
                                    t["status"]["phase"].as_str(),
                                    Some("Finished" | "Failed" | "Killed" | "Lost")
                                )
                            })
                            .count();
                        if let Ok(mut g) = v.lock() {
                            if n < g.0 {
                                let brief: Vec<String> = items
                                    .iter()
                                    .map(|t| {
                                        format!(
                                            "{} {} {} healthy={} msg={}",
                                            t["metadata"]["name"],
                                            t["spec"]["version"],
                                            t["status"]["phase"],
                                            t["status"]["healthy"],
                                            t["status"]["message"]
                                        )
                                    })
                                    .collect();
                                eprintln!("sampler: {n} healthy: {brief:?}");
                            }
                            g.0 = g.0.min(n);
                            g.1 += 1;
                            g.2 = g.2.max(live);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100).saturating_sub(started.elapsed()));
            }
        });
        Sampler {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().map(|g| *g).unwrap_or((0, 0, 0))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn nodes_ready(c: &Cluster, n: usize) -> bool {
    let v = json(c, &["get", "nodes.drover.dev"]);
    v["items"].as_array().is_some_and(|items| {
        items
            .iter()
            .filter(|node| {
                node["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .count()
            == n
    })
}

/// Upgrades `web` to `content` and follows it with `drover rollout status`, sampling
/// the healthy count throughout; returns the smallest count seen.
fn upgrade(c: &Cluster, instances: usize, content: &str, deadline: u64) -> usize {
    let sampler = Sampler::start(
        c.kubeconfig.clone(),
        c.dir.path().join("sampler-cache"),
        "web",
    );
    let f = c.write("web.yaml", &web(instances, content, deadline));
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    let status = run(c, &["rollout", "status", "app/web", "--timeout", "45s"]);
    assert!(status.status.success(), "rollout status: {}", text(&status));
    assert!(
        text(&status).contains("successfully rolled out"),
        "{}",
        text(&status)
    );
    wait_until(20, &format!("{instances} tasks serving {content}"), || {
        serving(c, "web", instances, content)
    });
    let (min, samples, most) = sampler.finish();
    eprintln!(
        "upgrade to {content}: {samples} samples, at least {min} healthy, at most {most} tasks"
    );
    // Each sample is a kubectl call; on a loaded 2-core machine one may take a second,
    // and an upgrade of two or three instances lasts a few seconds.
    assert!(samples >= 3, "only {samples} samples of the healthy count");
    // maximumOverCapacity 0: never more tasks than instances.
    assert!(most <= instances, "{most} tasks at once during the upgrade");
    min
}

/// A version that never gets healthy: `rollout status` fails, the controller rolls
/// back, and `content` is served again by `instances` tasks.
fn failed_upgrade_rolls_back(c: &Cluster, instances: usize, content: &str, deadline: u64) -> usize {
    let sampler = Sampler::start(
        c.kubeconfig.clone(),
        c.dir.path().join("sampler-cache"),
        "web",
    );
    let f = c.write("web.yaml", &broken(instances, deadline));
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    let status = run(c, &["rollout", "status", "app/web", "--timeout", "45s"]);
    assert!(
        !status.status.success(),
        "rollout status succeeded: {}",
        text(&status)
    );
    assert!(text(&status).contains("rolled back"), "{}", text(&status));
    assert_eq!(
        app_field(
            c,
            "web",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "RolledBack"
    );
    // The spec holds the old template again.
    assert!(app_field(c, "web", "{.spec.container.cmd}").contains(content));
    wait_until(
        30,
        &format!("{content} served again after the rollback"),
        || serving(c, "web", instances, content),
    );
    let described = c.ok(&["describe", "app", "web"]);
    assert!(
        described.contains("ProgressDeadlineExceeded") && described.contains("RolledBack"),
        "{described}"
    );
    let history = run(c, &["rollout", "history", "app/web"]);
    assert!(history.status.success(), "{}", text(&history));
    assert!(
        text(&history).contains("rollback from revision"),
        "{}",
        text(&history)
    );
    let (min, samples, most) = sampler.finish();
    eprintln!("failed upgrade: {samples} samples, at least {min} healthy, at most {most} tasks");
    assert!(
        most <= instances,
        "{most} tasks at once during the failed upgrade"
    );
    min
}

#[test]
fn rolling_upgrade_on_three_nodes_keeps_capacity_and_rolls_back_a_bad_version() {
    let c = Cluster::full_in(
        tempfile::tempdir().expect("temp dir"),
        &["--port-range", "20500-20999"],
    );
    let (d2, d3) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let _n2 = agent(&c, "node-2", d2.path(), "21000-21499");
    let _n3 = agent(&c, "node-3", d3.path(), "21500-21999");
    wait_until(15, "3 Ready nodes", || nodes_ready(&c, 3));

    let f = c.write("web.yaml", &web(3, "v1", 10));
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_until(20, "3 healthy instances serving v1", || {
        serving(&c, "web", 3, "v1")
    });
    let nodes: BTreeSet<String> = tasks(&c, "web")
        .iter()
        .filter_map(|t| t["spec"]["nodeName"].as_str().map(str::to_string))
        .collect();
    assert_eq!(nodes.len(), 3, "one instance per node: {nodes:?}");

    // Five instances on three nodes with hostname:UNIQUE: two cannot be placed.
    c.ok(&["scale", "app/web", "--replicas=5"]);
    wait_until(10, "the reason in status", || {
        let m = app_field(
            &c,
            "web",
            "{.status.conditions[?(@.type==\"Scheduled\")].message}",
        );
        m.starts_with("0/3 nodes") && m.contains("hostname:UNIQUE")
    });
    assert_eq!(tasks(&c, "web").len(), 3);
    c.ok(&["scale", "app/web", "--replicas=3"]);
    wait_until(10, "Scheduled again", || {
        app_field(
            &c,
            "web",
            "{.status.conditions[?(@.type==\"Scheduled\")].status}",
        ) == "True"
    });

    // A new command: replaced one by one, never fewer than ⌈0.5 × 3⌉ = 2 healthy.
    let min = upgrade(&c, 3, "v2", 10);
    assert!(
        min >= 2,
        "healthy instances dropped to {min} during the upgrade"
    );
    let history = run(&c, &["rollout", "history", "app/web"]);
    assert!(history.status.success(), "{}", text(&history));
    assert_eq!(
        text(&history)
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2,
        "{}",
        text(&history)
    );

    // A version that never gets healthy: rolled back after 10 s, v2 serving again.
    let min = failed_upgrade_rolls_back(&c, 3, "v2", 10);
    assert!(
        min >= 2,
        "healthy instances dropped to {min} during the failed upgrade"
    );
}

#[test]
fn kill_9_in_the_middle_of_a_scale_to_50_leaves_exactly_50() {
    let mut c = Cluster::full();
    let f = c.write(
        "sleeper.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: sleeper\nspec:\n  instances: 1\n  container:\n    cmd: exec sleep 3600\n  resources: {cpus: 0.001, memMiB: 1}\n  killGracePeriodSeconds: 1\n",
    );
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_until(15, "the first sleeper", || {
        app_field(&c, "sleeper", "{.status.running}") == "1"
    });
    c.ok(&["scale", "app/sleeper", "--replicas=50"]);
    c.kill9_and_restart();
    let instances = |c: &Cluster| -> Vec<i64> {
        let mut v: Vec<i64> = tasks(c, "sleeper")
            .iter()
            .filter_map(|t| t["spec"]["instance"].as_i64())
            .collect();
        v.sort();
        v
    };
    wait_until(30, "50 sleepers running", || {
        app_field(&c, "sleeper", "{.status.running}") == "50"
    });
    // Stays exactly 50, instances 0..49 each once.
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let seen = instances(&c);
        assert_eq!(
            seen,
            (0..50).collect::<Vec<i64>>(),
            "instances after the restart"
        );
    }
    c.ok(&["delete", "app", "sleeper"]);
    wait_until(30, "the sleepers to go", || tasks(&c, "sleeper").is_empty());
}

#[test]
fn rollout_and_rollback_on_etcd_with_the_controller_apart() {
    let c = Cluster::on_etcd();
    let endpoint = c.etcd_endpoint().expect("an etcd endpoint");
    let controller = drover()
        .args([
            "controller",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoint,
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn drover controller");
    let _controller = Proc::new(controller);
    let (d1, d2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let _n1 = agent(&c, "etcd-node-1", d1.path(), "22000-22499");
    let _n2 = agent(&c, "etcd-node-2", d2.path(), "22500-22999");
    wait_until(15, "2 Ready nodes", || nodes_ready(&c, 2));

    let f = c.write("web.yaml", &web(2, "v1", 6));
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_until(20, "2 healthy instances serving v1", || {
        serving(&c, "web", 2, "v1")
    });
    let min = upgrade(&c, 2, "v2", 6);
    assert!(
        min >= 1,
        "healthy instances dropped to {min} during the upgrade"
    );
    let min = failed_upgrade_rolls_back(&c, 2, "v2", 6);
    assert!(
        min >= 1,
        "healthy instances dropped to {min} during the failed upgrade"
    );

    // restart: a new revision of the same template, every task replaced.
    let before: BTreeSet<String> = tasks(&c, "web")
        .iter()
        .filter_map(|t| t["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let out = run(&c, &["rollout", "restart", "app/web"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&c, &["rollout", "status", "app/web", "--timeout", "30s"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(20, "restarted tasks serving v2", || {
        let now: BTreeSet<String> = tasks(&c, "web")
            .iter()
            .filter_map(|t| t["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        now.is_disjoint(&before) && serving(&c, "web", 2, "v2")
    });
    // undo: back to the template before the restart (same command, no annotation).
    let out = run(&c, &["rollout", "undo", "app/web"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&c, &["rollout", "status", "app/web", "--timeout", "30s"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        app_field(
            &c,
            "web",
            "{.metadata.annotations.drover\\.dev/restartedAt}"
        ),
        ""
    );
    let history = text(&run(&c, &["rollout", "history", "app/web"]));
    assert!(
        history.contains("restart") && history.contains("rollback to revision"),
        "{history}"
    );
    let out = run(&c, &["rollout", "undo", "app/web", "--to-revision", "99"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("has no revision 99"), "{}", text(&out));
    c.ok(&["delete", "app", "web"]);
}

#[test]
fn an_app_waits_for_its_dependencies_to_be_available() {
    let c = Cluster::full();
    let app = |name: &str, instances: usize, deps: &str| {
        format!(
            "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  instances: {instances}\n  container:\n    cmd: exec sleep 3600\n  resources: {{cpus: 0.01, memMiB: 4}}\n  killGracePeriodSeconds: 1\n  dependencies: [{deps}]\n"
        )
    };
    let f = c.write("api.yaml", &app("api", 1, "db"));
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_until(10, "api to say it waits for db", || {
        app_field(
            &c,
            "api",
            "{.status.conditions[?(@.type==\"Scheduled\")].message}",
        ) == "waiting for dependency db (not found)"
    });
    assert!(
        tasks(&c, "api").is_empty(),
        "api got tasks before db exists"
    );
    // db with an instance that cannot be placed (hostname:UNIQUE on one node): api
    // keeps waiting, and says how far db is.
    let f = c.write(
        "db.yaml",
        &app("db", 2, "").replace(
            "  dependencies: []\n",
            "  constraints: [[hostname, UNIQUE]]\n",
        ),
    );
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_until(10, "api to report db's progress", || {
        app_field(
            &c,
            "api",
            "{.status.conditions[?(@.type==\"Scheduled\")].message}",
        ) == "waiting for dependency db (1/2 healthy)"
    });
    assert!(
        tasks(&c, "api").is_empty(),
        "api got tasks before db is available"
    );
    c.ok(&["scale", "app/db", "--replicas=1"]);
    wait_until(10, "api to run once db is available", || {
        app_field(&c, "api", "{.status.running}") == "1"
    });
    c.ok(&["delete", "app", "api", "db"]);
    wait_until(20, "the tasks to go", || {
        tasks(&c, "api").is_empty() && tasks(&c, "db").is_empty()
    });
}
