//! watch-bench: API watch fan-out through the watch cache, against the same fan-out
//! straight from the store (N store watches, no HTTP), measured in one run.
//!
//!     cargo run --release -p drover-controller --bin watch-bench [-- --quick]
//!         [--events N] [--rate PER_SECOND] [--watchers W[,W…]]
//!
//! The API server runs in this process on 127.0.0.1:0 over an EmbeddedStore in a temp
//! dir. The HTTP watch clients run in a child process (this binary with `--clients`):
//! each in-process connection would hold two descriptors, and 10,000 watches would not
//! fit a 20,000 `ulimit -n`; split, each process needs one per watch. Every object
//! carries its write time (wall clock, ns) in an annotation; a receiver's delay is its
//! receipt time minus that. Prints a table and ends with
//! `watch fan-out: W watchers, X events/s, p99 Y ms (store direct: Z events/s)`.

use std::error::Error;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover_controller::apiserver::{router, ApiState};
use drover_store::{EmbeddedStore, Op, Store, Txn};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const NAMESPACE: &str = "bench";
const SENT_MARKER: &[u8] = b"bench.drover.dev/sent-unix-ns\":\"";
/// Concurrent connects while opening watches (the listen backlog is 1,024).
const CONNECTS_AT_ONCE: usize = 256;
/// Descriptors a process needs besides one per watch.
const SPARE_FDS: u64 = 128;

struct Scale {
    watchers: Vec<usize>,
    events: usize,
    rate: f64,
}

/// One measured fan-out.
struct Figures {
    deliveries: u64,
    missing: u64,
    events_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn object(name: &str) -> Vec<u8> {
    // About the size of a small App; the annotation is read back by every receiver.
    format!(
        "{{\"apiVersion\":\"drover.dev/v1alpha1\",\"kind\":\"App\",\"metadata\":{{\"name\":\"{name}\",\"namespace\":\"{NAMESPACE}\",\"uid\":\"00000000-0000-0000-0000-000000000000\",\"annotations\":{{\"bench.drover.dev/sent-unix-ns\":\"{sent}\"}},\"labels\":{{\"app\":\"bench\"}}}},\"spec\":{{\"instances\":1,\"container\":{{\"cmd\":\"busybox httpd -f -p $PORT0\"}}}}}}",
        sent = wall_ns()
    )
    .into_bytes()
}

/// The write time carried by an event (its annotation), if it is there.
fn sent_ns(event: &[u8]) -> Option<u64> {
    let at = event
        .windows(SENT_MARKER.len())
        .position(|w| w == SENT_MARKER)?;
    let digits = &event[at + SENT_MARKER.len()..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Delays in µs → (p50, p99) in ms.
fn percentiles(delays: &mut [u32]) -> (f64, f64) {
    if delays.is_empty() {
        return (0.0, 0.0);
    }
    delays.sort_unstable();
    let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
    (at(0.50), at(0.99))
}

/// Soft `ulimit -n`, from /proc (no syscalls needed); None where /proc is absent.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

fn check_open_files(watchers: usize) -> BenchResult<()> {
    let need = watchers as u64 + SPARE_FDS;
    match open_files_limit() {
        Some(limit) if limit < need => Err(format!(
            "{watchers} watchers need about {need} open files per process but `ulimit -n` is {limit}: \
             raise it (ulimit -n {need}) or pass --watchers with fewer"
        )
        .into()),
        _ => Ok(()),
    }
}

/// Writes `events` new objects at `rate` per second, each in its own task so a slow
/// fsync does not slow the rate (the store group-commits them). Returns when all landed.
async fn write_steadily(
    store: &Arc<dyn Store>,
    tag: &str,
    events: usize,
    rate: f64,
) -> BenchResult<()> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut writes = Vec::with_capacity(events);
    for i in 0..events {
        tick.tick().await;
        let store = store.clone();
        let name = format!("{tag}-{i}");
        writes.push(tokio::spawn(async move {
            let key = format!("/registry/drover.dev/apps/{NAMESPACE}/{name}");
            store
                .txn(Txn::new().then(Op::put(key, object(&name))))
                .await
        }));
    }
    for w in writes {
        w.await??;
    }
    Ok(())
}

/// How long receivers wait for the last event before counting the rest as missing.
fn patience(scale: &Scale) -> Duration {
    Duration::from_secs_f64(scale.events as f64 / scale.rate) + Duration::from_secs(60)
}

/// The fan-out straight from the store: `watchers` store watches in this process.
async fn store_direct(
    store: &Arc<dyn Store>,
    watchers: usize,
    scale: &Scale,
) -> BenchResult<Figures> {
    let from = store.current_revision().await? + 1;
    let prefix = format!("/registry/drover.dev/apps/{NAMESPACE}/");
    let events = scale.events;
    let deadline = tokio::time::Instant::now() + patience(scale);
    let mut receivers = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut stream = store.watch(&prefix, from).await?;
        receivers.push(tokio::spawn(async move {
            let mut delays = Vec::with_capacity(events);
            let mut last_ns = 0;
            while delays.len() < events {
                let ev = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Ok(Some(Ok(ev))) => ev,
                    _ => break,
                };
                let now = wall_ns();
                if let Some(sent) = sent_ns(&ev.kv.value) {
                    delays.push((now.saturating_sub(sent) / 1_000) as u32);
                    last_ns = now;
                }
            }
            (delays, last_ns)
        }));
    }
    let started = wall_ns();
    write_steadily(store, &format!("s{watchers}"), events, scale.rate).await?;
    let mut all = Vec::with_capacity(watchers * events);
    let mut last_ns = started;
    for r in receivers {
        let (delays, last) = r.await?;
        all.extend(delays);
        last_ns = last_ns.max(last);
    }
    let deliveries = all.len() as u64;
    let (p50_ms, p99_ms) = percentiles(&mut all);
    Ok(Figures {
        deliveries,
        missing: (watchers * events) as u64 - deliveries,
        events_per_s: deliveries as f64 / (last_ns.saturating_sub(started).max(1) as f64 / 1e9),
        p50_ms,
        p99_ms,
    })
}

