//! Level-1 fairness end to end, with real binaries: `drover up --no-agent` plus agents
//! advertising a known size (`--cpus`, `--mem-mib`), two roles whose Apps of
//! `sleep 3600` process tasks each ask for more than the cluster holds. The Apps are
//! created before any node exists, so neither can grab the cluster first; the test then
//! reads the bound Tasks and checks what weighted DRF and Quota promise: the cluster
//! ends full for both shapes, dominant shares within 10 % (or ~2× with weight 2), a
//! memMiB limit caps its role with `status.used` and a condition saying why; what one
//! role frees goes to the other, which was held back.

mod common;

use common::agents::{spawn_agent, wait_until, Proc};
use common::Cluster;
use serde_json::Value;

/// Task shapes: role `a` is cpu-heavy, role `b` memory-heavy.
const A: (f64, i64) = (1.0, 256);
const B: (f64, i64) = (0.25, 1024);

const APPS: &str = r#"apiVersion: drover.dev/v1alpha1
kind: App
metadata: {name: a}
spec:
  role: a
  instances: 20
  container: {cmd: "sleep 3600"}
  resources: {cpus: 1, memMiB: 256}
---
apiVersion: drover.dev/v1alpha1
kind: App
metadata: {name: b}
spec:
  role: b
  instances: 20
  container: {cmd: "sleep 3600"}
  resources: {cpus: 0.25, memMiB: 1024}
"#;

/// `drover up` (API, store, controllers; no local agent) with an agent token per node.
fn cluster(nodes: &[&str]) -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut tokens = "- token: admin-token-drf\n  user: admin\n  role: admin\n".to_string();
    for n in nodes {
        tokens.push_str(&format!(
            "- token: agent-token-drf-{n}\n  user: system:node:{n}\n  role: agent\n  node: {n}\n"
        ));
    }
    std::fs::write(dir.path().join("tokens.yaml"), tokens).expect("write tokens.yaml");
    Cluster::full_in(dir, &["--no-agent"])
}

/// An agent that dies (with its tasks) when the test ends, and its data directory.
struct Agent {
    _guard: Proc,
    _data: tempfile::TempDir,
}

/// One agent per node, each advertising `cpus` and `mem_mib`; waits until all are Ready.
fn start_agents(c: &Cluster, nodes: &[&str], cpus: u32, mem_mib: u32) -> Vec<Agent> {
    let agents: Vec<Agent> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let data = tempfile::tempdir().expect("agent dir");
            let range = format!("{}-{}", 33000 + i * 100, 33099 + i * 100);
            let (cpus, mem) = (cpus.to_string(), mem_mib.to_string());
            let child = spawn_agent(
                c,
                &format!("agent-token-drf-{n}"),
                n,
                data.path(),
                &[
                    "--cpus",
                    &cpus,
                    "--mem-mib",
                    &mem,
                    "--port-range",
                    &range,
                    "--heartbeat-seconds",
                    "1",
                ],
            );
            Agent {
                _guard: Proc::agent(child, data.path()),
                _data: data,
            }
        })
        .collect();
    for n in nodes {
        wait_until(20, &format!("node {n} Ready"), || {
            common::agents::node_ready(c, n)
        });
    }
    agents
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let out = c.kubectl(&[args, &["-o", "json"]].concat());
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What the cluster holds: nodes (name, allocatable cpus, memMiB) and active tasks
/// (app, node, cpus, memMiB, phase).
struct View {
    nodes: Vec<(String, f64, i64)>,
    tasks: Vec<(String, String, f64, i64, String)>,
}

fn view(c: &Cluster) -> View {
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let f = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or_default();
    let i = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or_default();
    let items = |v: Value| v["items"].as_array().cloned().unwrap_or_default();
    let nodes = items(json(c, &["get", "nodes.drover.dev"]))
        .iter()
        .map(|n| {
            (
                s(n, "/metadata/name"),
                f(n, "/status/allocatable/cpus"),
                i(n, "/status/allocatable/memMiB"),
            )
        })
        .collect();
    let tasks = items(json(c, &["get", "tasks.drover.dev"]))
        .iter()
        .map(|t| {
            (
                s(t, "/spec/owner/name"),
                s(t, "/spec/nodeName"),
                f(t, "/spec/resources/cpus"),
                i(t, "/spec/resources/memMiB"),
                s(t, "/status/phase"),
            )
        })
        .filter(|t| !matches!(t.4.as_str(), "Finished" | "Failed" | "Killed" | "Lost"))
        .collect();
    View { nodes, tasks }
}

