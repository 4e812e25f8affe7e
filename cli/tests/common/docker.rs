//! A real `dockerd` for one test: its own temp dir (data root, exec root, socket), no
//! bridge and no iptables (containers use the host's network), killed on drop after
//! its containers are removed. A small blocking Engine API client (HTTP/1.0 over the
//! unix socket, so every answer ends with the connection) talks to it, and
//! [`Dockerd::import_busybox`] makes an image from busybox-static (there is no
//! registry to pull from).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long dockerd may take to answer `_ping`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Dockerd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// `unix:///…/docker.sock`, for `drover agent --docker-host`.
    pub host: String,
    socket: PathBuf,
}

/// Fails (never skips) when dockerd is missing or we are not root.
pub fn require_dockerd() {
    let found = Command::new("sh")
        .args(["-c", "command -v dockerd"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "the docker tests need dockerd: apt-get install docker.io"
    );
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    assert!(root, "the docker tests need root (dockerd runs containers)");
}

impl Dockerd {
    /// Starts dockerd and waits until it answers.
    pub fn start() -> Dockerd {
        require_dockerd();
        let dir = tempfile::Builder::new()
            .prefix("dockerd-")
            .tempdir()
            .expect("temp dir");
        let socket = dir.path().join("docker.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("dockerd log");
        let err = log.try_clone().expect("dockerd log");
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--bridge=none",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn dockerd");
        let d = Dockerd {
            child: Some(child),
            host: format!("unix://{}", socket.display()),
            socket,
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while d.api("GET", "/_ping", None).map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within {START_TIMEOUT:?}: {}",
                std::fs::read_to_string(d.dir.path().join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    /// `METHOD /v1.41PATH` with an optional (content type, body): (status, body), or
    /// None when the daemon cannot be reached.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Option<(u16, Vec<u8>)> {
        let mut s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let mut head = format!("{method} /v1.41{path} HTTP/1.0\r\nHost: docker\r\n");
        if let Some((content_type, bytes)) = body {
            head.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                bytes.len()
            ));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).ok()?;
        if let Some((_, bytes)) = body {
            s.write_all(bytes).ok()?;
        }
        let mut all = Vec::new();
        s.read_to_end(&mut all).ok()?;
        let split = all.windows(4).position(|w| w == b"\r\n\r\n")?;
        let status = std::str::from_utf8(&all[..split])
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((status, all[split + 4..].to_vec()))
    }

    /// A JSON answer of a call that must succeed.
    pub fn json(&self, method: &str, path: &str) -> serde_json::Value {
        let (status, body) = self
            .api(method, path, None)
            .unwrap_or_else(|| panic!("{method} {path}: dockerd does not answer"));
        assert!(
            status < 300,
            "{method} {path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
    }

    /// `GET /containers/{id}/json`, None when there is no such container.
    pub fn inspect(&self, id: &str) -> Option<serde_json::Value> {
        let (status, body) = self.api("GET", &format!("/containers/{id}/json"), None)?;
        (status == 200)
            .then(|| serde_json::from_slice(&body).ok())
            .flatten()
    }

    /// The ids of all containers (running or not).
    pub fn containers(&self) -> Vec<String> {
        let Some((200, body)) = self.api("GET", "/containers/json?all=1", None) else {
            return Vec::new();
        };
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c.get("Id")?.as_str().map(str::to_string))
            .collect()
    }

    /// Imports a busybox-static rootfs (built in `dir`) as image `reference` (`name:tag`).
    pub fn import_busybox(&self, dir: &Path, reference: &str) {
        let rootfs = super::rootfs::busybox_rootfs(dir);
        std::fs::write(rootfs.join("www/index.html"), "hello from docker\n").expect("index");
        let tar = dir.join("busybox.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(status.success(), "tar of the busybox rootfs failed");
        let bytes = std::fs::read(&tar).expect("read the tar");
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let (status, body) = self
            .api(
                "POST",
                &format!("/images/create?fromSrc=-&repo={repo}&tag={tag}"),
                Some(("application/x-tar", &bytes)),
            )
            .expect("dockerd answers the import");
        assert_eq!(status, 200, "import: {}", String::from_utf8_lossy(&body));
        let (status, _) = self
            .api("GET", &format!("/images/{reference}/json"), None)
            .expect("dockerd answers");
        assert_eq!(status, 200, "the imported image {reference} is not there");
    }
}

impl Drop for Dockerd {
    /// Removes every container, then stops dockerd (SIGTERM: it stops its containerd
    /// and unmounts its layers), SIGKILL if it lingers.
    fn drop(&mut self) {
        for id in self.containers() {
            let _ = self.api("DELETE", &format!("/containers/{id}?force=1&v=1"), None);
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        // Its containerd, should dockerd have died without stopping it.
        let pidfile = self.dir.path().join("exec/containerd/containerd.pid");
        if let Ok(pid) = std::fs::read_to_string(pidfile) {
            let _ = Command::new("kill")
                .args(["-KILL", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
        // What it left mounted (its default netns, any layer): deepest first, so the
        // temp dir can go.
        for mount in mounts_under(self.dir.path()).iter().rev() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(mount)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Mount points at or below `dir`, in mount order (from `/proc/self/mountinfo`).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}