/// The fan-out through the API: a child process opens the watches and reports.
async fn over_http(
    store: &Arc<dyn Store>,
    addr: std::net::SocketAddr,
    watchers: usize,
    scale: &Scale,
) -> BenchResult<Figures> {
    let rv = store.current_revision().await?;
    let path = format!(
        "/apis/drover.dev/v1alpha1/namespaces/{NAMESPACE}/apps?watch=true&resourceVersion={rv}"
    );
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([
            "--clients".to_string(),
            addr.to_string(),
            path,
            watchers.to_string(),
            scale.events.to_string(),
            patience(scale).as_secs().to_string(),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("the client process has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next_line().await? {
        Some(l) if l == "ready" => {}
        other => return Err(format!("the client process did not start: {other:?}").into()),
    }
    let started = wall_ns();
    write_steadily(store, &format!("h{watchers}"), scale.events, scale.rate).await?;
    let report = lines
        .next_line()
        .await?
        .ok_or("the client process ended without a report")?;
    child.wait().await?;
    let field = |name: &str| -> BenchResult<f64> {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in the client report {report:?}").into())
    };
    let deliveries = field("deliveries")? as u64;
    let last_ns = field("last_ns")? as u64;
    Ok(Figures {
        deliveries,
        missing: field("missing")? as u64,
        events_per_s: deliveries as f64 / (last_ns.saturating_sub(started).max(1) as f64 / 1e9),
        p50_ms: field("p50_ms")?,
        p99_ms: field("p99_ms")?,
    })
}

/// The child: opens the watches, says `ready`, reads every stream until it has
/// `events` events, then prints one `report` line.
async fn clients(args: &[String]) -> BenchResult<()> {
    let [addr, path, watchers, events, patience_s] = args else {
        return Err("usage: watch-bench --clients ADDR PATH WATCHERS EVENTS PATIENCE_S".into());
    };
    let watchers: usize = watchers.parse()?;
    let events: usize = events.parse()?;
    check_open_files(watchers)?;
    let addr: std::net::SocketAddr = addr.parse()?;
    let connects = Arc::new(Semaphore::new(CONNECTS_AT_ONCE));
    let mut opening = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let connects = connects.clone();
        let path = path.clone();
        opening.push(tokio::spawn(async move {
            let _permit = connects.acquire_owned().await?;
            open_watch(addr, &path).await
        }));
    }
    let mut streams = Vec::with_capacity(watchers);
    for o in opening {
        streams.push(o.await??);
    }
    let mut out = tokio::io::stdout();
    out.write_all(b"ready\n").await?;
    out.flush().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(patience_s.parse()?);
    let mut readers = Vec::with_capacity(watchers);
    for stream in streams {
        readers.push(tokio::spawn(async move {
            let mut delays = Vec::with_capacity(events);
            let mut last_ns = 0;
            let read = read_events(stream, events, &mut delays, &mut last_ns);
            let _ = tokio::time::timeout_at(deadline, read).await;
            (delays, last_ns)
        }));
    }
    let mut all = Vec::with_capacity(watchers * events);
    let mut last_ns = 0;
    for r in readers {
        let (delays, last) = r.await?;
        all.extend(delays);
        last_ns = last_ns.max(last);
    }
    let deliveries = all.len();
    let (p50, p99) = percentiles(&mut all);
    let report = format!(
        "report deliveries={deliveries} missing={} last_ns={last_ns} p50_ms={p50} p99_ms={p99}\n",
        watchers * events - deliveries
    );
    out.write_all(report.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// Connects and sends the watch request; returns once the 200 header block is read.
async fn open_watch(addr: std::net::SocketAddr, path: &str) -> BenchResult<BufReader<TcpStream>> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n");
    conn.write_all(req.as_bytes()).await?;
    let mut reader = BufReader::with_capacity(4096, conn);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("watch answered {line:?}").into());
    }
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err("the watch closed in its header block".into());
        }
        if line == "\r\n" {
            return Ok(reader);
        }
    }
}

