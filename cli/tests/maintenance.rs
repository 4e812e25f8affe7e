//! Maintenance windows end to end, with real binaries: `drover up` (its local agent)
//! plus a second `drover agent` for node n2, and an App of 2 instances with
//! minimumHealthCapacity 0.5, one on each node. A window scheduled in the future does
//! nothing until it starts; once open, n2 gets `Maintenance=True`, its task is replaced
//! on the local node and nothing new lands on n2; `--clear` makes it schedulable again.

mod common;

use std::process::Output;

use common::agents::{self, wait_until, Proc};
use common::{drover, Cluster};
use serde_json::Value;

const AGENT_TOKEN: &str = "agent-token-for-n2-in-maintenance-test";

fn cluster() -> Cluster {
    let dir = agents::data_dir_with_tokens(
        "admin-token-for-maintenance-test",
        AGENT_TOKEN,
        "system:node:n2",
        "n2",
    );
    Cluster::full_in(dir, &[])
}

/// Agent n2 (killed with its tasks on drop), then its data directory.
fn start_agent2(c: &Cluster) -> (Proc, tempfile::TempDir) {
    let data = tempfile::tempdir().expect("agent dir");
    let child = agents::spawn_agent(
        c,
        AGENT_TOKEN,
        "n2",
        data.path(),
        &["--heartbeat-seconds", "0.5"],
    );
    let guard = Proc::agent(child, data.path());
    wait_until(15, "node n2 Ready", || agents::node_ready(c, "n2"));
    (guard, data)
}

/// The local agent's node: the one that is not n2.
fn local_node(c: &Cluster) -> String {
    let mut name = String::new();
    wait_until(15, "the local node to register", || {
        let out = c.ok(&["get", "nodes.drover.dev", "-o", "name"]);
        name = out
            .lines()
            .map(|l| l.rsplit('/').next().unwrap_or_default().to_string())
            .find(|n| n != "n2")
            .unwrap_or_default();
        !name.is_empty() && agents::node_ready(c, &name)
    });
    name
}

