//! Nodes end to end, with real binaries: `drover up` (short node lease and lost
//! timeouts) plus a second `drover agent` with another host name. An agent killed for
//! good → its Node NotReady with the reason, its task Lost and replaced on the node
//! that is left; the agent back → Ready again and the stale task's process killed.
//! `drover node cordon` keeps new tasks off a node; `drover node drain` moves them
//! without taking the App below minimumHealthCapacity. Garbage collection: deleting an
//! App kills its tasks; `--cascade=orphan` leaves them; finalizers hold a deletion.

mod common;

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::agents::{self, checkpointed_pids, group_alive, wait_until, Proc};
use common::{drover, Cluster};
use serde_json::Value;

const AGENT_TOKEN: &str = "agent-token-for-n2-in-nodes-test";

/// The second agent (killed with every process group the test saw and every task it
/// checkpointed, even on panic), then its data directory.
struct Agent2 {
    guard: Proc,
    data: tempfile::TempDir,
}

/// `drover up` with `extra` flags and a token for agent n2.
fn cluster(extra: &[&str]) -> Cluster {
    let dir = agents::data_dir_with_tokens(
        "admin-token-for-nodes-test",
        AGENT_TOKEN,
        "system:node:n2",
        "n2",
    );
    Cluster::full_in(dir, extra)
}

fn spawn_agent2(c: &Cluster, data: &std::path::Path) -> Child {
    agents::spawn_agent(c, AGENT_TOKEN, "n2", data, &["--heartbeat-seconds", "0.5"])
}

fn start_agent2(c: &Cluster) -> Agent2 {
    let data = tempfile::tempdir().expect("agent dir");
    let child = spawn_agent2(c, data.path());
    let agent = Agent2 {
        guard: Proc::agent(child, data.path()),
        data,
    };
    wait_until(15, "node n2 Ready", || ready(c, "n2").0 == "True");
    agent
}

fn json(c: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&c.ok(&all)).expect("kubectl printed JSON")
}

/// The Ready condition of a node: (status, reason, message).
fn ready(c: &Cluster, node: &str) -> (String, String, String) {
    let out = c.kubectl(&["get", "nodes.drover.dev", node, "-o", "json"]);
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        return Default::default();
    };
    let Some(cond) = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
    else {
        return Default::default();
    };
    let s = |k: &str| cond[k].as_str().unwrap_or_default().to_string();
    (s("status"), s("reason"), s("message"))
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
        !name.is_empty() && ready(c, &name).0 == "True"
    });
    name
}

/// The App's tasks: (name, node, phase, healthy, pid).
fn tasks(c: &Cluster, app: &str) -> Vec<(String, String, String, bool, i32)> {
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
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| {
            (
                t.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                t.pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                t.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                t.pointer("/status/healthy").and_then(Value::as_bool) == Some(true),
                t.pointer("/status/pid")
                    .and_then(Value::as_i64)
                    .unwrap_or_default() as i32,
            )
        })
        .collect()
}

fn healthy_on(c: &Cluster, app: &str) -> Vec<String> {
    let mut nodes: Vec<String> = tasks(c, app)
        .into_iter()
        .filter(|t| t.2 == "Running" && t.3)
        .map(|t| t.1)
        .collect();
    nodes.sort();
    nodes
}

