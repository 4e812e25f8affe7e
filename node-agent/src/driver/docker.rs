//! The docker driver: each task is a container of a local Docker daemon, driven
//! through the Engine API on its unix socket (`--docker-host`, API v1.41).
//!
//! There is no registry here: the image must already be on the daemon (`docker load`
//! or `docker import`); a missing one fails the task with a message that says so.
//! Containers run with host networking (tasks get `PORT0…` like every driver), the
//! task's memory (swap included) and cpu limits, its volumes as binds, and
//! `docker-init` as pid 1 so a SIGTERM reaches the task's own process. They are named
//! `drover-<task>-<hash of the sandbox>` (unique per agent, like runc's ids) and
//! labelled `drover.dev/task`, so a restarted agent finds them again by name: they
//! outlive the agent, and one that ended meanwhile still reports its exit code and
//! `OOMKilled`, since only the driver removes containers, once it has read how they
//! ended.
//!
//! Output is copied from `GET /containers/{id}/logs?follow=1` (the multiplexed stream,
//! with timestamps) into the sandbox's `stdout` / `stderr`, size-rotated like the other
//! drivers' logs, so `drover logs` reads them alike. The last copied timestamp is kept
//! in the sandbox: a restarted agent resumes after it instead of copying twice.
//!
//! The client is a minimal HTTP/1.1 over `tokio::net::UnixStream` (one connection per
//! request, `Connection: close`; bodies by length, chunked or until EOF): the few
//! calls needed do not justify a Docker crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_api::container::Driver as DriverKind;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::cgroups;
use super::log_rotation::{self, DEFAULT_LIMIT};
use super::oci::rootfs::runtime;
use super::{Checkpointed, Driver, DriverError, Exit, Launch, Running};

/// `--docker-host` unless told otherwise.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The Engine API version the driver speaks (Docker 20.10).
const API: &str = "/v1.41";
/// How long a plain (non-streaming) request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `_ping` may take before the daemon counts as absent.
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an ended container's last output may take to reach the log files.
const LOG_DRAIN: Duration = Duration::from_secs(3);
/// The label naming the task a container runs.
pub const TASK_LABEL: &str = "drover.dev/task";
/// The label holding the task's sandbox (which agent's task it is).
pub const SANDBOX_LABEL: &str = "drover.dev/sandbox";
/// In the sandbox: the timestamp of the last log line copied.
const LOGS_SINCE_FILE: &str = "docker-logs.since";
/// The pid reported for a container that ended before its pid could be read: no
/// process has it, so signalling it (a test's cleanup) harms nothing.
const NO_PID: i32 = i32::MAX;

// ---------------------------------------------------------------------------------
// The Engine API client.

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be reached, or the connection broke.
    #[error("docker daemon at {socket}: {source}")]
    Io {
        /// The socket.
        socket: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The daemon answered with an error status; `message` is its own words.
    #[error("docker daemon: {message} (HTTP {status})")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The daemon's message.
        message: String,
    },
    /// The daemon answered something the client does not understand.
    #[error("docker daemon: unexpected answer: {0}")]
    Protocol(String),
}

impl ApiError {
    /// The HTTP status, when the daemon answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client of one Docker daemon's unix socket.
#[derive(Clone, Debug)]
pub struct DockerClient {
    socket: PathBuf,
}

/// `unix:///path` (or a bare absolute path) → the socket path.
pub fn socket_of(host: &str) -> Result<PathBuf, String> {
    let path = host.strip_prefix("unix://").unwrap_or(host);
    if host.contains("://") && !host.starts_with("unix://") {
        return Err(format!(
            "--docker-host {host:?}: only unix:// sockets are supported"
        ));
    }
    if !path.starts_with('/') {
        return Err(format!(
            "--docker-host {host:?}: expected unix:///absolute/path"
        ));
    }
    Ok(PathBuf::from(path))
}

/// A response whose body is read as it comes.
struct Response<R> {
    status: u16,
    body: Body<R>,
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length` bytes left.
    Length(u64),
    /// Until the connection closes.
    Eof,
    /// Nothing more.
    Done,
}

/// A response body over a buffered reader.
struct Body<R> {
    reader: R,
    framing: Framing,
}

impl<R: AsyncBufRead + Unpin> Body<R> {
    /// The next piece of the body; None at its end.
    async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        match self.framing {
            Framing::Done => Ok(None),
            Framing::Length(0) => {
                self.framing = Framing::Done;
                Ok(None)
            }
            Framing::Length(left) => {
                let want = usize::try_from(left.min(64 * 1024)).unwrap_or(64 * 1024);
                let mut buf = vec![0u8; want];
                let n = self.reader.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.truncate(n);
                self.framing = Framing::Length(left - n as u64);
                Ok(Some(buf))
            }
            Framing::Eof => {
                let mut buf = vec![0u8; 64 * 1024];
                let n = self.reader.read(&mut buf).await?;
                if n == 0 {
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                buf.truncate(n);
                Ok(Some(buf))
            }
            Framing::Chunked => {
                let line = read_line(&mut self.reader).await?;
                let hex = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("bad chunk size {hex:?}"),
                    )
                })?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !read_line(&mut self.reader).await?.is_empty() {}
                    self.framing = Framing::Done;
                    return Ok(None);
                }
                let mut buf = vec![0u8; size];
                self.reader.read_exact(&mut buf).await?;
                read_line(&mut self.reader).await?;
                Ok(Some(buf))
            }
        }
    }

    /// The whole (rest of the) body, up to `limit` bytes.
    async fn bytes(&mut self, limit: usize) -> std::io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(piece) = self.next().await? {
            all.extend_from_slice(&piece);
            if all.len() > limit {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("response larger than {limit} bytes"),
                ));
            }
        }
        Ok(all)
    }
}

/// One CRLF-terminated line, without the terminator; EOF mid-line is an error.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line).await?;
    if n == 0 || !line.ends_with(b"\n") {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "non-UTF-8 header"))
}

/// Reads a status line and headers; the body is left to read.
async fn read_head<R: AsyncBufRead + Unpin>(mut reader: R) -> std::io::Result<Response<R>> {
    let status_line = read_line(&mut reader).await?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let mut framing = Framing::Eof;
    loop {
        let line = read_line(&mut reader).await?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked") {
            framing = Framing::Chunked;
        } else if name == "content-length" && framing != Framing::Chunked {
            if let Ok(n) = value.parse() {
                framing = Framing::Length(n);
            }
        }
    }
    if status == 204 || status == 304 {
        framing = Framing::Done;
    }
    Ok(Response {
        status,
        body: Body { reader, framing },
    })
}

/// Percent-encodes what may not stand in a URL path or query as is.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The daemon's error message from a JSON body (`{"message": …}`), or the body.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

impl DockerClient {
    /// A client of the daemon at `host` (`unix:///var/run/docker.sock`).
    pub fn new(host: &str) -> Result<Self, String> {
        Ok(DockerClient {
            socket: socket_of(host)?,
        })
    }

