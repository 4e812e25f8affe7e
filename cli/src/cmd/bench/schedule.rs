//! `drover bench schedule`: simulated nodes in process, every instance placed by the
//! real allocator and committed to the store in batched transactions (C1M). The last
//! line is `placements/s: N (ceiling M/s, P%)`, the ceiling being the same store's raw
//! batched-write rate for as many objects of the same sizes, measured in the same run
//! on a second, fresh store of the same kind (another embedded store, another etcd we
//! start) holding the same Nodes and Apps: both phases start from the same store.
//!
//! Two identical write phases back to back on this shared machine differ by up to a
//! factor of two now and then (one ceiling-vs-ceiling pair measured 50 %, most 92–126 %),
//! so one pair of phases is a noisy ratio. The run repeats the whole measurement
//! `--rounds` times on fresh stores, prints every round, and reports the median round.

use std::sync::Arc;

use drover_controller::bench::schedule::{run_with_ceiling, ScheduleOptions, ScheduleReport};
use drover_store::{EmbeddedStore, EtcdServer, EtcdStore, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Embedded,
    Etcd,
}

#[derive(clap::Args, Debug)]
pub struct ScheduleArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Tasks to place and commit.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: usize,
    /// `embedded` (in a temporary directory: real WAL and fsync) or `etcd`.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// Use this etcd instead of starting one (comma-separated URLs).
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Tasks per store transaction.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Cordon a node just before each of the first N commits (exercises conflict retry).
    #[arg(long, default_value_t = 0)]
    inject_conflicts: usize,
    /// Store transactions in flight at once (the ceiling is measured the same way).
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Seed of the node walk order.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Whole measurements (ceiling, then placement), each on fresh stores; the report
    /// is the median round by P.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