fn node_json(c: &Cluster, node: &str) -> Value {
    let out = c.kubectl(&["get", "nodes.drover.dev", node, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The Maintenance condition of `node`: (status, reason, message), empty when absent.
fn maintenance(c: &Cluster, node: &str) -> (String, String, String) {
    let v = node_json(c, node);
    let Some(cond) = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c["type"] == "Maintenance"))
    else {
        return Default::default();
    };
    let s = |k: &str| cond[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
}

/// The App's live tasks: (name, node, healthy, drained).
fn tasks(c: &Cluster, app: &str) -> Vec<(String, String, bool, bool)> {
    let out = c.kubectl(&[
        "get",
        "tasks",
        "-l",
        &format!("drover.dev/app={app}"),
        "-o",
        "json",
    ]);
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return Vec::new();
    };
    let s = |t: &Value, p: &str| {
        t.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|t| {
            !matches!(
                s(t, "/status/phase").as_str(),
                "Finished" | "Failed" | "Killed" | "Lost"
            )
        })
        .map(|t| {
            (
                s(t, "/metadata/name"),
                s(t, "/spec/nodeName"),
                s(t, "/status/phase") == "Running"
                    && t.pointer("/status/healthy").and_then(Value::as_bool) == Some(true),
                t.pointer("/metadata/annotations/drover.dev~1drain")
                    .and_then(Value::as_str)
                    == Some("true"),
            )
        })
        .collect()
}

/// Nodes of the App's healthy tasks, sorted.
fn healthy_on(c: &Cluster, app: &str) -> Vec<String> {
    let mut nodes: Vec<String> = tasks(c, app)
        .into_iter()
        .filter(|t| t.2)
        .map(|t| t.1)
        .collect();
    nodes.sort();
    nodes
}

/// An App of `sleep` tasks with an exec health check (no host ports: both agents share
/// this machine's port range).
fn app(name: &str, instances: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  instances: {instances}\n  container:\n    cmd: exec sleep 600\n  resources: {{cpus: 0.01, memMiB: 8}}\n  killGracePeriodSeconds: 1\n  upgradeStrategy: {{minimumHealthCapacity: 0.5}}\n  healthChecks:\n    - exec: {{command: [\"true\"]}}\n      delaySeconds: 0\n      intervalSeconds: 1\n      gracePeriodSeconds: 5\n{extra_spec}"
    )
}

fn apply(c: &Cluster, name: &str, manifest: &str) {
    let f = c.write(&format!("{name}.yaml"), manifest);
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
}

fn drover_ok(c: &Cluster, args: &[&str]) -> String {
    let out = drover(c, args);
    assert_success(args, &out);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_success(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "drover {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_maintenance_window_drains_the_node_and_keeps_it_unschedulable_until_cleared() {
    let c = cluster();
    let local = local_node(&c);
    let (_agent, _data) = start_agent2(&c);
    apply(&c, "mw", &app("mw", 2, ""));
    let mut both = vec![local.clone(), "n2".to_string()];
    both.sort();
    wait_until(20, "one healthy task per node", || {
        healthy_on(&c, "mw") == both
    });
    let on_n2 = tasks(&c, "mw")
        .into_iter()
        .find(|t| t.1 == "n2")
        .expect("a task on n2")
        .0;

    // A window that opens in 4 s: no effect until then.
    let start = (chrono::Utc::now() + chrono::Duration::seconds(4))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let out = drover_ok(
        &c,
        &[
            "node",
            "maintenance",
            "n2",
            "--start",
            &start,
            "--duration",
            "1h",
            "--reason",
            "kernel upgrade",
        ],
    );
    assert!(out.contains("maintenance scheduled from"), "{out}");
    let window = &node_json(&c, "n2")["spec"]["maintenance"];
    assert_eq!(window[0]["start"], start.as_str(), "{window}");
    assert_eq!(window[0]["reason"], "kernel upgrade", "{window}");
    let opens = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < opens {
        assert_eq!(
            maintenance(&c, "n2").0,
            "",
            "condition before the window opens"
        );
        let now = tasks(&c, "mw");
        assert!(
            now.iter().any(|t| t.0 == on_n2 && !t.3),
            "the task on n2 ({on_n2}) was touched before the window opened: {now:?}\n{:?}",
            node_json(&c, "n2")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Open: the condition, and the task on n2 replaced on the local node.
    // (Read once each time: the agent's heartbeat rewrites the Node's conditions whole,
    // so the condition is gone for the moment until the controller writes it back.)
    let mut condition = Default::default();
    wait_until(10, "the Maintenance condition on n2", || {
        condition = maintenance(&c, "n2");
        condition.0 == "True"
    });
    let (_, reason, message) = condition;
    assert_eq!(reason, "MaintenanceWindow");
    assert!(
        message.starts_with("kernel upgrade, until "),
        "condition message: {message}"
    );
    let mut table = String::new();
    wait_until(10, "drover get nodes to show the window", || {
        table = drover_ok(&c, &["get", "nodes"]);
        table.contains("kernel upgrade, until")
    });
    assert!(table.contains("MAINTENANCE"), "drover get nodes:\n{table}");
    wait_until(20, "both healthy tasks on the local node", || {
        healthy_on(&c, "mw") == vec![local.clone(), local.clone()]
            && tasks(&c, "mw").iter().all(|t| t.1 != "n2")
    });
    assert!(tasks(&c, "mw").iter().all(|t| t.0 != on_n2));
    // The agent's heartbeats rewrite the Node status: the condition must outlive them.
    let beat = |c: &Cluster| {
        node_json(c, "n2")
            .pointer("/status/lastHeartbeatTime")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let first = beat(&c);
    wait_until(
        10,
        "a later heartbeat with the condition still there",
        || {
            let later = beat(&c);
            !later.is_empty() && later != first && maintenance(&c, "n2").0 == "True"
        },
    );

    // Nothing new lands on n2: a third instance goes to the local node too.
    apply(&c, "mw", &app("mw", 3, ""));
    wait_until(20, "three healthy tasks on the local node", || {
        healthy_on(&c, "mw") == vec![local.clone(), local.clone(), local.clone()]
    });
    // An App that may only run on n2 stays unplaced, and says why.
    apply(
        &c,
        "pinned",
        &app(
            "pinned",
            1,
            "  constraints:\n    - [hostname, CLUSTER, n2]\n",
        ),
    );
    wait_until(10, "the pinned App to say why it is not placed", || {
        let out = c.kubectl(&["get", "app", "pinned", "-o", "json"]);
        String::from_utf8_lossy(&out.stdout).contains("unschedulable")
    });
    assert!(
        tasks(&c, "pinned").is_empty(),
        "a task was placed on a node in maintenance: {:?}",
        tasks(&c, "pinned")
    );

    // Cleared: the condition goes and n2 takes tasks again.
    let out = drover_ok(&c, &["node", "maintenance", "n2", "--clear"]);
    assert!(out.contains("cleared"), "{out}");
    wait_until(10, "the Maintenance condition to clear", || {
        maintenance(&c, "n2").0.is_empty()
    });
    wait_until(20, "the pinned App's task healthy on n2", || {
        healthy_on(&c, "pinned") == vec!["n2".to_string()]
    });
}

#[test]
fn maintenance_arguments_are_checked() {
    let c = Cluster::up();
    let out = drover(&c, &["node", "maintenance", "nope", "--duration", "1h"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node \"nope\" not found"), "{err}");
    let out = drover(
        &c,
        &[
            "node",
            "maintenance",
            "nope",
            "--start",
            "soon",
            "--duration",
            "1h",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--start"), "{err}");
    let out = drover(&c, &["node", "maintenance", "nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--duration"), "{err}");
}
