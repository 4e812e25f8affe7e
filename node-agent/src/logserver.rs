//! The agent's log server: `GET /logs/{namespace}/{task}?follow=&tailLines=&stream=`
//! serves a task's `stdout` / `stderr` from the rotated files in its sandbox (the
//! current file and `<file>.1`), so the API server can proxy `tasks/{name}/log`.
//!
//! Whoever writes the files (the driver, or a shim parent process), rotation is
//! copy-then-truncate: a follower notices it (the current file shrank, or `.1`
//! changed) and reads the rest of what it had not sent from `.1` before starting
//! again at the top of the current file.
//!
//! Authentication: only the API server may read logs. It presents a bearer token of
//! its own identity (`system:apiserver`), which the agent checks with a TokenReview and
//! caches for a minute. An agent of an API server without authentication (plain
//! HTTP, `--insecure`) has no token to check with and serves everyone.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

use crate::driver::log_rotation::rotated_path;
use crate::lifecycle::Checkpoints;

/// The one identity allowed to read logs from an agent.
pub const APISERVER_USER: &str = "system:apiserver";

/// How long a token the API server vouched for is trusted without asking again.
const REVIEW_TTL: Duration = Duration::from_secs(60);

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(100);

/// How long a follow request waits for a task that has not started yet.
const START_WAIT: Duration = Duration::from_secs(10);

/// The most a follower reads in one go.
const CHUNK: u64 = 256 * 1024;

/// Who may read logs.
#[derive(Clone)]
pub enum LogAuth {
    /// Everyone: the API server runs without authentication.
    Open,
    /// Bearer tokens that a TokenReview through this client says are the API server's.
    TokenReview(Client),
}

impl LogAuth {
    /// `Open` for an API server reached over plain HTTP (it runs `--insecure`, without
    /// authentication), else a TokenReview through `client`.
    pub fn for_server(server_url: &str, client: Client) -> Self {
        if server_url.starts_with("http://") {
            LogAuth::Open
        } else {
            LogAuth::TokenReview(client)
        }
    }

    /// [`LogAuth::for_server`] for the server `connection` names (a kubeconfig's
    /// current context's cluster; unreadable → TokenReview, the safe side).
    pub fn for_connection(connection: &crate::client::Connection, client: Client) -> Self {
        let server = match connection {
            crate::client::Connection::Token { server, .. } => Some(server.clone()),
            crate::client::Connection::Kubeconfig(path) => {
                kube::config::Kubeconfig::read_from(path)
                    .ok()
                    .and_then(|k| {
                        let context = k.current_context.as_deref()?;
                        let cluster = k
                            .contexts
                            .iter()
                            .find(|c| c.name == context)?
                            .context
                            .as_ref()?
                            .cluster
                            .clone();
                        k.clusters
                            .iter()
                            .find(|c| c.name == cluster)?
                            .cluster
                            .as_ref()?
                            .server
                            .clone()
                    })
            }
        };
        Self::for_server(server.as_deref().unwrap_or("https://"), client)
    }
}

/// What the handlers share.
#[derive(Clone)]
struct LogState {
    checkpoints: Arc<Checkpoints>,
    auth: LogAuth,
    /// Tokens the API server vouched for, and when.
    reviewed: Arc<Mutex<HashMap<String, Instant>>>,
    node: String,
}

/// A bound log server, not yet serving.
pub struct LogServer {
    listener: tokio::net::TcpListener,
    state: LogState,
}

