//! A `drover up` started for one test, and the real kubectl pointed at it.

#![allow(dead_code)]

pub mod agents;
pub mod docker;
pub mod registry;
pub mod rootfs;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub struct Cluster {
    child: Child,
    pub dir: tempfile::TempDir,
    pub server: String,
    pub kubeconfig: PathBuf,
    cache: tempfile::TempDir,
    _etcd: Option<drover_store::EtcdServer>,
    /// The arguments it was started with, for [`Cluster::kill9_and_restart`].
    args: Vec<String>,
}

impl Cluster {
    /// `drover up` on a fresh data directory and a free port, serving the API only (no
    /// controllers, no local agent): what the API and CLI suites need, undisturbed.
    pub fn up() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::up_in(dir)
    }

    /// The whole single-machine cluster: API server, controllers and a local agent.
    pub fn full() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        Self::start(&["up", "--listen", "127.0.0.1:0"], dir, None)
    }

    /// `drover server` on a real etcd started for this test (the etcd lives as long as
    /// the cluster).
    pub fn on_etcd() -> Cluster {
        let etcd = drover_store::EtcdServer::start().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().expect("temp dir");
        let endpoint = etcd.endpoint().to_string();
        let args = [
            "server",
            "--store",
            "etcd",
            "--listen",
            "127.0.0.1:0",
            "--etcd-endpoints",
            &endpoint,
        ];
        Self::start(&args, dir, Some(etcd))
    }

    /// The whole single-machine cluster with extra `drover up` flags, on `dir` (which
    /// may hold a tokens.yaml the test prepared, e.g. for a second agent).
    pub fn full_in(dir: tempfile::TempDir, extra: &[&str]) -> Cluster {
        let mut args = vec!["up", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::start(&args, dir, None)
    }

    pub fn up_in(dir: tempfile::TempDir) -> Cluster {
        Self::start(
            &[
                "up",
                "--listen",
                "127.0.0.1:0",
                "--no-controllers",
                "--no-agent",
            ],
            dir,
            None,
        )
    }

    /// Runs `drover ARGS --data-dir DIR` and reads the server address from the first
    /// line it prints.
    fn start(
        args: &[&str],
        dir: tempfile::TempDir,
        etcd: Option<drover_store::EtcdServer>,
    ) -> Cluster {
        let (child, server) = Self::spawn(args, dir.path());
        let kubeconfig = dir.path().join("kubeconfig");
        Cluster {
            child,
            dir,
            server,
            kubeconfig,
            cache: tempfile::tempdir().expect("cache dir"),
            _etcd: etcd,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The endpoint of the etcd of [`Cluster::on_etcd`].
    pub fn etcd_endpoint(&self) -> Option<String> {
        self._etcd.as_ref().map(|e| e.endpoint().to_string())
    }

    /// `kill -9` of the drover process, then the same command on the same data
    /// directory (a new port; the kubeconfig is rewritten).
    pub fn kill9_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let (child, server) = Self::spawn(&args, self.dir.path());
        self.child = child;
        self.server = server;
    }

    fn spawn(args: &[&str], dir: &Path) -> (Child, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .env(
                "DROVER_LOG",
                std::env::var("DROVER_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn drover");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .next()
            .expect("drover printed nothing")
            .expect("utf-8");
        let server = ready
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no server address in {ready:?}"))
            .trim_end_matches(',')
            .to_string();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (child, server)
    }

    /// Runs a kubectl binary (`kubectl`, `kubectl.1.27`, …) against this cluster.
    pub fn kubectl_with(&self, binary: &Path, args: &[&str]) -> Output {
        Command::new(binary)
            .args(args)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()))
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&kubectl_path(None), args)
    }

    /// kubectl that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write manifest");
        p
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        kill_local_tasks(&self.dir.path().join("agent").join("tasks"));
    }
}

/// Tasks outlive their agent by design; a test's must not outlive the test. Kills the
/// process group of every task the local agent checkpointed.
fn kill_local_tasks(tasks: &Path) {
    let Ok(entries) = std::fs::read_dir(tasks) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("state.json")) else {
            continue;
        };
        let Ok(state) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if let Some(pid) = state.get("pid").and_then(serde_json::Value::as_i64) {
            let _ = Command::new("kill")
                .args(["-9", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `kubectl` on the PATH, or a versioned one (`1.27`) beside the file it links to.
pub fn kubectl_path(version: Option<&str>) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("sh");
    let real = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !real.is_empty(),
        "kubectl is not on the PATH: install kubectl 1.27–1.33"
    );
    let real = PathBuf::from(real);
    match version {
        None => real,
        Some(v) => {
            let p = real.with_file_name(format!("kubectl.{v}"));
            assert!(
                p.is_file(),
                "{} is missing: kubectl {v} must stand beside {}",
                p.display(),
                real.display()
            );
            p
        }
    }
}

/// `drover ARGS --kubeconfig` the cluster's kubeconfig.
pub fn drover(c: &Cluster, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(args)
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .output()
        .expect("run drover")
}

pub fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

pub const WEB: &str = r#"apiVersion: drover.dev/v1alpha1
kind: App
metadata:
  name: web
  labels:
    tier: frontend
spec:
  instances: 3
  container:
    cmd: busybox httpd -f -p $PORT0
  resources:
    cpus: 0.1
    memMiB: 32
  ports:
    - name: http
  healthChecks:
    - http:
        portName: http
        path: /
      intervalSeconds: 5
  constraints:
    - [hostname, UNIQUE]
"#;
