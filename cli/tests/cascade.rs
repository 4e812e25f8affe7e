//! `drover delete --cascade=background|foreground|orphan` end to end (`drover up` with
//! its local agent): background deletes the App and then its Tasks; foreground deletes
//! the Tasks before the App disappears; orphan leaves the Tasks running without their
//! ownerReference. (kubectl's `--cascade` is covered in nodes.rs.)

mod common;

use std::time::Duration;

use common::agents::{group_alive, wait_until, Proc};
use common::{drover, Cluster};
use serde_json::Value;

/// The App's tasks: (name, pid, has an ownerReference).
fn tasks(c: &Cluster, app: &str) -> Vec<(String, i32, bool)> {
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
                t.pointer("/status/pid")
                    .and_then(Value::as_i64)
                    .unwrap_or_default() as i32,
                t.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty()),
            )
        })
        .collect()
}

fn running(c: &Cluster, app: &str) -> usize {
    tasks(c, app).iter().filter(|t| t.1 > 0).count()
}

fn app_exists(c: &Cluster, app: &str) -> bool {
    c.kubectl(&["get", "app", app]).status.success()
}

/// An App of `instances` sleeping tasks, running once this returns.
fn start_app(c: &Cluster, name: &str, instances: u32) {
    let f = c.write(
        &format!("{name}.yaml"),
        &format!(
            "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  instances: {instances}\n  container:\n    cmd: exec sleep 600\n  resources: {{cpus: 0.01, memMiB: 8}}\n  killGracePeriodSeconds: 1\n"
        ),
    );
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_until(15, &format!("{instances} running tasks of {name}"), || {
        running(c, name) == instances as usize
    });
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

#[test]
fn drover_delete_cascades_background_foreground_and_orphan() {
    let c = Cluster::full();
    // Killed with the test, whatever happens: the orphan's process outlives its App.
    let mut guard = Proc {
        child: None,
        tasks: None,
        groups: Vec::new(),
    };

    // Foreground: by the time the App is gone (drover waits for that), so are its Tasks.
    start_app(&c, "fg", 2);
    let pids: Vec<i32> = tasks(&c, "fg").iter().map(|t| t.1).collect();
    guard.groups.extend(&pids);
    // Sample while it happens: never the App gone with a Task left.
    let sampler = {
        let kubeconfig = c.kubeconfig.clone();
        std::thread::spawn(move || {
            let kubectl = |args: &[&str]| {
                std::process::Command::new(common::kubectl_path(None))
                    .args(args)
                    .env("KUBECONFIG", &kubeconfig)
                    .output()
                    .expect("run kubectl")
            };
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                // Tasks first: if the App is gone after, they were gone before.
                let t = kubectl(&["get", "tasks", "-l", "drover.dev/app=fg", "-o", "name"]);
                let left = String::from_utf8_lossy(&t.stdout).lines().count();
                let a = kubectl(&["get", "app", "fg", "-o", "name"]);
                if !a.status.success() {
                    return Ok(());
                }
                if left == 0 {
                    continue;
                }
                let v = kubectl(&["get", "app", "fg", "-o", "json"]);
                let v: Value = serde_json::from_slice(&v.stdout).unwrap_or(Value::Null);
                if v.pointer("/metadata/deletionTimestamp").is_some()
                    && !v["metadata"]["finalizers"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f == "foregroundDeletion"))
                {
                    return Err(format!("App being deleted without the finalizer: {v}"));
                }
            }
            Err("the App never went".to_string())
        })
    };
    let out = drover_ok(&c, &["delete", "app/fg", "--cascade=foreground"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(!app_exists(&c, "fg"));
    assert!(
        tasks(&c, "fg").is_empty(),
        "tasks left: {:?}",
        tasks(&c, "fg")
    );
    sampler
        .join()
        .expect("sampler")
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until(10, "the foreground tasks' processes to die", || {
        pids.iter().all(|p| !group_alive(*p))
    });

    // Background (the default): the App goes at once, its Tasks after.
    start_app(&c, "bg", 1);
    let pid = tasks(&c, "bg")[0].1;
    guard.groups.push(pid);
    drover_ok(&c, &["delete", "app", "bg", "--cascade=background"]);
    assert!(!app_exists(&c, "bg"));
    wait_until(10, "the background tasks to go", || {
        tasks(&c, "bg").is_empty()
    });
    wait_until(10, "its process to die", || !group_alive(pid));

    // Orphan: the App goes, the Task stays without its owner reference, and runs on.
    start_app(&c, "kept", 1);
    let (task, pid) = {
        let t = &tasks(&c, "kept")[0];
        (t.0.clone(), t.1)
    };
    guard.groups.push(pid);
    drover_ok(&c, &["delete", "app/kept", "--cascade=orphan"]);
    assert!(!app_exists(&c, "kept"));
    wait_until(10, "the owner reference to be removed", || {
        tasks(&c, "kept").iter().any(|t| t.0 == task && !t.2)
    });
    // A few collector passes later it is still there, still running.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(tasks(&c, "kept").len(), 1);
    assert!(group_alive(pid));
    drover_ok(&c, &["delete", "task", &task]);
    wait_until(10, "the orphan's process to die once deleted", || {
        !group_alive(pid)
    });
}

#[test]
fn an_unknown_cascade_policy_is_refused() {
    let c = Cluster::up();
    let out = drover(&c, &["delete", "app", "x", "--cascade=sideways"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--cascade") && err.contains("orphan"),
        "stderr: {err}"
    );
}