    fn io_err(&self, source: std::io::Error) -> ApiError {
        ApiError::Io {
            socket: self.socket.display().to_string(),
            source,
        }
    }

    /// Sends a request; returns the response with its body unread. Error statuses are
    /// returned as responses (the caller reads the message).
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Response<BufReader<tokio::net::UnixStream>>, ApiError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.io_err(e))?;
        let mut stream = BufReader::new(stream);
        let mut head = format!(
            "{method} {API}{path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: drover-agent\r\nConnection: close\r\n"
        );
        let body = match body {
            Some((content_type, bytes)) => {
                head.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                    bytes.len()
                ));
                bytes
            }
            None if method == "POST" => {
                head.push_str("Content-Length: 0\r\n");
                Vec::new()
            }
            None => Vec::new(),
        };
        head.push_str("\r\n");
        let inner = stream.get_mut();
        inner
            .write_all(head.as_bytes())
            .await
            .map_err(|e| self.io_err(e))?;
        if !body.is_empty() {
            inner.write_all(&body).await.map_err(|e| self.io_err(e))?;
        }
        inner.flush().await.map_err(|e| self.io_err(e))?;
        read_head(stream).await.map_err(|e| self.io_err(e))
    }

    /// A request whose whole answer is read (bounded in time and size); error statuses
    /// become [`ApiError::Status`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Vec<u8>, ApiError> {
        let call = async {
            let mut response = self.send(method, path, body).await?;
            let bytes = response
                .body
                .bytes(64 * 1024 * 1024)
                .await
                .map_err(|e| self.io_err(e))?;
            if response.status >= 400 {
                return Err(ApiError::Status {
                    status: response.status,
                    message: error_message(&bytes),
                });
            }
            Ok(bytes)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .map_err(|_| {
                self.io_err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"),
                ))
            })?
    }

    /// A request answered with JSON.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ApiError> {
        let body = body.map(|v| ("application/json", v.to_string().into_bytes()));
        let bytes = self.call(method, path, body).await?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::Protocol(format!("{method} {path}: {e}")))
    }

    /// `GET /_ping` answers `OK` (within a few seconds).
    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(PING_TIMEOUT, self.call("GET", "/_ping", None)).await,
            Ok(Ok(body)) if body == b"OK"
        )
    }

    /// The daemon's version (`20.10.24+dfsg1`).
    pub async fn version(&self) -> Option<String> {
        let v = self.json("GET", "/version", None).await.ok()?;
        v.get("Version")?.as_str().map(str::to_string)
    }

    /// `GET /containers/{id}/json`; None when there is no such container.
    pub async fn inspect(&self, id: &str) -> Result<Option<serde_json::Value>, ApiError> {
        match self
            .json("GET", &format!("/containers/{}/json", encode(id)), None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the daemon has image `reference`.
    pub async fn has_image(&self, reference: &str) -> Result<bool, ApiError> {
        match self
            .call("GET", &format!("/images/{}/json", encode(reference)), None)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /containers/{id}?force=1&v=1`; a missing container is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), ApiError> {
        match self
            .call(
                "DELETE",
                &format!("/containers/{}?force=1&v=1", encode(id)),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `POST /containers/{id}/kill?signal=…`; a container that is not running (409) or
    /// gone (404) is not an error.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), ApiError> {
        match self
            .call(
                "POST",
                &format!("/containers/{}/kill?signal={signal}", encode(id)),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Imports directory `dir` as image `reference` (`name:tag`), like `docker import`:
    /// how an image reaches a daemon that has no registry to pull from.
    pub async fn import_dir(&self, dir: &Path, reference: &str) -> Result<(), ApiError> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", dir)
            .map_err(|e| self.io_err(e))?;
        let bytes = builder.into_inner().map_err(|e| self.io_err(e))?;
        let (repo, tag) = match reference.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (reference, "latest"),
        };
        let path = format!(
            "/images/create?fromSrc=-&repo={}&tag={}",
            encode(repo),
            encode(tag)
        );
        let body = self
            .call("POST", &path, Some(("application/x-tar", bytes)))
            .await?;
        // Errors after the 200 come in the progress stream.
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if v.get("error").is_some() => Err(ApiError::Protocol(format!(
                "importing {reference}: {}",
                v["error"]
            ))),
            _ => Ok(()),
        }
    }

    /// `POST /containers/{id}/wait?condition=not-running`: blocks until it is not running.
    pub async fn wait(&self, id: &str) -> Result<(), ApiError> {
        let mut response = self
            .send(
                "POST",
                &format!("/containers/{}/wait?condition=not-running", encode(id)),
                None,
            )
            .await?;
        let body = response
            .body
            .bytes(1024 * 1024)
            .await
            .map_err(|e| self.io_err(e))?;
        if response.status >= 400 {
            return Err(ApiError::Status {
                status: response.status,
                message: error_message(&body),
            });
        }
        Ok(())
    }
}

/// Whether a daemon answers at `host`, and its version.
pub async fn detect(host: &str) -> Option<(DockerClient, Option<String>)> {
    let client = DockerClient::new(host).ok()?;
    if !client.ping().await {
        return None;
    }
    let version = client.version().await;
    Some((client, version))
}

// ---------------------------------------------------------------------------------
// What the Node advertises.

/// The daemon this agent found at start: Some(version) when `_ping` answered.
static DAEMON: Mutex<Option<Option<String>>> = Mutex::new(None);

/// `Some(version)` when this agent found a Docker daemon (then the Node advertises the
/// `docker` driver), None when not.
pub fn advertised() -> Option<Option<String>> {
    DAEMON.lock().map(|d| d.clone()).unwrap_or(None)
}

/// `inner` (the other drivers) plus docker when a daemon answers at `host`; the Node
/// advertises `docker` (with the daemon's version) exactly then. Without a daemon,
/// docker tasks fail saying none answers at `host`.
pub async fn with_docker(inner: Arc<dyn Driver>, host: &str) -> Arc<dyn Driver> {
    let docker = match DockerClient::new(host) {
        Err(error) => {
            tracing::warn!(%error, "the docker driver is off");
            None
        }
        Ok(client) => match detect(host).await {
            Some((_, version)) => {
                tracing::info!(%host, version = version.as_deref().unwrap_or("?"), "docker daemon found: the docker driver is on");
                if let Ok(mut d) = DAEMON.lock() {
                    *d = Some(version);
                }
                Some(DockerDriver::new(client))
            }
            None => {
                tracing::info!(%host, "no docker daemon answers: the docker driver is off");
                None
            }
        },
    };
    if docker.is_none() {
        if let Ok(mut d) = DAEMON.lock() {
            *d = None;
        }
    }
    Arc::new(WithDocker {
        inner,
        docker,
        host: host.to_string(),
    })
}

/// The agent's drivers with docker beside them: docker tasks go to the docker driver
/// (or fail, without a daemon), everything else to `inner`.
pub struct WithDocker {
    inner: Arc<dyn Driver>,
    docker: Option<DockerDriver>,
    host: String,
}

impl WithDocker {
    fn wants_docker(launch: &Launch) -> bool {
        launch.container.driver == Some(DriverKind::Docker)
    }
}

#[async_trait::async_trait]
impl Driver for WithDocker {
    fn name(&self) -> &'static str {
        "drivers"
    }

    async fn start(&self, launch: &Launch) -> Result<Box<dyn Running>, DriverError> {
        if !Self::wants_docker(launch) {
            return self.inner.start(launch).await;
        }
        match &self.docker {
            Some(docker) => docker.start(launch).await,
            None => Err(runtime(format!(
                "driver docker is not available on this node: no Docker daemon answers at {} (start dockerd, or give the agent --docker-host)",
                self.host
            ))),
        }
    }

    /// A docker task goes to docker; an orphan whose driver is unknown is looked for
    /// among the daemon's containers first (by name: nothing else has it).
    fn adopt_checkpointed(
        &self,
        checkpoint: &Checkpointed,
        launch: &Launch,
    ) -> Option<Box<dyn Running>> {
        let unknown = launch.container.driver.is_none() && !launch.container.has_filesystem();
        if Self::wants_docker(launch) || unknown {
            if let Some(r) = self
                .docker
                .as_ref()
                .and_then(|d| d.adopt_checkpointed(checkpoint, launch))
            {
                return Some(r);
            }
            if !unknown {
                return None;
            }
        }
        self.inner.adopt_checkpointed(checkpoint, launch)
    }
}

// ---------------------------------------------------------------------------------
// The driver.

/// Runs tasks as containers of a Docker daemon.
#[derive(Clone, Debug)]
pub struct DockerDriver {
    client: DockerClient,
    log_limit: u64,
}

/// How a container ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ended {
    exit: Exit,
    oom: bool,
}

impl DockerDriver {
    /// A driver using `client`'s daemon.
    pub fn new(client: DockerClient) -> Self {
        DockerDriver {
            client,
            log_limit: DEFAULT_LIMIT,
        }
    }

    /// The container name of a task: `drover-<task>-<hash of its sandbox>`.
    pub fn container_name(launch: &Launch) -> String {
        format!("drover-{}", cgroups::cgroup_name(launch))
    }

    /// Inspects `name` from a synchronous context (adoption is synchronous): on a
    /// thread of its own with a runtime of its own, so any caller's runtime is fine.
    fn inspect_blocking(&self, name: &str) -> Result<Option<serde_json::Value>, ApiError> {
        let client = self.client.clone();
        let name = name.to_string();
        let run = move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| client.io_err(e))?
                .block_on(client.inspect(&name))
        };
        std::thread::scope(|s| match s.spawn(run).join() {
            Ok(r) => r,
            Err(_) => Err(ApiError::Protocol("inspecting panicked".into())),
        })
    }

    fn handle(&self, id: String, name: String, pid: i32, launch: &Launch) -> DockerHandle {
        let logs = tokio::spawn(follow_logs(
            self.client.clone(),
            id.clone(),
            launch.sandbox.clone(),
            self.log_limit,
        ));
        let (tx, rx) = watch::channel(None);
        let logs_abort = logs.abort_handle();
        let waiter = tokio::spawn(watch_exit(self.client.clone(), id.clone(), logs, tx));
        DockerHandle {
            client: self.client.clone(),
            cgroup: (pid != NO_PID).then(|| container_cgroup(pid)).flatten(),
            id,
            name,
            pid,
            ended: rx,
            waiter,
            logs: logs_abort,
            result: None,
        }
    }
}

/// The create request's body for `launch` (its `image` checked by the caller).
fn create_body(launch: &Launch, image: &str) -> Result<serde_json::Value, DriverError> {
    let c = &launch.container;
    let (entrypoint, cmd): (Option<Vec<String>>, Option<Vec<String>>) =
        match (&c.cmd, c.command.is_empty()) {
            (Some(cmd), _) => (
                Some(vec!["/bin/sh".into(), "-c".into()]),
                Some(vec![cmd.clone()]),
            ),
            (None, false) => (Some(c.command.clone()), Some(c.args.clone())),
            (None, true) => (None, (!c.args.is_empty()).then(|| c.args.clone())),
        };
    let env: Vec<String> = launch
        .environment()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let binds: Vec<String> = super::oci::spec::VolumeMount::of_launch(launch)?
        .into_iter()
        .map(|v| {
            let mode = if v.read_only { "ro" } else { "rw" };
            format!("{}:{}:{mode}", v.host_path, v.mount_path)
        })
        .collect();
    if let Some(dir) = c.working_dir.as_deref().filter(|d| !d.is_empty()) {
        if !dir.starts_with('/') {
            return Err(runtime(format!(
                "container.workingDir {dir:?} must be an absolute path"
            )));
        }
    }
    let mut host_config = serde_json::json!({
        "NetworkMode": "host",
        "Init": true,
        "Binds": binds,
    });
    if let Some(mib) = launch.resources.mem_mib.filter(|m| *m > 0) {
        let bytes = mib.saturating_mul(1024 * 1024);
        host_config["Memory"] = bytes.into();
        // No swap beyond the limit: past it the kernel OOM-kills, as with the others.
        host_config["MemorySwap"] = bytes.into();
    }
    if let Some(cpus) = launch.resources.cpus.filter(|c| c.is_finite() && *c > 0.0) {
        host_config["NanoCpus"] = ((cpus * 1e9).round() as i64).max(1_000_000).into();
    }
    let labels = BTreeMap::from([
        (TASK_LABEL.to_string(), launch.task_id.clone()),
        (
            SANDBOX_LABEL.to_string(),
            launch.sandbox.display().to_string(),
        ),
    ]);
    let mut body = serde_json::json!({
        "Image": image,
        "Env": env,
        "Labels": labels,
        "HostConfig": host_config,
        "AttachStdout": false,
        "AttachStderr": false,
        "Tty": false,
        "OpenStdin": false,
    });
    if let Some(e) = entrypoint {
        body["Entrypoint"] = e.into();
    }
    if let Some(cmd) = cmd {
        body["Cmd"] = cmd.into();
    }
    if let Some(dir) = c.working_dir.as_deref().filter(|d| !d.is_empty()) {
        body["WorkingDir"] = dir.into();
    }
    if let Some(user) = c.user.as_deref().filter(|u| !u.is_empty()) {
        body["User"] = user.into();
    }
    Ok(body)
}

/// The container's init pid (0 when not running).
fn state_pid(inspect: &serde_json::Value) -> i32 {
    inspect
        .pointer("/State/Pid")
        .and_then(serde_json::Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or(0)
}

/// How an inspected container ended, if it has (docker-init exits 128+N when its
/// child was killed by signal N, like a shell).
fn ended_of(inspect: &serde_json::Value) -> Option<Ended> {
    let state = inspect.get("State")?;
    let running = state.get("Running").and_then(serde_json::Value::as_bool);
    let status = state.get("Status").and_then(serde_json::Value::as_str);
    if running == Some(true) || matches!(status, Some("created" | "restarting")) {
        return None;
    }
    let code = state
        .get("ExitCode")
        .and_then(serde_json::Value::as_i64)
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(0);
    let exit = match code {
        129..=159 => Exit::Signal(code - 128),
        c => Exit::Code(c),
    };
    let oom = state
        .get("OOMKilled")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    Some(Ended { exit, oom })
}

fn api_err(what: &str) -> impl FnOnce(ApiError) -> DriverError + '_ {
    move |e| runtime(format!("{what}: {e}"))
}

#[async_trait::async_trait]
impl Driver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn start(&self, launch: &Launch) -> Result<Box<dyn Running>, DriverError> {
        let Some(image) = launch.container.image.as_deref().filter(|i| !i.is_empty()) else {
            return Err(runtime("driver docker needs container.image"));
        };
        if launch.container.rootfs.is_some() {
            return Err(runtime("driver docker runs images, not container.rootfs"));
        }
        let body = create_body(launch, image)?;
        std::fs::create_dir_all(&launch.sandbox).map_err(|source| DriverError::Sandbox {
            what: "creating",
            path: launch.sandbox.clone(),
            source,
        })?;
        let client = &self.client;
        if !client
            .has_image(image)
            .await
            .map_err(api_err("looking up the image"))?
        {
            return Err(runtime(format!(
                "image {image} not found on this node's docker daemon; load or import it first"
            )));
        }
        let name = Self::container_name(launch);
        // One of the same name left by an earlier run of this task: gone first.
        client
            .remove(&name)
            .await
            .map_err(api_err("removing an old container"))?;
        let _ = std::fs::remove_file(launch.sandbox.join(LOGS_SINCE_FILE));
        let created = client
            .json(
                "POST",
                &format!("/containers/create?name={}", encode(&name)),
                Some(body),
            )
            .await
            .map_err(api_err("docker could not create the container"))?;
        let id = created
            .get("Id")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| runtime(format!("docker created {name} but gave no id")))?;
        if let Err(e) = client
            .call("POST", &format!("/containers/{id}/start"), None)
            .await
        {
            let _ = client.remove(&id).await;
            let why = match e {
                ApiError::Status { message, .. } => message,
                other => other.to_string(),
            };
            return Err(runtime(format!(
                "docker could not start the container: {why}"
            )));
        }
        let pid = match client.inspect(&id).await {
            Ok(Some(v)) => state_pid(&v),
            _ => 0,
        };
        let pid = if pid > 0 { pid } else { NO_PID };
        tracing::info!(task = %launch.task_id, %name, %id, pid, "docker container started");
        Ok(Box::new(self.handle(id, name, pid, launch)))
    }

    /// By name (task id + sandbox), labelled as this task's: running, or ended while
    /// the agent was away (then `wait` reports its exit code at once).
    fn adopt_checkpointed(
        &self,
        checkpoint: &Checkpointed,
        launch: &Launch,
    ) -> Option<Box<dyn Running>> {
        let name = Self::container_name(launch);
        let inspect = match self.inspect_blocking(&name) {
            Ok(Some(v)) => v,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(%name, %error, "cannot look for the task's container");
                return None;
            }
        };
        let label = inspect
            .pointer("/Config/Labels")
            .and_then(|l| l.get(TASK_LABEL))
            .and_then(serde_json::Value::as_str);
        if label != Some(launch.task_id.as_str()) {
            return None;
        }
        let id = inspect
            .get("Id")
            .and_then(serde_json::Value::as_str)?
            .to_string();
        let pid = match state_pid(&inspect) {
            p if p > 0 => p,
            _ if checkpoint.pid > 0 => checkpoint.pid,
            _ => NO_PID,
        };
        match ended_of(&inspect) {
            None => {
                tracing::info!(task = %launch.task_id, %name, %id, pid, "docker container re-adopted")
            }
            Some(e) => {
                tracing::info!(task = %launch.task_id, %name, %id, how = %e.exit.describe(), "docker container ended while the agent was away")
            }
        }
        Some(Box::new(self.handle(id, name, pid, launch)))
    }
}

/// Waits for the container to stop, reads how it ended, lets its last output reach
/// the log files, removes it, and publishes the end.
async fn watch_exit(
    client: DockerClient,
    id: String,
    logs: JoinHandle<()>,
    tx: watch::Sender<Option<Ended>>,
) {
    let ended = loop {
        let waited = client.wait(&id).await;
        match client.inspect(&id).await {
            Ok(Some(v)) => {
                if let Some(ended) = ended_of(&v) {
                    break ended;
                }
            }
            Ok(None) => {
                break Ended {
                    exit: Exit::Unknown,
                    oom: false,
                }
            }
            Err(error) => tracing::warn!(%id, %error, "inspecting the container; retrying"),
        }
        if let Err(error) = waited {
            tracing::warn!(%id, %error, "waiting for the container; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let abort = logs.abort_handle();
    if tokio::time::timeout(LOG_DRAIN, logs).await.is_err() {
        abort.abort();
        tracing::warn!(%id, "the container's last output did not arrive in time");
    }
    if let Err(error) = client.remove(&id).await {
        tracing::warn!(%id, %error, "removing the ended container");
    }
    let _ = tx.send(Some(ended));
}

/// Splits `buf` into complete frames of the multiplexed log stream: (stream, payload).
fn take_frames(buf: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 8 {
        let h = &buf[at..at + 8];
        let size = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
        if buf.len() - at - 8 < size {
            break;
        }
        frames.push((h[0], buf[at + 8..at + 8 + size].to_vec()));
        at += 8 + size;
    }
    buf.drain(..at);
    frames
}

/// `2026-12-01T06:07:41.284808120Z line` → (the time, `line`).
fn split_timestamp(payload: &[u8]) -> (Option<chrono::DateTime<chrono::Utc>>, &[u8]) {
    let Some(space) = payload.iter().position(|b| *b == b' ') else {
        return (None, payload);
    };
    let ts = std::str::from_utf8(&payload[..space])
        .ok()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    match ts {
        Some(t) => (Some(t), &payload[space + 1..]),
        None => (None, payload),
    }
}

/// A sandbox log file being appended to, rotated past its limit.
struct LogFile {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
    limit: u64,
}

impl LogFile {
    fn open(path: PathBuf, limit: u64) -> LogFile {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        let file = match file {
            Ok(f) => Some(f),
            Err(error) => {
                tracing::warn!(%error, file = %path.display(), "task output is discarded");
                None
            }
        };
        let size = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
            .unwrap_or(0);
        LogFile {
            path,
            file,
            size,
            limit,
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        use std::io::Write;
        let Some(file) = &mut self.file else { return };
        if let Err(error) = file.write_all(bytes) {
            tracing::warn!(%error, file = %self.path.display(), "writing task output");
        }
        self.size += bytes.len() as u64;
        if self.limit > 0 && self.size > self.limit {
            match log_rotation::rotate_if_larger(&self.path, self.limit) {
                Ok(_) => self.size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
                Err(error) => {
                    tracing::warn!(%error, file = %self.path.display(), "rotating a task log")
                }
            }
        }
    }
}

/// Copies the container's output into the sandbox until it has ended; a stream that
/// breaks while it runs (the daemon restarted) is followed again, after the last line.
async fn follow_logs(client: DockerClient, id: String, sandbox: PathBuf, limit: u64) {
    loop {
        copy_logs(&client, &id, &sandbox, limit).await;
        match client.inspect(&id).await {
            Ok(Some(v)) if ended_of(&v).is_none() => {}
            Ok(_) => return,
            Err(error) => tracing::debug!(%id, %error, "inspecting the container"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Copies the container's output into `sandbox/stdout` and `sandbox/stderr`, after the
/// last line copied (by this agent or an earlier one); ends when the log stream does.
async fn copy_logs(client: &DockerClient, id: &str, sandbox: &Path, limit: u64) {
    let since_file = sandbox.join(LOGS_SINCE_FILE);
    let mut last: Option<chrono::DateTime<chrono::Utc>> = std::fs::read_to_string(&since_file)
        .ok()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.trim()).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let mut path = format!("/containers/{id}/logs?follow=1&stdout=1&stderr=1&timestamps=1");
    if let Some(t) = last {
        path.push_str(&format!(
            "&since={}.{:09}",
            t.timestamp(),
            t.timestamp_subsec_nanos()
        ));
    }
    let mut response = match client.send("GET", &path, None).await {
        Ok(r) if r.status < 400 => r,
        Ok(mut r) => {
            let body = r.body.bytes(64 * 1024).await.unwrap_or_default();
            tracing::warn!(%id, status = r.status, message = %error_message(&body), "reading the container's logs");
            return;
        }
        Err(error) => {
            tracing::warn!(%id, %error, "reading the container's logs");
            return;
        }
    };
    let mut stdout = LogFile::open(sandbox.join("stdout"), limit);
    let mut stderr = LogFile::open(sandbox.join("stderr"), limit);
    let save = |t: Option<chrono::DateTime<chrono::Utc>>| {
        if let Some(t) = t {
            let text = t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let tmp = since_file.with_extension("tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(&tmp, &since_file);
            }
        }
    };
    let mut saved = last;
    let mut buf = Vec::new();
    loop {
        let piece = match response.body.next().await {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(error) => {
                tracing::debug!(%id, %error, "the container's log stream broke");
                break;
            }
        };
        buf.extend_from_slice(&piece);
        for (stream, payload) in take_frames(&mut buf) {
            let (ts, line) = split_timestamp(&payload);
            if let (Some(ts), Some(prev)) = (ts, last) {
                if ts <= prev {
                    continue;
                }
            }
            if ts.is_some() {
                last = ts;
            }
            match stream {
                2 => stderr.write(line),
                _ => stdout.write(line),
            }
        }
        // After every piece: an agent killed now must not copy these lines again.
        if last != saved {
            save(last);
            saved = last;
        }
    }
}

/// A container started (or adopted) by the docker driver.
struct DockerHandle {
    client: DockerClient,
    id: String,
    name: String,
    pid: i32,
    ended: watch::Receiver<Option<Ended>>,
    waiter: JoinHandle<()>,
    /// The log copier (owned by the waiter, which lets it drain at the end).
    logs: tokio::task::AbortHandle,
    result: Option<Ended>,
    /// The container's cgroup (docker's), for its usage.
    cgroup: Option<cgroups::TaskCgroup>,
}

/// The cgroup of the container whose init is `pid`, as the agent sees it (from the
/// init's `/proc/PID/cgroup`: docker names it, not the agent).
fn container_cgroup(pid: i32) -> Option<cgroups::TaskCgroup> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
    let layout = cgroups::layout_from(&mountinfo, &own, unified).ok()?;
    Some(cgroups::TaskCgroup {
        version: layout.version,
        memory: layout.memory,
        cpu: layout.cpu,
        cpuacct: layout.cpuacct,
    })
}

impl Drop for DockerHandle {
    /// The agent stops watching (the container lives on, for the next agent).
    fn drop(&mut self) {
        self.waiter.abort();
        self.logs.abort();
    }
}

impl DockerHandle {
    async fn wait_ended(&mut self) -> Result<Ended, DriverError> {
        if let Some(e) = self.result {
            return Ok(e);
        }
        let ended = self
            .ended
            .wait_for(Option::is_some)
            .await
            .map_err(|_| {
                runtime(format!(
                    "lost track of docker container {} ({})",
                    self.name, self.id
                ))
            })?
            .unwrap_or(Ended {
                exit: Exit::Unknown,
                oom: false,
            });
        self.result = Some(ended);
        Ok(ended)
    }
}

#[async_trait::async_trait]
impl Running for DockerHandle {
    fn pid(&self) -> i32 {
        self.pid
    }

    async fn wait(&mut self) -> Result<Exit, DriverError> {
        Ok(self.wait_ended().await?.exit)
    }

    async fn kill(&mut self, grace: Duration) -> Result<Exit, DriverError> {
        if let Some(e) = self.result {
            return Ok(e.exit);
        }
        let deadline = tokio::time::Instant::now() + grace;
        if let Err(error) = self.client.kill(&self.id, "SIGTERM").await {
            tracing::warn!(id = %self.id, %error, "SIGTERM to the container");
        }
        let ended = match tokio::time::timeout_at(deadline, self.wait_ended()).await {
            Ok(ended) => ended?,
            Err(_) => {
                if let Err(error) = self.client.kill(&self.id, "SIGKILL").await {
                    tracing::warn!(id = %self.id, %error, "SIGKILL to the container");
                }
                self.wait_ended().await?
            }
        };
        let exit = match ended.exit {
            Exit::Unknown => Exit::Signal(15),
            e => e,
        };
        tracing::info!(id = %self.id, how = %exit.describe(), "docker container killed");
        Ok(exit)
    }

    fn container_id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    fn oom_killed(&self) -> bool {
        self.result.is_some_and(|e| e.oom)
    }

    fn usage(&self) -> Option<cgroups::Usage> {
        self.cgroup.as_ref().and_then(cgroups::TaskCgroup::usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::container::ContainerSpec;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn hosts_name_unix_sockets() {
        assert_eq!(
            socket_of("unix:///var/run/docker.sock"),
            Ok(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(socket_of("/tmp/d.sock"), Ok(PathBuf::from("/tmp/d.sock")));
        assert!(socket_of("tcp://127.0.0.1:2375").is_err());
        assert!(socket_of("unix://relative").is_err());
    }

    #[tokio::test]
    async fn bodies_by_length_chunks_and_eof() -> TestResult {
        let chunked: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n";
        let mut r = read_head(chunked).await?;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.bytes(100).await?, b"Wikipedia");
        let sized: &[u8] =
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 20\r\n\r\n{\"message\":\"nope\"}\r\nextra";
        let mut r = read_head(sized).await?;
        assert_eq!(r.status, 404);
        assert_eq!(error_message(&r.body.bytes(100).await?), "nope");
        let eof: &[u8] = b"HTTP/1.0 200 OK\r\n\r\nall of it";
        let mut r = read_head(eof).await?;
        assert_eq!(r.body.bytes(100).await?, b"all of it");
        assert!(read_head(&b"garbage\r\n\r\n"[..]).await.is_err());
        Ok(())
    }

    #[test]
    fn log_frames_are_split_and_timestamps_stripped() {
        let mut buf = Vec::new();
        for (stream, text) in [
            (1u8, "2026-12-01T06:07:41.284808120Z out\n"),
            (2, "2026-12-01T06:07:42.000000000Z err\n"),
        ] {
            buf.push(stream);
            buf.extend_from_slice(&[0, 0, 0]);
            buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
            buf.extend_from_slice(text.as_bytes());
        }
        let whole = buf.clone();
        let mut partial = whole[..whole.len() - 3].to_vec();
        let frames = take_frames(&mut partial);
        assert_eq!(frames.len(), 1, "the second frame is incomplete");
        assert_eq!(partial.len(), whole.len() - 3 - (8 + frames[0].1.len()));
        let frames = take_frames(&mut buf);
        assert!(buf.is_empty());
        assert_eq!(frames[1].0, 2);
        let (ts, line) = split_timestamp(&frames[0].1);
        assert_eq!(line, b"out\n");
        let (ts2, _) = split_timestamp(&frames[1].1);
        assert!(ts.is_some() && ts < ts2);
        assert_eq!(
            split_timestamp(b"no-timestamp here").1,
            b"no-timestamp here"
        );
    }

    #[test]
    fn the_create_body_has_the_command_env_limits_and_labels() -> TestResult {
        let mut launch = Launch {
            task_id: "web-0".into(),
            host: "n1".into(),
            sandbox: "/data/tasks/default_web-0/sandbox".into(),
            ports: vec![(Some("http".into()), 31001)],
            container: ContainerSpec {
                driver: Some(DriverKind::Docker),
                image: Some("busybox:1".into()),
                cmd: Some("exec httpd -f -p $PORT0".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        launch.resources.mem_mib = Some(32);
        launch.resources.cpus = Some(0.5);
        let b = create_body(&launch, "busybox:1")?;
        assert_eq!(b["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
        assert_eq!(b["Cmd"], serde_json::json!(["exec httpd -f -p $PORT0"]));
        let env: Vec<&str> = b["Env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        for want in ["PORT0=31001", "PORT_HTTP=31001", "HOST=n1", "TASK_ID=web-0"] {
            assert!(env.contains(&want), "{want} missing from {env:?}");
        }
        assert_eq!(b["HostConfig"]["NetworkMode"], "host");
        assert_eq!(b["HostConfig"]["Memory"], 32 * 1024 * 1024);
        assert_eq!(b["HostConfig"]["MemorySwap"], 32 * 1024 * 1024);
        assert_eq!(b["HostConfig"]["NanoCpus"], 500_000_000);
        assert_eq!(b["Labels"][TASK_LABEL], "web-0");
        // command + args replace the image's entrypoint; neither keeps the image's.
        launch.container.cmd = None;
        launch.container.command = vec!["sleep".into()];
        launch.container.args = vec!["9".into()];
        let b = create_body(&launch, "busybox:1")?;
        assert_eq!(b["Entrypoint"], serde_json::json!(["sleep"]));
        assert_eq!(b["Cmd"], serde_json::json!(["9"]));
        launch.container.command.clear();
        let b = create_body(&launch, "busybox:1")?;
        assert!(b.get("Entrypoint").is_none());
        // A volume without a host path is refused, naming it.
        launch.volumes = vec![drover_api::kinds::task::VolumeBinding {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }];
        let err = create_body(&launch, "busybox:1")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("volumes[0] (data): no host path on this node")
        );
        Ok(())
    }

    #[test]
    fn signal_exits_and_oom_are_read_from_the_state() {
        let v = serde_json::json!({"State": {"Status": "exited", "Running": false, "ExitCode": 137, "OOMKilled": true}});
        assert_eq!(
            ended_of(&v),
            Some(Ended {
                exit: Exit::Signal(9),
                oom: true
            })
        );
        let v = serde_json::json!({"State": {"Status": "exited", "Running": false, "ExitCode": 3}});
        assert_eq!(ended_of(&v).map(|e| e.exit), Some(Exit::Code(3)));
        let v = serde_json::json!({"State": {"Status": "running", "Running": true, "Pid": 42}});
        assert_eq!(ended_of(&v), None);
        assert_eq!(state_pid(&v), 42);
    }

    #[tokio::test]
    async fn without_a_daemon_docker_tasks_fail_clearly() -> TestResult {
        let dir = tempfile::tempdir()?;
        let host = format!("unix://{}/nothing.sock", dir.path().display());
        let inner: Arc<dyn Driver> = Arc::new(super::super::process::ProcessDriver::default());
        let drivers = with_docker(inner, &host).await;
        let launch = Launch {
            task_id: "t".into(),
            sandbox: dir.path().join("sandbox"),
            container: ContainerSpec {
                driver: Some(DriverKind::Docker),
                image: Some("busybox".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let err = drivers.start(&launch).await.err().map(|e| e.to_string());
        assert_eq!(
            err,
            Some(format!("driver docker is not available on this node: no Docker daemon answers at {host} (start dockerd, or give the agent --docker-host)"))
        );
        assert_eq!(advertised(), None);
        Ok(())
    }
}