impl View {
    /// Whether an instance of `shape` fits on some node.
    fn fits(&self, shape: (f64, i64)) -> bool {
        self.nodes.iter().any(|(name, cpus, mem)| {
            let on = self.tasks.iter().filter(|t| &t.1 == name);
            let used_cpus: f64 = on.clone().map(|t| t.2).sum();
            let used_mem: i64 = on.map(|t| t.3).sum();
            cpus - used_cpus + 1e-9 >= shape.0 && mem - used_mem >= shape.1
        })
    }

    fn count(&self, app: &str) -> usize {
        self.tasks.iter().filter(|t| t.0 == app).count()
    }

    /// The dominant share of `app`'s tasks of the whole cluster.
    fn share(&self, app: &str) -> f64 {
        let total_cpus: f64 = self.nodes.iter().map(|n| n.1).sum();
        let total_mem: i64 = self.nodes.iter().map(|n| n.2).sum();
        let mine = self.tasks.iter().filter(|t| t.0 == app);
        let cpus: f64 = mine.clone().map(|t| t.2).sum();
        let mem: i64 = mine.map(|t| t.3).sum();
        (cpus / total_cpus).max(mem as f64 / total_mem as f64)
    }

    fn all_running(&self) -> bool {
        self.tasks.iter().all(|t| t.4 == "Running")
    }
}

/// Waits until every task runs and `full` holds (e.g. neither shape fits anywhere);
/// returns that view.
fn wait_full(c: &Cluster, seconds: u64, full: impl Fn(&View) -> bool) -> View {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let v = view(c);
        if !v.tasks.is_empty() && full(&v) && v.all_running() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {seconds} s waiting for the cluster to fill up with running \
             tasks; a {:?}, b {:?}\n{}",
            scheduled_message(c, "a"),
            scheduled_message(c, "b"),
            describe(&v)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn scheduled_message(c: &Cluster, app: &str) -> String {
    let v = json(c, &["get", "apps.drover.dev", app]);
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c["type"] == "Scheduled"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn describe(v: &View) -> String {
    format!("nodes {:?}\ntasks {:?}", v.nodes, v.tasks)
}

#[test]
fn two_roles_wanting_more_than_the_cluster_end_with_equal_dominant_shares() {
    let nodes = ["d1", "d2"];
    let c = cluster(&nodes);
    c.ok(&[
        "apply",
        "-f",
        c.write("apps.yaml", APPS).to_str().expect("utf-8"),
    ]);
    let _agents = start_agents(&c, &nodes, 4, 4096);
    let v = wait_full(&c, 30, |v| !v.fits(A) && !v.fits(B));
    let (a, b) = (v.share("a"), v.share("b"));
    assert!(
        (a - b).abs() <= 0.1 * a.max(b),
        "dominant shares a {a:.3} b {b:.3} differ by more than 10 %\n{}",
        describe(&v)
    );
    // 8 cpus, 8192 MiB: 6 of each is the DRF allocation (both at 0.75).
    assert_eq!((v.count("a"), v.count("b")), (6, 6), "{}", describe(&v));
    wait_until(
        10,
        "App b's status to say it waits for its fair share",
        || scheduled_message(&c, "b").contains("fair share (DRF)"),
    );
    // What a frees goes to b, which was held back, without any change to b: 8 × 1024
    // MiB fill the two nodes' memory.
    c.ok(&["delete", "apps.drover.dev", "a"]);
    let v = wait_full(&c, 20, |v| v.count("a") == 0 && v.count("b") == 8);
    assert!(!v.fits(B), "{}", describe(&v));
}

#[test]
fn a_quota_limit_caps_its_role_and_the_other_role_gets_the_rest() {
    let nodes = ["q1", "q2"];
    let c = cluster(&nodes);
    let quota = "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata: {name: b}\nspec: {role: b, limit: {memMiB: 2048}}\n";
    c.ok(&[
        "apply",
        "-f",
        c.write("quota.yaml", quota).to_str().expect("utf-8"),
    ]);
    c.ok(&[
        "apply",
        "-f",
        c.write("apps.yaml", APPS).to_str().expect("utf-8"),
    ]);
    let _agents = start_agents(&c, &nodes, 4, 4096);
    let b_mem = |v: &View| -> i64 { v.tasks.iter().filter(|t| t.0 == "b").map(|t| t.3).sum() };
    // Full for a; b stops at its limit (more of b would fit, so the limit is what
    // holds it).
    let v = wait_full(&c, 30, |v| !v.fits(A) && b_mem(v) >= 2048);
    assert!(
        v.fits(B),
        "b is held by its limit, not by room\n{}",
        describe(&v)
    );
    let b_mem = b_mem(&v);
    assert_eq!(b_mem, 2048, "b holds its limit exactly\n{}", describe(&v));
    assert!(v.count("a") >= 6, "a gets the rest\n{}", describe(&v));
    // The Quota's status: what b's tasks hold, and why b gets no more.
    let mut q = Value::Null;
    wait_until(
        10,
        "the Quota's status to show b's usage and the limit",
        || {
            q = json(&c, &["get", "quotas.drover.dev", "b"]);
            let held = q
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|c| c["type"] == "LimitReached"))
                .is_some_and(|c| {
                    c["status"] == "True"
                        && c["message"].as_str().is_some_and(|m| {
                            m.contains("memMiB 2048") && m.contains("App default/b")
                        })
                });
            q.pointer("/status/used/memMiB").and_then(Value::as_i64) == Some(2048)
                && q.pointer("/status/used/cpus").and_then(Value::as_f64) == Some(0.5)
                && held
        },
    );
    wait_until(10, "App b's status to name the quota limit", || {
        scheduled_message(&c, "b").contains("role `b` at its quota limit memMiB 2048")
    });
}

