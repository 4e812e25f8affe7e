//! A real OCI registry for one test: Debian's `docker-registry` (the CNCF distribution
//! registry v2) serving a temporary directory on a free loopback port, killed on drop,
//! and `skopeo` to push OCI layouts into it. Its access log tells which blobs were
//! fetched and by whom.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::agents::free_port;

/// A running registry; killed (and its directory removed) on drop.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

/// Fails (never skips) when the registry or skopeo is missing.
pub fn require_registry_tools() {
    let found = |bin: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(
        found("docker-registry") && found("skopeo"),
        "the registry tests need a registry and skopeo: apt-get install docker-registry skopeo"
    );
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers (200, or 401 with auth).
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// A registry requiring basic auth: `htpasswd` is one `user:bcrypt-hash` line.
    pub fn with_htpasswd(htpasswd: &str) -> Registry {
        Self::start_with(Some(htpasswd))
    }

    fn start_with(htpasswd: Option<&str>) -> Registry {
        require_registry_tools();
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        );
        if let Some(line) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{line}\n")).expect("htpasswd");
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: drover-test\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(&config, yaml).expect("registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let err = log.try_clone().expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn docker-registry");
        let mut registry = Registry {
            child: Some(child),
            dir,
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !registry.answers() {
            if let Some(Ok(Some(status))) = registry.child.as_mut().map(Child::try_wait) {
                panic!("docker-registry exited ({status}):\n{}", registry.log());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer on {} within 10 s:\n{}",
                registry.addr,
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(&self.addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let status = text.split_whitespace().nth(1).unwrap_or_default();
        text.starts_with("HTTP/1.") && matches!(status, "200" | "401")
    }

    /// Its log (text and access lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `skopeo copy oci:LAYOUT:TAG docker://ADDR/NAME` (plain HTTP).
    pub fn push(&self, layout: &Path, tag: &str, name: &str) {
        self.push_with(layout, tag, name, &[]);
    }

    /// [`Registry::push`] with more `skopeo copy` flags (`--all`, `--dest-creds U:P`).
    pub fn push_with(&self, layout: &Path, tag: &str, name: &str, flags: &[&str]) {
        let out = Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
            .args(flags)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{name}", self.addr))
            .output()
            .expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy to {}/{name} failed:\n{}",
            self.addr,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The access-log lines of `GET /v2/<repo>/blobs/…` requests made by drover.
    pub fn blob_gets(&self, repo: &str) -> Vec<String> {
        let prefix = format!("\"GET /v2/{repo}/blobs/");
        self.log()
            .lines()
            .filter(|l| l.contains(&prefix) && l.contains("drover/"))
            .map(str::to_string)
            .collect()
    }

    /// The registry's storage directory.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
