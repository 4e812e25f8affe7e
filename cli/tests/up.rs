//! `drover up` as a user runs it: the real binary, a real data directory.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use drover_store::{EmbeddedStore, Store};

fn drover() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover"));
    cmd.env("DROVER_LOG", "warn");
    cmd
}

#[test]
fn up_is_ready_fast_and_stops_cleanly_on_ctrl_c() {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let mut child = drover()
        .args(["up", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn drover up");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().expect("a line").expect("utf-8");
    assert!(ready.starts_with("drover up: ready in "), "{ready}");
    let ready_after = started.elapsed();
    assert!(
        ready_after < Duration::from_secs(5),
        "ready after {ready_after:?}"
    );
    let export = lines.next().expect("a line").expect("utf-8");
    assert_eq!(
        export,
        format!(
            "export KUBECONFIG={}",
            dir.path().join("kubeconfig").display()
        )
    );
    assert!(dir.path().join("kubeconfig").is_file());
    let prompt = lines.next().expect("a line").expect("utf-8");
    assert!(prompt.contains("Ctrl-C"), "{prompt}");

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                status.success(),
                "drover up must exit 0 on Ctrl-C, got {status}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "drover up did not stop within 10 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopping")), "{rest:?}");
}

/// `drover up --exit-when-ready` on `dir`.
fn up_once(dir: &std::path::Path) -> std::process::Output {
    drover()
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--exit-when-ready",
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .expect("run drover up")
}

#[test]
fn a_second_up_has_everything_the_first_had() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = up_once(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 objects"));

    // Write objects the way the API server will: into the same store directory.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path().join("store")).expect("open store");
        for name in ["web", "db"] {
            let key = format!("/registry/drover.dev/apps/default/{name}");
            store.create(&key, b"{}".to_vec(), 0).await.expect("create");
        }
    });
    std::thread::sleep(Duration::from_millis(200));

    let out = up_once(dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("revision 2, 2 objects"), "{stdout}");
}

#[test]
fn up_refuses_a_foreign_data_directory_and_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).expect("mkdir");
    std::fs::write(store_dir.join("notes.txt"), "mine").expect("write");
    let out = up_once(dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&store_dir.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("not a Drover store directory"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(store_dir.join("notes.txt")).expect("read"),
        "mine"
    );
}

/// `drover up` brings its own agent: the machine registers as a Node and runs Tasks.
#[test]
fn up_runs_tasks_on_its_local_agent() {
    let c = common::Cluster::full();
    let mut node = String::new();
    common::wait_for(
        || {
            node = c.ok(&[
                "get",
                "nodes.drover.dev",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ]);
            !node.is_empty()
        },
        "the local agent's Node",
    );
    assert_eq!(
        c.ok(&[
            "get",
            "nodes.drover.dev",
            &node,
            "-o",
            "jsonpath={.status.conditions[0].type}={.status.conditions[0].status}"
        ]),
        "Ready=True"
    );
    let task = format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata: {{name: local-1}}\nspec:\n  nodeName: {node}\n  owner: {{kind: App, name: web}}\n  instance: 0\n  container: {{cmd: \"sleep 300\"}}\n"
    );
    let f = c.write("task.yaml", &task);
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    let mut pid = String::new();
    common::wait_for(
        || {
            pid = c.ok(&[
                "get",
                "task",
                "local-1",
                "-o",
                "jsonpath={.status.phase}/{.status.pid}",
            ]);
            pid.starts_with("Running/") && pid.len() > "Running/".len()
        },
        "the task to run",
    );
    let pid = pid.trim_start_matches("Running/").to_string();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} runs"
    );
    c.ok(&["delete", "task", "local-1"]);
    common::wait_for(
        || !std::path::Path::new(&format!("/proc/{pid}/stat")).exists() || zombie(&pid),
        "the task's process to go",
    );
}

fn zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}