/// A Quota guarantee is set aside while its role asks for nothing: role a gets only
/// what is free beyond it and its App says why; role prod, applied later, finds its
/// guarantee free.
#[test]
fn a_quota_guarantee_is_kept_free_until_its_role_asks() {
    let nodes = ["g1"];
    let c = cluster(&nodes);
    let quota = "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata: {name: prod}\nspec: {role: prod, guarantee: {cpus: 1.5}}\n";
    c.ok(&[
        "apply",
        "-f",
        c.write("quota.yaml", quota).to_str().expect("utf-8"),
    ]);
    let app_a = APPS.split("---").next().expect("App a");
    c.ok(&[
        "apply",
        "-f",
        c.write("a.yaml", app_a).to_str().expect("utf-8"),
    ]);
    let _agents = start_agents(&c, &nodes, 4, 4096);
    // 4 cpus, 1.5 set aside: two of a's 1-cpu tasks, not three.
    let v = wait_full(&c, 30, |v| v.count("a") >= 2);
    wait_until(10, "App a's status to name the guarantee", || {
        scheduled_message(&c, "a").contains("set aside for the quota guarantee of role `prod`")
    });
    assert_eq!(view(&c).count("a"), 2, "{}", describe(&v));
    let prod = "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata: {name: prod}\nspec:\n  role: prod\n  instances: 3\n  container: {cmd: \"sleep 3600\"}\n  resources: {cpus: 0.5, memMiB: 64}\n";
    c.ok(&[
        "apply",
        "-f",
        c.write("prod.yaml", prod).to_str().expect("utf-8"),
    ]);
    let v = wait_full(&c, 30, |v| v.count("prod") == 3);
    assert_eq!(v.count("a"), 2, "{}", describe(&v));
}

#[test]
fn a_role_of_weight_two_gets_about_twice_the_dominant_share() {
    let nodes = ["w1"];
    let c = cluster(&nodes);
    let quota = "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata: {name: a}\nspec: {role: a, weight: 2}\n";
    c.ok(&[
        "apply",
        "-f",
        c.write("quota.yaml", quota).to_str().expect("utf-8"),
    ]);
    c.ok(&[
        "apply",
        "-f",
        c.write("apps.yaml", APPS).to_str().expect("utf-8"),
    ]);
    let bad = "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata: {name: bad}\nspec: {role: a, weight: -1}\n";
    let out = c.kubectl(&[
        "apply",
        "-f",
        c.write("bad.yaml", bad).to_str().expect("utf-8"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("spec.weight") && err.contains("positive"),
        "{err}"
    );
    let _agents = start_agents(&c, &nodes, 8, 8192);
    let v = wait_full(&c, 30, |v| !v.fits(A) && !v.fits(B));
    let ratio = v.share("a") / v.share("b");
    assert!(
        (1.5..=2.5).contains(&ratio),
        "a's share is {ratio:.2}× b's, not about 2×\n{}",
        describe(&v)
    );
}

#[test]
fn agent_resource_overrides_must_be_positive() {
    for (flag, value) in [("--cpus", "0"), ("--cpus", "NaN"), ("--mem-mib", "0")] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["agent", "--server", "https://127.0.0.1:9", "--token", "t"])
            .arg("--data-dir")
            .arg(dir.path())
            .args([flag, value])
            .output()
            .expect("run drover agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(&format!("{flag} must be a positive")),
            "{flag} {value}: {err}"
        );
    }
}