/// An App of `sleep` tasks with an exec health check (no host ports: both agents share
/// this machine's port range).
fn app(name: &str, instances: u32, extra_spec: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  instances: {instances}\n  container:\n    cmd: exec sleep 600\n  resources: {{cpus: 0.01, memMiB: 8}}\n  killGracePeriodSeconds: 1\n  healthChecks:\n    - exec: {{command: [\"true\"]}}\n      delaySeconds: 0\n      intervalSeconds: 1\n      gracePeriodSeconds: 5\n{extra_spec}"
    )
}

fn apply(c: &Cluster, name: &str, manifest: &str) {
    let f = c.write(&format!("{name}.yaml"), manifest);
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
}

fn drover_ok(c: &Cluster, args: &[&str]) -> String {
    let out = drover(c, args);
    assert!(
        out.status.success(),
        "drover {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn events_with_reason(c: &Cluster, reason: &str) -> Vec<Value> {
    json(c, &["get", "events.drover.dev", "-A"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

#[test]
fn a_dead_agent_makes_its_node_not_ready_and_its_task_lost_and_replaced() {
    let c = cluster(&["--node-lease-seconds", "3", "--node-lost-seconds", "3"]);
    let local = local_node(&c);
    let mut agent = start_agent2(&c);
    apply(&c, "lost", &app("lost", 2, ""));
    wait_until(20, "one healthy task per node", || {
        healthy_on(&c, "lost") == {
            let mut v = vec![local.clone(), "n2".to_string()];
            v.sort();
            v
        }
    });
    // A Task no App owns, on n2: Lost too, and nothing deletes it, so the agent itself
    // must kill it when it comes back.
    let bare = c.write(
        "bare.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: bare-0\nspec:\n  nodeName: n2\n  container:\n    command: [\"sleep\", \"600\"]\n  killGracePeriodSeconds: 1\n",
    );
    c.ok(&["apply", "-f", bare.to_str().expect("utf-8")]);
    let bare_field = |path: &str| {
        let out = c.kubectl(&["get", "task", "bare-0", "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(15, "the bare task to run", || {
        bare_field("{.status.phase}") == "Running"
    });
    let bare_pid: i32 = bare_field("{.status.pid}").parse().expect("a pid");
    agent.guard.groups.push(bare_pid);
    let on_n2 = tasks(&c, "lost")
        .into_iter()
        .find(|t| t.1 == "n2")
        .expect("a task on n2");
    let (stale_task, stale_pid) = (on_n2.0.clone(), on_n2.4);
    assert!(stale_pid > 0 && group_alive(stale_pid));
    agent.guard.groups.push(stale_pid);

    // kill -9 for good: nothing heartbeats for n2 any more.
    let mut child = agent.guard.child.take().expect("the agent runs");
    child.kill().expect("kill -9 the agent");
    let _ = child.wait();
    wait_until(15, "node n2 NotReady", || ready(&c, "n2").0 == "False");
    let (_, reason, message) = ready(&c, "n2");
    assert_eq!(reason, "NodeHeartbeatExpired");
    assert!(message.contains("last heartbeat at"), "{message}");
    assert!(!events_with_reason(&c, "NodeNotReady").is_empty());

    // Lost after the lost timeout, then replaced on the node that is left.
    wait_until(20, "the task on n2 to be marked Lost", || {
        events_with_reason(&c, "NodeLost")
            .iter()
            .any(|e| e["involvedObject"]["name"] == stale_task.as_str())
    });
    let lost = events_with_reason(&c, "NodeLost");
    let message = lost[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("node n2"), "{message}");
    wait_until(20, "two healthy tasks on the local node", || {
        healthy_on(&c, "lost") == vec![local.clone(), local.clone()]
    });
    assert!(
        tasks(&c, "lost").iter().all(|t| t.0 != stale_task),
        "the Lost task is gone"
    );
    wait_until(10, "the bare task to be Lost", || {
        bare_field("{.status.phase}") == "Lost"
    });
    assert_eq!(bare_field("{.status.reason}"), "NodeLost");
    // The agent is dead, so their processes still run…
    assert!(group_alive(stale_pid));
    assert!(group_alive(bare_pid));

    // …until the agent comes back: Ready again, and the stale task killed.
    agent.guard.child = Some(spawn_agent2(&c, agent.data.path()));
    wait_until(15, "node n2 Ready again", || ready(&c, "n2").0 == "True");
    wait_until(15, "the stale tasks' processes to be killed", || {
        !group_alive(stale_pid) && !group_alive(bare_pid)
    });
    assert_eq!(healthy_on(&c, "lost"), vec![local.clone(), local]);
}

#[test]
fn cordon_keeps_new_tasks_off_and_drain_moves_them_within_minimum_health() {
    let c = cluster(&[]);
    let local = local_node(&c);
    let agent = start_agent2(&c);
    let out = drover_ok(&c, &["node", "cordon", &local]);
    assert!(out.contains("cordoned"), "{out}");
    let node = json(&c, &["get", "nodes.drover.dev", &local]);
    assert_eq!(node["spec"]["unschedulable"], true);
    // Everything goes to n2 while the local node is cordoned.
    apply(
        &c,
        "web",
        // Replacements take 2 s to pass their first check: the drain must wait for them.
        &app(
            "web",
            2,
            "  upgradeStrategy: {minimumHealthCapacity: 1.0}\n",
        )
        .replace("delaySeconds: 0", "delaySeconds: 2"),
    );
    wait_until(20, "two healthy tasks on n2", || {
        healthy_on(&c, "web") == vec!["n2".to_string(), "n2".to_string()]
    });
    drover_ok(&c, &["node", "uncordon", &local]);
    let node = json(&c, &["get", "nodes.drover.dev", &local]);
    assert_eq!(node["spec"]["unschedulable"], false);

    // Drain n2, sampling the healthy count all along.
    let done = Arc::new(AtomicBool::new(false));
    let lowest = Arc::new(AtomicUsize::new(usize::MAX));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, lowest, samples) = (done.clone(), lowest.clone(), samples.clone());
        let kubeconfig = c.kubeconfig.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let out = Command::new(common::kubectl_path(None))
                    .args(["get", "tasks", "-l", "drover.dev/app=web", "-o", "json"])
                    .env("KUBECONFIG", &kubeconfig)
                    .output();
                let Ok(out) = out else { continue };
                let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
                    continue;
                };
                let healthy = v["items"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|t| {
                                t["status"]["phase"] == "Running" && t["status"]["healthy"] == true
                            })
                            .count()
                    })
                    .unwrap_or(0);
                lowest.fetch_min(healthy, Ordering::SeqCst);
                samples.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let out = drover_ok(&c, &["node", "drain", "n2", "--timeout", "40s"]);
    done.store(true, Ordering::SeqCst);
    let _ = sampler.join();
    assert!(out.contains("draining node n2: 0/2 tasks moved"), "{out}");
    assert!(out.contains("draining node n2: 2/2 tasks moved"), "{out}");
    assert!(out.contains("node/n2 drained"), "{out}");
    assert!(
        samples.load(Ordering::SeqCst) >= 3,
        "sampled the drain only {} times:\n{out}",
        samples.load(Ordering::SeqCst)
    );
    assert!(
        lowest.load(Ordering::SeqCst) >= 2,
        "healthy tasks dropped to {} during the drain (minimum 2)",
        lowest.load(Ordering::SeqCst)
    );
    assert_eq!(healthy_on(&c, "web"), vec![local.clone(), local]);
    let node = json(&c, &["get", "nodes.drover.dev", "n2"]);
    assert_eq!(node["spec"]["unschedulable"], true, "drain cordons");
    // The drained processes are gone.
    wait_until(10, "the drained processes to exit", || {
        checkpointed_pids(&agent.data.path().join("tasks"))
            .iter()
            .all(|p| !group_alive(*p))
    });
}

#[test]
fn drain_of_an_unknown_node_says_so() {
    let c = Cluster::up();
    let out = drover(&c, &["node", "drain", "nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("node \"nope\" not found"), "{err}");
}

#[test]
fn deleting_an_app_kills_its_tasks_and_orphan_leaves_them() {
    let c = Cluster::full();
    // Background (drover delete): tasks deleted, processes killed.
    apply(&c, "gone", &app("gone", 1, ""));
    wait_until(15, "a healthy task", || healthy_on(&c, "gone").len() == 1);
    let pid = tasks(&c, "gone")[0].4;
    assert!(pid > 0 && group_alive(pid));
    drover_ok(&c, &["delete", "app", "gone"]);
    wait_until(10, "its tasks to go", || tasks(&c, "gone").is_empty());
    wait_until(10, "its process to die", || !group_alive(pid));

    // Orphan: the App goes, its Task stays (without the owner reference) and runs on.
    apply(&c, "kept", &app("kept", 1, ""));
    wait_until(15, "a healthy task", || healthy_on(&c, "kept").len() == 1);
    let (task, pid) = {
        let t = &tasks(&c, "kept")[0];
        (t.0.clone(), t.4)
    };
    c.ok(&["delete", "app", "kept", "--cascade=orphan"]);
    wait_until(10, "the App to go", || {
        !c.kubectl(&["get", "app", "kept"]).status.success()
    });
    wait_until(10, "the owner reference to be removed", || {
        json(&c, &["get", "task", &task])["metadata"]["ownerReferences"].is_null()
    });
    // Give the collector a few passes: the task must still be there.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tasks(&c, "kept").len(), 1);
    assert!(group_alive(pid));
    c.ok(&["delete", "task", &task]);
    wait_until(10, "the orphan's process to die once deleted", || {
        !group_alive(pid)
    });

    // Foreground: kubectl waits until the tasks and then the App are gone.
    apply(&c, "fg", &app("fg", 1, ""));
    wait_until(15, "a healthy task", || healthy_on(&c, "fg").len() == 1);
    let pid = tasks(&c, "fg")[0].4;
    c.ok(&[
        "delete",
        "app",
        "fg",
        "--cascade=foreground",
        "--timeout=20s",
    ]);
    assert!(tasks(&c, "fg").is_empty());
    wait_until(10, "its process to die", || !group_alive(pid));
}

#[test]
fn a_finalizer_holds_a_deletion_until_it_is_removed() {
    let c = Cluster::up();
    let f = c.write(
        "held.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\nspec:\n  instances: 0\n  container: {cmd: sleep 1}\n",
    );
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    c.ok(&["delete", "app", "held", "--wait=false"]);
    let v = json(&c, &["get", "app", "held"]);
    assert!(v["metadata"]["deletionTimestamp"].is_string(), "{v}");
    c.ok(&[
        "patch",
        "app",
        "held",
        "--type=merge",
        "-p",
        "{\"metadata\":{\"finalizers\":null}}",
    ]);
    wait_until(5, "the App to go with its last finalizer", || {
        !c.kubectl(&["get", "app", "held"]).status.success()
    });
}