/// Reads a chunked stream of JSON lines until `events` carried a write time.
async fn read_events(
    mut reader: BufReader<TcpStream>,
    events: usize,
    delays: &mut Vec<u32>,
    last_ns: &mut u64,
) -> BenchResult<()> {
    let mut size_line = String::new();
    let mut pending: Vec<u8> = Vec::new();
    while delays.len() < events {
        size_line.clear();
        if reader.read_line(&mut size_line).await? == 0 {
            return Err("the watch ended early".into());
        }
        let size = usize::from_str_radix(size_line.trim(), 16)?;
        if size == 0 {
            return Err("the watch ended early".into());
        }
        let start = pending.len();
        pending.resize(start + size + 2, 0);
        reader.read_exact(&mut pending[start..]).await?;
        pending.truncate(start + size);
        let now = wall_ns();
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            if let Some(sent) = sent_ns(&pending[..end]) {
                delays.push((now.saturating_sub(sent) / 1_000) as u32);
                *last_ns = now;
            }
            pending.drain(..=end);
        }
    }
    Ok(())
}

fn parse_args(args: &[String]) -> BenchResult<Scale> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut scale = if quick {
        Scale {
            watchers: vec![10, 50],
            events: 20,
            rate: 200.0,
        }
    } else {
        Scale {
            watchers: vec![1_000, 10_000],
            events: 500,
            rate: 100.0,
        }
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => {}
            "--events" => scale.events = value()?.parse()?,
            "--rate" => scale.rate = value()?.parse()?,
            "--watchers" => {
                scale.watchers = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if scale.watchers.is_empty() || scale.events == 0 || scale.rate <= 0.0 {
        return Err("--watchers, --events and --rate must be positive".into());
    }
    Ok(scale)
}

fn row(watchers: usize, path: &str, events: usize, f: &Figures) {
    println!(
        "| {watchers:>8} | {path:<11} | {events:>6} | {:>10} | {:>7} | {:>12.0} | {:>8.1} | {:>8.1} |",
        f.deliveries, f.missing, f.events_per_s, f.p50_ms, f.p99_ms
    );
}

async fn bench(scale: Scale) -> BenchResult<()> {
    let most = scale.watchers.iter().copied().max().unwrap_or(0);
    check_open_files(most)?;
    let dir: PathBuf =
        std::env::temp_dir().join(format!("watch-bench-{}-{}", std::process::id(), wall_ns()));
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(ApiState::new(store.clone()));
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    eprintln!(
        "watch-bench: {} events at {}/s to {:?} watchers, server at {addr}, store in {}",
        scale.events,
        scale.rate,
        scale.watchers,
        dir.display()
    );
    println!(
        "| watchers | path        | events | deliveries | missing |     events/s |  p50 ms  |  p99 ms  |"
    );
    println!(
        "|---------:|-------------|-------:|-----------:|--------:|-------------:|---------:|---------:|"
    );
    let mut last = None;
    for &watchers in &scale.watchers {
        let http = over_http(&store, addr, watchers, &scale).await?;
        row(watchers, "http+cache", scale.events, &http);
        let direct = store_direct(&store, watchers, &scale).await?;
        row(watchers, "store", scale.events, &direct);
        last = Some((watchers, http, direct));
    }
    server.abort();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((watchers, http, direct)) = last {
        println!(
            "watch fan-out: {watchers} watchers, {:.0} events/s, p99 {:.1} ms (store direct: {:.0} events/s)",
            http.events_per_s, http.p99_ms, direct.events_per_s
        );
        if http.missing > 0 || direct.missing > 0 {
            return Err(format!(
                "events went missing: {} over HTTP, {} from the store",
                http.missing, direct.missing
            )
            .into());
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--clients") => clients(&args[1..]).await,
        _ => match parse_args(&args) {
            Ok(scale) => bench(scale).await,
            Err(e) => Err(e),
        },
    };
    if let Err(e) = result {
        eprintln!("watch-bench: {e}");
        std::process::exit(1);
    }
}
