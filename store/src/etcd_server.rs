//! Starts a real, throw-away etcd (Debian's `etcd-server`) on free 127.0.0.1 ports in a
//! temporary directory — for the conformance suite, the benchmarks and end-to-end tests.
//!
//! etcd runs under a small `sh` guard that kills it when our end of its stdin closes, so
//! it stops by itself even if the process that started it is killed.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{StoreError, StoreResult};

const INSTALL_HINT: &str = "etcd was not found on PATH: install it with \
                            `apt-get install etcd-server` (Debian) or put an etcd 3.4+ binary on PATH";

pub struct EtcdServer {
    child: Child,
    guard: Option<ChildStdin>,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd with its data under a new temporary directory inside `parent`
    /// (the system temp dir when `None`) and waits until it answers.
    pub fn start_in(parent: Option<&Path>) -> StoreResult<Self> {
        let binary = find_etcd().ok_or_else(|| StoreError::EtcdServer(INSTALL_HINT.into()))?;
        let mut last_err = String::new();
        // Free ports can be taken between our probe and etcd's bind: try a few times.
        for _ in 0..5 {
            let dir = match parent {
                Some(p) => tempfile::Builder::new().prefix("etcd-").tempdir_in(p)?,
                None => tempfile::Builder::new().prefix("etcd-").tempdir()?,
            };
            match Self::spawn(&binary, dir) {
                Ok(server) => return Ok(server),
                Err(e) => last_err = e.to_string(),
            }
        }
        Err(StoreError::EtcdServer(format!(
            "could not start etcd: {last_err}"
        )))
    }

    pub fn start() -> StoreResult<Self> {
        Self::start_in(None)
    }

    fn spawn(binary: &Path, dir: tempfile::TempDir) -> StoreResult<Self> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let endpoint = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let data = dir.path().join("data");
        let log = dir.path().join("etcd.log");
        let script = r#"log="$1"; shift; "$@" >"$log" 2>&1 & pid=$!; read _; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null; exit 0"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("etcd-guard")
            .arg(&log)
            .arg(binary)
            .args(["--name", "default", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("default={peer}")])
            .args(["--max-txn-ops", "100000"])
            .args(["--max-request-bytes", "67108864"])
            .args(["--quota-backend-bytes", "8589934592"])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let guard = child.stdin.take();
        let mut server = EtcdServer {
            child,
            guard,
            endpoint,
            dir,
        };
        server.wait_ready(client_port, &log)?;
        Ok(server)
    }

    fn wait_ready(&mut self, port: u16, log: &Path) -> StoreResult<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StoreError::EtcdServer(format!(
                    "etcd exited ({status}): {}",
                    tail(log)
                )));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() && health_ok(port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(StoreError::EtcdServer(format!(
            "etcd did not become ready within 30 s: {}",
            tail(log)
        )))
    }

    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Closing stdin makes the guard kill etcd.
        if let Some(mut g) = self.guard.take() {
            let _ = g.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

fn find_etcd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
}

fn free_port() -> StoreResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// etcd's /health answers `{"health":"true"}` once it has a leader.
fn health_ok(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
