//! store-bench: the embedded store against a real etcd, measured in one run on one disk.
//!
//!     cargo run --release -p drover-store --bin store-bench [-- --quick] [-- --dir DIR]
//!
//! Prints a table (durable single-key puts with 1 and 64 writers, batched txn puts in
//! batches of 100 and 1,000, watch delivery p50/p99 to 100 watchers, a list of 100k keys)
//! and ends with `embedded/etcd batched-write ratio: X.XX` (batches of 1,000).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_store::{EmbeddedStore, EtcdServer, EtcdStore, ListOptions, Op, Store, Txn};
use futures::StreamExt;

struct Scale {
    single_ops: usize,
    concurrent_each: usize,
    batches_100: usize,
    batches_1000: usize,
    watch_writes: usize,
    list_keys: usize,
}

const FULL: Scale = Scale {
    single_ops: 300,
    concurrent_each: 40,
    batches_100: 300,
    batches_1000: 60,
    watch_writes: 300,
    list_keys: 100_000,
};

const QUICK: Scale = Scale {
    single_ops: 20,
    concurrent_each: 2,
    batches_100: 3,
    batches_1000: 2,
    watch_writes: 20,
    list_keys: 2_000,
};

#[derive(Default)]
struct Figures {
    single_1: f64,
    single_64: f64,
    batch_100: f64,
    batch_1000: f64,
    watch_p50_ms: f64,
    watch_p99_ms: f64,
    list_ms: f64,
    list_keys: usize,
}

fn value(i: usize) -> Vec<u8> {
    // About the size of a small Task object.
    format!(
        "{{\"apiVersion\":\"drover.dev/v1alpha1\",\"kind\":\"Task\",\"metadata\":{{\"name\":\"web-{i}\",\"namespace\":\"default\"}},\"spec\":{{\"nodeName\":\"node-{n}\",\"resources\":{{\"cpus\":0.1,\"memMiB\":64}},\"command\":\"busybox httpd -f -p $PORT0\"}}}}",
        n = i % 100
    )
    .into_bytes()
}