pub fn run(args: ScheduleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes > 0, "--nodes must be at least 1");
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let work = tempfile::Builder::new()
        .prefix("drover-bench-schedule-")
        .tempdir()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(
        args.rounds == 1 || args.etcd_endpoints.is_empty(),
        "--rounds {} needs a fresh store per round: leave out --etcd-endpoints (the bench \
         starts its own etcd) or pass --rounds 1",
        args.rounds
    );
    let opts = ScheduleOptions {
        nodes: args.nodes,
        tasks: args.tasks,
        batch: args.batch,
        inject_conflicts: args.inject_conflicts,
        seed: args.seed,
        in_flight: args.in_flight,
    };
    let mut reports = Vec::new();
    for round in 1..=args.rounds {
        let dir = work.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&dir)?;
        // Kept alive until the round ends; dropping them stops etcd.
        let mut etcd: Vec<EtcdServer> = Vec::new();
        let (store, label, ceiling) = open_stores(&args, &dir, &runtime, &mut etcd)?;
        if round == 1 {
            println!(
                "scheduling {} tasks on {} simulated nodes, store {label}, batches of {}, {} in flight, {} round(s)",
                args.tasks, args.nodes, args.batch, args.in_flight, args.rounds
            );
        }
        let report = runtime.block_on(run_with_ceiling(store, ceiling, opts.clone()))?;
        drop(etcd);
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "round {round}: placements/s {:.0} (ceiling {:.0}/s, {:.0}%), {} of {} committed in {:.2} s",
            report.placements_per_s,
            report.ceiling_per_s,
            report.percent(),
            report.committed,
            report.tasks,
            report.seconds
        );
        anyhow::ensure!(
            report.committed == report.tasks,
            "round {round}: only {} of {} tasks were committed ({} unplaced)",
            report.committed,
            report.tasks,
            report.unplaced
        );
        reports.push(report);
    }
    // RSS per task from the first round: later rounds reuse memory earlier ones freed.
    let (rss_before, rss_after) = (reports[0].rss_before_kib, reports[0].rss_after_kib);
    reports.sort_by(|a, b| a.percent().total_cmp(&b.percent()));
    let mut median = reports[(reports.len() - 1) / 2].clone();
    median.rss_before_kib = rss_before;
    median.rss_after_kib = rss_after;
    if reports.len() > 1 {
        println!(
            "P by round, lowest first: {}; the median round follows",
            reports
                .iter()
                .map(|r| format!("{:.0}%", r.percent()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    print_report(&median);
    Ok(())
}

type Stores = (Arc<dyn Store>, String, Option<Arc<dyn Store>>);

/// One round's stores: the placement store, its label, and the ceiling's fresh store of
/// the same kind (none with `--etcd-endpoints`: the ceiling goes to that etcd too).
fn open_stores(
    args: &ScheduleArgs,
    dir: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
    etcd: &mut Vec<EtcdServer>,
) -> anyhow::Result<Stores> {
    let open_embedded = |name: &str| -> anyhow::Result<(Arc<dyn Store>, String)> {
        let dir = dir.join(name);
        let store = EmbeddedStore::open(&dir)
            .map_err(|e| anyhow::anyhow!("opening the embedded store in {}: {e}", dir.display()))?;
        Ok((Arc::new(store), format!("embedded ({})", dir.display())))
    };
    Ok(match args.store {
        StoreKind::Embedded => {
            let (store, label) = open_embedded("store")?;
            let (ceiling, _) = open_embedded("ceiling-store")?;
            (store, label, Some(ceiling))
        }
        StoreKind::Etcd => {
            let (endpoints, ceiling) = if args.etcd_endpoints.is_empty() {
                let server = EtcdServer::start_in(Some(dir))?;
                let other = EtcdServer::start_in(Some(dir))?;
                let e = vec![server.endpoint().to_string()];
                let c = vec![other.endpoint().to_string()];
                etcd.push(server);
                etcd.push(other);
                (e, Some(c))
            } else {
                // Someone else's etcd: the ceiling goes to it too, before placing.
                (args.etcd_endpoints.clone(), None)
            };
            let store: Arc<dyn Store> = Arc::new(runtime.block_on(EtcdStore::connect(&endpoints))?);
            let ceiling = match ceiling {
                Some(c) => {
                    Some(Arc::new(runtime.block_on(EtcdStore::connect(&c))?) as Arc<dyn Store>)
                }
                None => None,
            };
            (store, format!("etcd ({})", endpoints.join(",")), ceiling)
        }
    })
}

fn print_report(r: &ScheduleReport) {
    println!(
        "apps: {}   node classes: {}   avg Task object: {:.0} bytes",
        r.apps, r.node_classes, r.value_bytes_avg
    );
    println!(
        "committed: {} of {} tasks in {:.2} s ({} unplaced); {} task keys in the store",
        r.committed, r.tasks, r.seconds, r.unplaced, r.stored_tasks
    );
    println!(
        "ceiling measured on {}",
        if r.separate_ceiling_store {
            format!(
                "a fresh store of the same kind holding the same Nodes and Apps (then {:.1} s for its threads to finish)",
                r.settle_seconds
            )
        } else {
            "the same store, before placing (its objects stay during placement)".to_string()
        }
    );
    println!(
        "placement thread: {:.2} s of CPU ({:.2} µs per task), {:.2} s waiting for the committer; deciding {:.2} s, rendering Tasks {:.2} s (wall); {:.1} nodes examined per task; class cache {} hits / {} misses",
        r.placer_cpu_seconds,
        r.placer_cpu_seconds * 1e6 / r.tasks.max(1) as f64,
        r.placer_wait_seconds,
        r.place_seconds,
        r.render_seconds,
        r.examined_per_task,
        r.cache_hits,
        r.cache_misses
    );
    println!(
        "decision latency: per task p50 {:.2} µs, p99 {:.2} µs; per batch p50 {:.2} ms, p99 {:.2} ms",
        r.task_p50_us, r.task_p99_us, r.batch_p50_ms, r.batch_p99_ms
    );
    let delta = r.rss_after_kib.saturating_sub(r.rss_before_kib);
    println!(
        "RSS (round 1): {} MiB before, {} MiB after: {:.0} bytes per task (the whole process: with the embedded store, its copy of every Task too)",
        r.rss_before_kib / 1024,
        r.rss_after_kib / 1024,
        delta as f64 * 1024.0 / r.tasks.max(1) as f64
    );
    println!(
        "store conflicts: {} batches ({} tasks placed again)",
        r.conflicts, r.retried_tasks
    );
    println!("rejections by reason (nodes examined and passed over):");
    let mut reasons: Vec<(&String, &u64)> = r.rejections.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    const SHOWN: usize = 12;
    for (reason, n) in reasons.iter().take(SHOWN) {
        println!("  {n:>12}  {reason}");
    }
    if reasons.len() > SHOWN {
        let rest: u64 = reasons.iter().skip(SHOWN).map(|(_, n)| **n).sum();
        println!(
            "  {rest:>12}  ({} more reasons, e.g. other Apps' fixed host ports)",
            reasons.len() - SHOWN
        );
    }
    for (reason, n) in &r.unplaced_reasons {
        println!("  unplaced {n}: {reason}");
    }
    println!(
        "placements/s: {:.0} (ceiling {:.0}/s, {:.0}%)",
        r.placements_per_s,
        r.ceiling_per_s,
        r.percent()
    );
}