impl LogServer {
    /// Binds `listen` for the tasks under `tasks_dir` (`<data-dir>/tasks`) of `node`.
    pub async fn bind(
        listen: SocketAddr,
        tasks_dir: PathBuf,
        node: &str,
        auth: LogAuth,
    ) -> std::io::Result<LogServer> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        Ok(LogServer {
            listener,
            state: LogState {
                checkpoints: Arc::new(Checkpoints::new(tasks_dir)),
                auth,
                reviewed: Arc::new(Mutex::new(HashMap::new())),
                node: node.to_string(),
            },
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The URL the Node advertises: the bound address, or `hostname` with the bound
    /// port when listening on every interface.
    pub fn endpoint(&self, hostname: &str) -> std::io::Result<String> {
        let addr = self.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            hostname.to_string()
        } else if addr.is_ipv6() {
            format!("[{}]", addr.ip())
        } else {
            addr.ip().to_string()
        };
        Ok(format!("http://{host}:{}", addr.port()))
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/logs/{namespace}/{task}", get(task_log))
            .route("/healthz", get(|| async { "ok" }))
            .with_state(self.state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// An error answered as a Kubernetes `Status`, as the API server passes it on.
#[derive(Debug)]
struct LogError {
    code: StatusCode,
    message: String,
}

impl LogError {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        LogError {
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for LogError {
    fn into_response(self) -> Response {
        let reason = match self.code.as_u16() {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            503 => "ServiceUnavailable",
            _ => "InternalError",
        };
        let body = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": reason,
            "code": self.code.as_u16(),
        });
        (self.code, axum::Json(body)).into_response()
    }
}

/// Which file, how much of it, and whether to keep following.
#[derive(Debug, PartialEq, Eq)]
struct LogQuery {
    follow: bool,
    tail_lines: Option<usize>,
    stream: &'static str,
}

fn parse_query(q: &HashMap<String, String>) -> Result<LogQuery, String> {
    let follow = match q.get("follow").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => return Err(format!("follow: {other:?} is not true or false")),
    };
    let tail_lines = match q.get("tailLines") {
        None => None,
        Some(n) => Some(
            n.parse::<usize>()
                .map_err(|_| format!("tailLines: {n:?} is not a number of lines (>= 0)"))?,
        ),
    };
    let stream = match q.get("stream").map(String::as_str) {
        None | Some("stdout") | Some("") => "stdout",
        Some("stderr") => "stderr",
        Some(other) => return Err(format!("stream: {other:?} is not stdout or stderr")),
    };
    Ok(LogQuery {
        follow,
        tail_lines,
        stream,
    })
}

/// A namespace or task name that is safe as part of a path (DNS-1123-ish).
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

#[tracing::instrument(skip_all, fields(task = %format!("{namespace}/{task}")))]
async fn task_log(
    State(state): State<LogState>,
    UrlPath((namespace, task)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, LogError> {
    authorize(&state, &headers).await?;
    let query = parse_query(&q).map_err(|m| LogError::new(StatusCode::BAD_REQUEST, m))?;
    if !valid_name(&namespace) || !valid_name(&task) {
        return Err(LogError::new(
            StatusCode::BAD_REQUEST,
            format!("{namespace}/{task} is not a task name"),
        ));
    }
    let dir = state.checkpoints.task_dir(&namespace, &task);
    if query.follow {
        // A task bound a moment ago may not have started yet.
        let deadline = Instant::now() + START_WAIT;
        while !dir.is_dir() && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }
    if !dir.is_dir() {
        return Err(LogError::new(
            StatusCode::NOT_FOUND,
            format!(
                "task {namespace}/{task} has no logs on node {}: it never ran here",
                state.node
            ),
        ));
    }
    let file = state
        .checkpoints
        .sandbox(&namespace, &task)
        .join(query.stream);
    tracing::debug!(file = %file.display(), follow = query.follow, tail = ?query.tail_lines, "serving a log");
    let mut tail = Tail::new(file, query.tail_lines);
    let head = tail.initial().map_err(|e| {
        LogError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the log of task {namespace}/{task}: {e}"),
        )
    })?;
    let body = if query.follow {
        let checkpoints = state.checkpoints.clone();
        let follower = Follower {
            tail,
            first: Some(head),
            done: Box::new(move || task_gone(&checkpoints, &namespace, &task)),
            last_check: None,
        };
        Body::from_stream(futures::stream::unfold(follower, |mut f| async move {
            f.next().await.map(|chunk| (chunk, f))
        }))
    } else {
        Body::from(head)
    };
    Ok(([("content-type", "text/plain; charset=utf-8")], body).into_response())
}

/// True once the task ended (its checkpoint says so) or its directory is gone.
fn task_gone(checkpoints: &Checkpoints, namespace: &str, task: &str) -> bool {
    match checkpoints.load(namespace, task) {
        Ok(Some(state)) => state.phase.is_terminal(),
        Ok(None) => !checkpoints.task_dir(namespace, task).is_dir(),
        Err(_) => false,
    }
}

async fn authorize(state: &LogState, headers: &HeaderMap) -> Result<(), LogError> {
    let client = match &state.auth {
        LogAuth::Open => return Ok(()),
        LogAuth::TokenReview(client) => client,
    };
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| LogError::new(StatusCode::UNAUTHORIZED, "Unauthorized"))?;
    if let Ok(mut cache) = state.reviewed.lock() {
        cache.retain(|_, at| at.elapsed() < REVIEW_TTL);
        if cache.contains_key(token) {
            return Ok(());
        }
    }
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not review a token with the API server");
            LogError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot check the token with the API server: {e}"),
            )
        })?;
    let status = answer.status.unwrap_or_default();
    if status.authenticated != Some(true) {
        return Err(LogError::new(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let user = status.user.and_then(|u| u.username).unwrap_or_default();
    if user != APISERVER_USER {
        return Err(LogError::new(
            StatusCode::FORBIDDEN,
            format!("user \"{user}\" may not read logs from the agent: only {APISERVER_USER} may (read them through the API server)"),
        ));
    }
    if let Ok(mut cache) = state.reviewed.lock() {
        cache.insert(token.to_string(), Instant::now());
    }
    Ok(())
}

/// Size and modification time: a changed `.1` means a rotation happened.
type Signature = Option<(u64, SystemTime)>;

fn signature(path: &Path) -> Signature {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// One log file and its rotated predecessor, read from an offset on.
struct Tail {
    path: PathBuf,
    rotated: PathBuf,
    tail_lines: Option<usize>,
    /// How far into the current file has been sent.
    offset: u64,
    /// `.1` as last seen.
    rotated_sig: Signature,
}

impl Tail {
    fn new(path: PathBuf, tail_lines: Option<usize>) -> Self {
        let rotated = rotated_path(&path);
        Tail {
            path,
            rotated,
            tail_lines,
            offset: 0,
            rotated_sig: None,
        }
    }

    /// What is there now: the last `tailLines` lines across `.1` and the current file,
    /// or all of both.
    fn initial(&mut self) -> std::io::Result<Vec<u8>> {
        self.rotated_sig = signature(&self.rotated);
        let mut current = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let len = match &current {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        let (start, lines) = match (&mut current, self.tail_lines) {
            (Some(f), Some(n)) => tail_start(f, len, n)?,
            (_, _) => (0, 0),
        };
        let wanted_from_rotated = match self.tail_lines {
            Some(n) => n.saturating_sub(lines),
            None => usize::MAX,
        };
        let mut out = Vec::new();
        if wanted_from_rotated > 0 && (start == 0) {
            if let Ok(mut old) = File::open(&self.rotated) {
                let old_len = old.metadata()?.len();
                let from = if wanted_from_rotated == usize::MAX {
                    0
                } else {
                    tail_start(&mut old, old_len, wanted_from_rotated)?.0
                };
                read_range(&mut old, from, old_len, &mut out)?;
                if !out.is_empty() && !out.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
        }
        if let Some(f) = &mut current {
            read_range(f, start, len, &mut out)?;
        }
        self.offset = len;
        Ok(out)
    }

    /// What was written since the last call (rotation included), up to `CHUNK`.
    fn more(&mut self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let sig = signature(&self.rotated);
        let len = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if sig != self.rotated_sig || len < self.offset {
            // Rotated: the rest of what we had not sent is at the end of `.1`.
            self.rotated_sig = sig;
            if let Ok(mut old) = File::open(&self.rotated) {
                let old_len = old.metadata()?.len();
                if old_len > self.offset {
                    read_range(&mut old, self.offset, old_len, &mut out)?;
                }
            }
            self.offset = 0;
        }
        if len > self.offset {
            let end = len.min(self.offset + CHUNK);
            let mut f = File::open(&self.path)?;
            read_range(&mut f, self.offset, end, &mut out)?;
            self.offset = end;
        }
        Ok(out)
    }
}

/// Appends `file[from..to]` to `out`.
fn read_range(file: &mut File, from: u64, to: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    if to <= from {
        return Ok(());
    }
    file.seek(SeekFrom::Start(from))?;
    file.take(to - from).read_to_end(out)?;
    Ok(())
}

/// Where the last `n` lines of a file of `len` bytes start, and how many lines there
/// are from there (fewer than `n` when the file is shorter). Reads backwards.
fn tail_start(file: &mut File, len: u64, n: usize) -> std::io::Result<(u64, usize)> {
    if n == 0 || len == 0 {
        return Ok((len, 0));
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    // The final newline ends the last line; it does not start another.
    let mut pos = if last[0] == b'\n' { len - 1 } else { len };
    let mut found = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while pos > 0 {
        let start = pos.saturating_sub(buf.len() as u64);
        let size = (pos - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..size])?;
        for i in (0..size).rev() {
            if buf[i] == b'\n' {
                found += 1;
                if found == n {
                    return Ok((start + i as u64 + 1, n));
                }
            }
        }
        pos = start;
    }
    Ok((0, found + 1))
}

/// A followed log: what is there, then new output as it comes, until the task is gone
/// and its file drained.
struct Follower {
    tail: Tail,
    first: Option<Vec<u8>>,
    done: Box<dyn Fn() -> bool + Send>,
    last_check: Option<Instant>,
}

impl Follower {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if let Some(first) = self.first.take() {
            if !first.is_empty() {
                return Some(Ok(Bytes::from(first)));
            }
        }
        loop {
            // Checked before reading, so what was written before the task ended is
            // still read after it.
            let gone = match self.last_check {
                Some(at) if at.elapsed() < Duration::from_millis(500) => false,
                _ => {
                    self.last_check = Some(Instant::now());
                    (self.done)()
                }
            };
            match self.tail.more() {
                Ok(chunk) if !chunk.is_empty() => return Some(Ok(Bytes::from(chunk))),
                Ok(_) if gone => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: std::ops::Range<usize>) -> String {
        n.map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn tail_counts_lines_from_the_end() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("stdout");
        std::fs::write(&p, lines(0..10))?;
        let mut t = Tail::new(p.clone(), Some(3));
        assert_eq!(String::from_utf8_lossy(&t.initial()?), lines(7..10));
        let mut t = Tail::new(p.clone(), Some(50));
        assert_eq!(String::from_utf8_lossy(&t.initial()?), lines(0..10));
        let mut t = Tail::new(p.clone(), Some(0));
        assert_eq!(t.initial()?, b"");
        // A last line without its newline counts as a line.
        std::fs::write(&p, "a\nb\nc")?;
        let mut t = Tail::new(p, Some(2));
        assert_eq!(t.initial()?, b"b\nc");
        Ok(())
    }

    #[test]
    fn tail_spans_the_rotated_file() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("stdout");
        std::fs::write(rotated_path(&p), lines(0..5))?;
        std::fs::write(&p, lines(5..7))?;
        let mut t = Tail::new(p.clone(), Some(4));
        assert_eq!(String::from_utf8_lossy(&t.initial()?), lines(3..7));
        let mut t = Tail::new(p, None);
        assert_eq!(String::from_utf8_lossy(&t.initial()?), lines(0..7));
        Ok(())
    }

    #[test]
    fn following_survives_a_rotation() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("stdout");
        std::fs::write(&p, lines(0..2))?;
        let mut t = Tail::new(p.clone(), Some(1));
        assert_eq!(String::from_utf8_lossy(&t.initial()?), lines(1..2));
        assert_eq!(t.more()?, b"");
        std::fs::write(&p, lines(0..4))?;
        assert_eq!(String::from_utf8_lossy(&t.more()?), lines(2..4));
        // Two more lines, then copy-and-truncate before the follower looked.
        std::fs::write(&p, lines(0..6))?;
        crate::driver::log_rotation::rotate_if_larger(&p, 1)?;
        std::fs::write(&p, lines(6..7))?;
        assert_eq!(String::from_utf8_lossy(&t.more()?), lines(4..7));
        assert_eq!(t.more()?, b"");
        Ok(())
    }

    #[test]
    fn queries_are_checked() {
        let q = |pairs: &[(&str, &str)]| {
            parse_query(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        assert_eq!(
            q(&[("follow", "true"), ("tailLines", "3")]),
            Ok(LogQuery {
                follow: true,
                tail_lines: Some(3),
                stream: "stdout"
            })
        );
        assert!(q(&[("tailLines", "-1")])
            .unwrap_err()
            .starts_with("tailLines:"));
        assert!(q(&[("stream", "both")]).unwrap_err().starts_with("stream:"));
        assert!(!valid_name("../etc") && valid_name("web-0-abc"));
    }
}