async fn measure(store: Arc<dyn Store>, scale: &Scale) -> anyhow::Result<Figures> {
    let mut f = Figures::default();

    // Durable single-key puts, one writer: each waits for its fsync.
    let t = Instant::now();
    for i in 0..scale.single_ops {
        store
            .create(&format!("/bench/single/{i}"), value(i), 0)
            .await?;
    }
    f.single_1 = scale.single_ops as f64 / t.elapsed().as_secs_f64();

    // 64 concurrent writers: group commit lets them share fsyncs.
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..64 {
        let store = store.clone();
        let each = scale.concurrent_each;
        tasks.push(tokio::spawn(async move {
            for i in 0..each {
                store
                    .create(&format!("/bench/c64/{w}/{i}"), value(i), 0)
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    f.single_64 = (64 * scale.concurrent_each) as f64 / t.elapsed().as_secs_f64();

    f.batch_100 = batched(&store, "b100", 100, scale.batches_100).await?;
    f.batch_1000 = batched(&store, "b1000", 1000, scale.batches_1000).await?;

    let (p50, p99) = watch_latency(&store, scale.watch_writes).await?;
    f.watch_p50_ms = p50;
    f.watch_p99_ms = p99;

    // Seed, then list everything in pages of 5,000 at one revision.
    for chunk in (0..scale.list_keys).collect::<Vec<_>>().chunks(1000) {
        let mut txn = Txn::new();
        for &i in chunk {
            txn = txn.then(Op::put(format!("/bench/list/{i:07}"), value(i)));
        }
        store.txn(txn).await?;
    }
    let t = Instant::now();
    let mut opts = ListOptions::limit(5000);
    let mut n = 0;
    loop {
        let page = store.list("/bench/list/", opts.clone()).await?;
        n += page.items.len();
        match page.continue_token {
            Some(c) => opts.continue_token = Some(c),
            None => break,
        }
    }
    f.list_ms = t.elapsed().as_secs_f64() * 1e3;
    f.list_keys = n;
    anyhow::ensure!(
        n == scale.list_keys,
        "listed {n} of {} keys",
        scale.list_keys
    );
    Ok(f)
}

async fn batched(
    store: &Arc<dyn Store>,
    tag: &str,
    size: usize,
    batches: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    for b in 0..batches {
        let mut txn = Txn::new();
        for i in 0..size {
            txn = txn.then(Op::put(format!("/bench/{tag}/{b}/{i}"), value(i)));
        }
        anyhow::ensure!(store.txn(txn).await?.succeeded, "batch {b} failed");
    }
    Ok((size * batches) as f64 / t.elapsed().as_secs_f64())
}

/// 100 watchers on one prefix; a writer puts values stamped with their send time.
async fn watch_latency(store: &Arc<dyn Store>, writes: usize) -> anyhow::Result<(f64, f64)> {
    let origin = Instant::now();
    let from = store.current_revision().await? + 1;
    let mut watchers = Vec::new();
    for _ in 0..100 {
        let mut stream = store.watch("/bench/watch/", from).await?;
        watchers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(writes);
            while lat.len() < writes {
                match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
                    Ok(Some(Ok(ev))) => {
                        let sent: u64 = String::from_utf8_lossy(&ev.kv.value).parse().unwrap_or(0);
                        let now = origin.elapsed().as_nanos() as u64;
                        lat.push(now.saturating_sub(sent) as f64 / 1e6);
                    }
                    _ => anyhow::bail!("watcher stopped after {} events", lat.len()),
                }
            }
            anyhow::Ok(lat)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..writes {
        let stamp = origin.elapsed().as_nanos() as u64;
        store
            .txn(Txn::new().then(Op::put(format!("/bench/watch/{i}"), stamp.to_string())))
            .await?;
    }
    let mut all = Vec::new();
    for w in watchers {
        all.extend(w.await??);
    }
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Ok((pct(0.50), pct(0.99)))
}

fn row(name: &str, unit: &str, e: f64, d: f64, higher_is_better: bool) {
    let ratio = if higher_is_better { e / d } else { d / e };
    println!("| {name:<34} | {e:>12.1} | {d:>12.1} | {unit:<9} | {ratio:>6.2}× |");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let scale = if quick { &QUICK } else { &FULL };

    let work = tempfile::Builder::new()
        .prefix("store-bench-")
        .tempdir_in(&dir)?;
    eprintln!(
        "store-bench: data under {} ({})",
        work.path().display(),
        if quick { "quick" } else { "full" }
    );

    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(work.path().join("embedded"))?);
    eprintln!("store-bench: measuring the embedded store …");
    let e = measure(embedded, scale).await?;
    if args.iter().any(|a| a == "--embedded-only") {
        println!(
            "embedded batched puts/s (batches of 1000): {:.0}",
            e.batch_1000
        );
        return Ok(());
    }

    let server = EtcdServer::start_in(Some(work.path()))?;
    let etcd: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(&[server.endpoint().to_string()]).await?);
    eprintln!("store-bench: measuring etcd at {} …", server.endpoint());
    let d = measure(etcd, scale).await?;

    println!(
        "| {:<34} | {:>12} | {:>12} | {:<9} | {:>7} |",
        "measure", "embedded", "etcd", "unit", "ratio"
    );
    println!(
        "|{:-<36}|{:->14}|{:->14}|{:-<11}|{:->9}|",
        "", "", "", "", ""
    );
    row(
        "durable puts, 1 writer",
        "puts/s",
        e.single_1,
        d.single_1,
        true,
    );
    row(
        "durable puts, 64 writers",
        "puts/s",
        e.single_64,
        d.single_64,
        true,
    );
    row(
        "batched txn puts, batches of 100",
        "puts/s",
        e.batch_100,
        d.batch_100,
        true,
    );
    row(
        "batched txn puts, batches of 1000",
        "puts/s",
        e.batch_1000,
        d.batch_1000,
        true,
    );
    row(
        "watch delivery p50, 100 watchers",
        "ms",
        e.watch_p50_ms,
        d.watch_p50_ms,
        false,
    );
    row(
        "watch delivery p99, 100 watchers",
        "ms",
        e.watch_p99_ms,
        d.watch_p99_ms,
        false,
    );
    row(
        &format!("list {} keys (pages of 5000)", e.list_keys),
        "ms",
        e.list_ms,
        d.list_ms,
        false,
    );
    println!(
        "embedded/etcd batched-write ratio: {:.2}",
        e.batch_1000 / d.batch_1000
    );
    Ok(())
}
