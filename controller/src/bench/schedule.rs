//! The scheduling benchmark (C1M): simulated Nodes written to the store, Apps with a mix
//! of constraints, every instance placed by the real pipeline ([`Placer`]) and its Task
//! committed in batched store transactions guarded by the nodes' revisions — a
//! conflict re-reads the nodes, undoes the batch's placements and places them again.
//!
//! Placement runs on its own thread and hands sealed batches to the committer, so
//! deciding and committing overlap. The ceiling is the same store's raw batched-write
//! rate for as many objects of the same sizes in batches of the same size, measured
//! first in the same run — on a second, fresh store of the same kind given the same
//! Nodes and Apps ([`run_with_ceiling`]), so both phases write into a store that starts
//! alike; on the placement store itself the ceiling's million objects would stay, and
//! every snapshot of the placement phase would write them again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_api::kinds::app::App;
use drover_api::kinds::node::{Node, NodeResources, PortRange};
use drover_api::ports::PortSpec;
use drover_api::{Condition, ConditionStatus, ConstraintRule};
use drover_store::{Compare, ListOptions, Op, Store, StoreError, Txn};
use serde_json::json;

use crate::allocator::counters::AppCounters;
use crate::allocator::filter::NamedConstraint;
use crate::allocator::inventory::{next_random, Amounts, Inventory, NodeState};
use crate::allocator::sampled::{port_asks, Ask, Placer};
use crate::allocator::score::Strategy;
use crate::allocator::task_template::TaskTemplate;
use crate::apiserver::objects::{key, new_uid, now_rfc3339};

pub const NAMESPACE: &str = "bench";

#[derive(Clone, Debug)]
pub struct ScheduleOptions {
    pub nodes: usize,
    pub tasks: usize,
    /// Tasks per store transaction.
    pub batch: usize,
    /// Cordon a node of each of the first N batches just before committing it, to
    /// exercise the conflict → refresh → retry path.
    pub inject_conflicts: usize,
    pub seed: u64,
    /// Store transactions in flight at once (for the ceiling too).
    pub in_flight: usize,
}

impl Default for ScheduleOptions {
    fn default() -> Self {
        ScheduleOptions {
            nodes: 10_000,
            tasks: 1_000_000,
            batch: 1000,
            inject_conflicts: 0,
            seed: 42,
            in_flight: 16,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct ScheduleReport {
    pub nodes: usize,
    pub apps: usize,
    pub tasks: usize,
    pub committed: usize,
    pub unplaced: usize,
    pub seconds: f64,
    pub placements_per_s: f64,
    pub ceiling_per_s: f64,
    pub batch_p50_ms: f64,
    pub batch_p99_ms: f64,
    pub task_p50_us: f64,
    pub task_p99_us: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rejections: BTreeMap<String, u64>,
    pub unplaced_reasons: BTreeMap<String, u64>,
    pub conflicts: usize,
    pub retried_tasks: usize,
    pub in_flight: usize,
    pub node_classes: usize,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub examined_per_task: f64,
    pub value_bytes_avg: f64,
    /// Seconds spent placing (decisions) and rendering Tasks, on the placement thread.
    pub place_seconds: f64,
    pub render_seconds: f64,
    /// CPU seconds the placement thread used (user + system), from the kernel.
    pub placer_cpu_seconds: f64,
    /// Seconds the placement thread waited for room among the batches handed to the
    /// committer (it is ahead of the store).
    pub placer_wait_seconds: f64,
    /// Task keys found in the store after the run.
    pub stored_tasks: usize,
    /// The ceiling was measured on a fresh store of its own.
    pub separate_ceiling_store: bool,
    /// Seconds waited, after the ceiling, for its store's threads to finish.
    pub settle_seconds: f64,
}

impl ScheduleReport {
    pub fn percent(&self) -> f64 {
        if self.ceiling_per_s > 0.0 {
            100.0 * self.placements_per_s / self.ceiling_per_s
        } else {
            0.0
        }
    }
}

/// One App of the simulation and what placing it needs.
struct AppPlan {
    instances: usize,
    required: Vec<NamedConstraint>,
    resources: Amounts,
    ports: Vec<Option<u16>>,
    template: TaskTemplate,
}

/// A placed, not yet committed instance.
struct Placed {
    app: u32,
    instance: i32,
    node: u32,
    ports: Vec<u16>,
}

struct Batch {
    items: Vec<(String, Vec<u8>)>,
    placed: Vec<Placed>,
    guards: Vec<(u32, i64)>,
}

enum Feedback {
    Committed,
    /// The batch conflicted: fresh node states and revisions, and its placements.
    Retry {
        fresh: Vec<(u32, NodeState, i64)>,
        placed: Vec<Placed>,
    },
}

fn node_key(name: &str) -> Result<String, BenchError> {
    let info = drover_api::find_kind("Node").ok_or(BenchError::Setup("no Node kind".into()))?;
    Ok(key(info, None, name))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Simulated Node objects: racks of 40, four zones, three sizes, capacity about twice
/// what the tasks will ask for.
fn make_nodes(opts: &ScheduleOptions) -> Vec<Node> {
    let per_node = (opts.tasks as f64 / opts.nodes.max(1) as f64).max(1.0);
    let port_end = 31000 + (per_node as i32 * 2).max(1000);
    (0..opts.nodes)
        .map(|i| {
            let rack = i / 40;
            let size = [0.75, 1.0, 1.25][i % 3];
            let mut n = Node {
                api_version: "drover.dev/v1alpha1".into(),
                kind: "Node".into(),
                ..Default::default()
            };
            n.metadata.name = Some(format!("node-{i:05}"));
            n.metadata.uid = Some(new_uid());
            n.spec.attributes = [
                ("rack".to_string(), format!("r{rack:03}")),
                ("zone".to_string(), format!("z{}", rack % 4)),
            ]
            .into();
            n.spec.port_ranges = vec![PortRange {
                begin: 31000,
                end: port_end,
            }];
            let resources = NodeResources {
                cpus: (per_node * 0.3 * 2.0 * size).ceil().max(4.0),
                mem_mib: ((per_node * 250.0 * 2.0 * size) as i64).max(4096),
                disk_mib: 1 << 20,
                gpus: 0,
                ports: Vec::new(),
            };
            let mut status = drover_api::kinds::node::NodeStatus {
                capacity: resources.clone(),
                allocatable: resources,
                ..Default::default()
            };
            status.conditions.push(Condition {
                type_: "Ready".into(),
                status: ConditionStatus::True,
                reason: Some("AgentHeartbeat".into()),
                message: None,
                last_transition_time: None,
                observed_generation: None,
            });
            n.status = Some(status);
            n
        })
        .collect()
}

/// Apps of 100–1,000 instances cycling through the constraint mix: none,
/// `hostname:UNIQUE` (+ a fixed hostPort), `rack:GROUP_BY`, `zone:IN:z1,z2`,
/// `rack:MAX_PER:k`; every other App has a dynamic port.
fn make_apps(opts: &ScheduleOptions) -> Vec<App> {
    let racks = opts.nodes.div_ceil(40).max(1);
    let mut apps = Vec::new();
    let mut left = opts.tasks;
    let mut i = 0;
    while left > 0 {
        let size = [100, 250, 500, 1000][i % 4]
            .min(left)
            .min((opts.nodes / 2).max(1));
        let mut a = App {
            api_version: "drover.dev/v1alpha1".into(),
            kind: "App".into(),
            ..Default::default()
        };
        a.metadata.name = Some(format!("app-{i:05}"));
        a.metadata.namespace = Some(NAMESPACE.into());
        a.metadata.uid = Some(new_uid());
        a.spec.instances = Some(size as i32);
        a.spec.container.cmd = Some("exec sleep 3600".into());
        a.spec.resources.cpus = Some([0.1, 0.25, 0.5][i % 3]);
        a.spec.resources.mem_mib = Some([64, 128, 256, 512][(i / 3) % 4]);
        if i % 2 == 0 {
            a.spec.ports.push(PortSpec {
                name: Some("http".into()),
                ..Default::default()
            });
        }
        a.spec.constraints = match i % 5 {
            0 => vec![],
            1 => {
                a.spec.ports.push(PortSpec {
                    name: Some("fixed".into()),
                    host_port: Some(20000 + (i % 10000) as i32),
                    ..Default::default()
                });
                vec![ConstraintRule::new("hostname", "UNIQUE", None)]
            }
            2 => vec![ConstraintRule::new("rack", "GROUP_BY", None)],
            3 => vec![ConstraintRule::new("zone", "IN", Some("z1,z2"))],
            _ => {
                let k = (2 * size).div_ceil(racks).max(1);
                vec![ConstraintRule::new("rack", "MAX_PER", Some(&k.to_string()))]
            }
        };
        apps.push(a);
        left -= size;
        i += 1;
    }
    apps
}

/// Writes `objects` (key, JSON) in transactions of `batch`.
async fn write_all(
    store: &Arc<dyn Store>,
    objects: Vec<(String, Vec<u8>)>,
    batch: usize,
) -> Result<(), BenchError> {
    let mut it = objects.into_iter().peekable();
    while it.peek().is_some() {
        let mut txn = Txn::new();
        for (k, v) in it.by_ref().take(batch.max(1)) {
            txn = txn.then(Op::put(k, v));
        }
        store.txn(txn).await?;
    }
    Ok(())
}

/// Every object under `prefix`, page by page (pages of 1,000: a page of 5,000 Nodes
/// passes etcd's 4 MiB gRPC message limit).
async fn list_all(
    store: &Arc<dyn Store>,
    prefix: &str,
) -> Result<Vec<drover_store::KeyValue>, BenchError> {
    let mut out = Vec::new();
    let mut opts = ListOptions::limit(1000);
    loop {
        let page = store.list(prefix, opts.clone()).await?;
        out.extend(page.items);
        match page.continue_token {
            Some(c) => opts.continue_token = Some(c),
            None => break,
        }
    }
    Ok(out)
}

/// Runs the benchmark on `store` (empty, or at least without a `bench` namespace),
/// measuring the ceiling on it too, before placing.
pub async fn run(
    store: Arc<dyn Store>,
    opts: ScheduleOptions,
) -> Result<ScheduleReport, BenchError> {
    run_with_ceiling(store, None, opts).await
}

/// [`run`], measuring the ceiling on `ceiling` when given: an empty store of the same
/// kind and settings, which gets the same Nodes and Apps first and is dropped after.
pub async fn run_with_ceiling(
    store: Arc<dyn Store>,
    ceiling: Option<Arc<dyn Store>>,
    opts: ScheduleOptions,
) -> Result<ScheduleReport, BenchError> {
    let batch_size = opts.batch.max(1);
    let mut report = ScheduleReport {
        nodes: opts.nodes,
        tasks: opts.tasks,
        separate_ceiling_store: ceiling.is_some(),
        ..Default::default()
    };

    // Nodes and Apps, as objects in the store.
    let nodes = make_nodes(&opts);
    let node_objects: Vec<(String, Vec<u8>)> = nodes
        .iter()
        .map(|n| {
            let k = node_key(n.metadata.name.as_deref().unwrap_or_default())?;
            Ok((k, serde_json::to_vec(n).unwrap_or_default()))
        })
        .collect::<Result<_, BenchError>>()?;
    if let Some(c) = &ceiling {
        write_all(c, node_objects.clone(), 1000).await?;
    }
    write_all(&store, node_objects, 1000).await?;
    let apps = make_apps(&opts);
    report.apps = apps.len();
    let app_info = drover_api::find_kind("App").ok_or(BenchError::Setup("no App kind".into()))?;
    let app_objects = apps
        .iter()
        .map(|a| {
            (
                key(
                    app_info,
                    Some(NAMESPACE),
                    a.metadata.name.as_deref().unwrap_or_default(),
                ),
                serde_json::to_vec(a).unwrap_or_default(),
            )
        })
        .collect::<Vec<_>>();
    if let Some(c) = &ceiling {
        write_all(c, app_objects.clone(), 1000).await?;
    }
    write_all(&store, app_objects, 1000).await?;

    // The inventory, from the Node objects as stored (with their revisions).
    let node_info =
        drover_api::find_kind("Node").ok_or(BenchError::Setup("no Node kind".into()))?;
    let stored = list_all(
        &store,
        &crate::apiserver::objects::collection_prefix(node_info, None),
    )
    .await?;
    let mut states = Vec::new();
    let mut revisions = Vec::new();
    let mut node_keys = Vec::new();
    for kv in &stored {
        let n: Node = serde_json::from_slice(&kv.value).map_err(|e| {
            BenchError::Setup(format!("stored Node {} does not parse: {e}", kv.key))
        })?;
        states.push(NodeState::from_node(&n));
        revisions.push(kv.mod_revision);
        node_keys.push(kv.key.clone());
    }

    let now = now_rfc3339();
    let plans: Vec<AppPlan> = apps
        .iter()
        .map(|a| {
            let required = a
                .spec
                .constraints
                .iter()
                .map(NamedConstraint::from_rule)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| BenchError::Setup(format!("App {:?}: {e}", a.metadata.name)))?;
            Ok(AppPlan {
                instances: a.spec.instances.unwrap_or(0) as usize,
                required,
                resources: Amounts {
                    cpus: a.spec.resources.cpus.unwrap_or(1.0),
                    mem_mib: a.spec.resources.mem_mib.unwrap_or(128),
                    disk_mib: a.spec.resources.disk_mib.unwrap_or(0),
                    gpus: a.spec.resources.gpus.unwrap_or(0),
                },
                ports: port_asks(&a.spec.ports),
                template: TaskTemplate::new(a, NAMESPACE, &now),
            })
        })
        .collect::<Result<_, BenchError>>()?;

    // The ceiling: as many Task-sized objects, same batch size, no placement. With a
    // store of its own for the ceiling, RSS is read before it: the placement store
    // reuses the memory the dropped ceiling store frees, so reading after it would
    // hide the placement store's growth.
    if ceiling.is_some() {
        report.rss_before_kib = rss_kib();
    }
    let samples: Vec<Vec<u8>> = plans
        .iter()
        .cycle()
        .take(1000.min(opts.tasks.max(1)))
        .enumerate()
        .map(|(k, p)| {
            let ports: Vec<u16> = p.ports.iter().map(|x| x.unwrap_or(31000)).collect();
            p.template
                .render(k as i32, &states[k % states.len().max(1)].name, &ports, 1)
                .1
        })
        .collect();
    report.value_bytes_avg =
        samples.iter().map(Vec::len).sum::<usize>() as f64 / samples.len().max(1) as f64;
    // The ceiling's keys have the placement's shape and order — `<tasks>/<app>-<instance>-
    // <5 hex>`, App by App — so both phases insert into the same kind of key space (a
    // B-tree's cost depends on where the keys land). On a store shared with the
    // placement they sit under a prefix of their own.
    let task_info =
        drover_api::find_kind("Task").ok_or(BenchError::Setup("no Task kind".into()))?;
    let ceiling_prefix = if ceiling.is_some() {
        crate::apiserver::objects::collection_prefix(task_info, Some(NAMESPACE))
    } else {
        format!("/drover-bench-ceiling/tasks/{NAMESPACE}/")
    };
    let depth = opts.in_flight.max(1);
    report.in_flight = depth;
    let ceiling_store = ceiling.unwrap_or_else(|| store.clone());
    let gate = Arc::new(tokio::sync::Semaphore::new(depth));
    report.ceiling_per_s = ceiling_rate(
        &ceiling_store,
        &ceiling_prefix,
        &apps,
        &samples,
        &opts,
        &gate,
    )
    .await?;
    drop(samples);
    drop(ceiling_store);
    if report.separate_ceiling_store {
        // The dropped ceiling store's writer frees its objects and its last snapshot
        // may still be writing: neither may run into the placement phase.
        let t = Instant::now();
        settle_store_threads(Duration::from_secs(120)).await;
        report.settle_seconds = t.elapsed().as_secs_f64();
    }

    // Placement on its own thread; commits here, up to `depth` transactions in flight
    // (the embedded store's group commit shares one fsync among them), as the ceiling.
    if !report.separate_ceiling_store {
        report.rss_before_kib = rss_kib();
    }
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Batch>(depth + 2);
    let (feedback_tx, feedback_rx) = std_mpsc::channel::<Feedback>();
    let inventory = Inventory::new(states);
    let seed = opts.seed;
    let keys = Arc::new(node_keys);
    let started = Instant::now();
    let placer_thread = std::thread::Builder::new()
        .name("bench-placer".into())
        .spawn(move || {
            place_all(
                plans,
                inventory,
                revisions,
                seed,
                batch_size,
                batch_tx,
                feedback_rx,
            )
        })
        .map_err(|e| BenchError::Setup(format!("placement thread: {e}")))?;

    let mut conflicts_injected = 0;
    let mut commits = Vec::new();
    while let Some(mut b) = batch_rx.recv().await {
        if conflicts_injected < opts.inject_conflicts {
            if let Some((node, _)) = b.guards.first() {
                cordon(&store, &keys[*node as usize]).await?;
                conflicts_injected += 1;
            }
        }
        // The transaction is built before waiting for room, as the ceiling's are: a
        // freed slot is filled at once and the writer finds as many in its next group.
        let txn = guarded_txn(&keys, &mut b);
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let (store, keys, feedback) = (store.clone(), keys.clone(), feedback_tx.clone());
        commits.push(tokio::spawn(async move {
            let out = commit(&store, &keys, txn, b, &feedback).await;
            drop(permit);
            out
        }));
    }
    for c in commits {
        match c
            .await
            .map_err(|e| BenchError::Setup(format!("committer: {e}")))??
        {
            Committed::All(n) => report.committed += n,
            Committed::Conflict(n) => {
                report.conflicts += 1;
                report.retried_tasks += n;
            }
        }
    }
    drop(feedback_tx);
    let seconds = started.elapsed().as_secs_f64();
    let outcome = placer_thread
        .join()
        .map_err(|_| BenchError::Setup("the placement thread panicked".into()))?;
    report.rss_after_kib = rss_kib();
    report.seconds = seconds;
    report.placements_per_s = report.committed as f64 / seconds.max(1e-9);
    let mut per_batch = outcome.batch_ms;
    per_batch.sort_by(f64::total_cmp);
    let mut per_task = outcome.task_us;
    per_task.sort_by(f64::total_cmp);
    report.batch_p50_ms = percentile(&per_batch, 0.5);
    report.batch_p99_ms = percentile(&per_batch, 0.99);
    report.task_p50_us = percentile(&per_task, 0.5);
    report.task_p99_us = percentile(&per_task, 0.99);
    report.rejections = outcome.rejections;
    report.unplaced = outcome.unplaced;
    report.unplaced_reasons = outcome.unplaced_reasons;
    report.node_classes = outcome.classes;
    report.cache_hits = outcome.cache_hits;
    report.cache_misses = outcome.cache_misses;
    report.examined_per_task = outcome.examined as f64 / outcome.decisions.max(1) as f64;
    report.place_seconds = outcome.place_seconds;
    report.render_seconds = outcome.render_seconds;
    report.placer_cpu_seconds = outcome.cpu_seconds;
    report.placer_wait_seconds = outcome.send_wait_seconds;

    // What the store holds.
    let prefix = crate::apiserver::objects::collection_prefix(task_info, Some(NAMESPACE));
    report.stored_tasks = count_keys(&store, &prefix).await?;
    Ok(report)
}

/// The store's raw batched-write rate: `opts.tasks` objects of the sampled Task sizes,
/// keys of the placement's shape and order, in batches of `opts.batch`, with as many
/// transactions in flight as `gate` allows; no placement, no guards.
async fn ceiling_rate(
    store: &Arc<dyn Store>,
    prefix: &str,
    apps: &[App],
    samples: &[Vec<u8>],
    opts: &ScheduleOptions,
    gate: &Arc<tokio::sync::Semaphore>,
) -> Result<f64, BenchError> {
    let batch_size = opts.batch.max(1);
    let mut ceiling_keys = apps
        .iter()
        .flat_map(|a| {
            let name = a.metadata.name.clone().unwrap_or_default();
            (0..a.spec.instances.unwrap_or(0).max(0)).map(move |k| (name.clone(), k))
        })
        .cycle();
    let mut suffix: u64 = 0x9E37_79B9_7F4A_7C15;
    let t = Instant::now();
    let mut i = 0;
    let mut writes = Vec::new();
    while i < opts.tasks {
        let mut txn = Txn::new();
        for _ in 0..batch_size.min(opts.tasks - i) {
            let (app, instance) = ceiling_keys.next().unwrap_or_default();
            // xorshift: five hex digits like a Task name's uid part.
            suffix ^= suffix << 13;
            suffix ^= suffix >> 7;
            suffix ^= suffix << 17;
            txn = txn.then(Op::put(
                format!("{prefix}{app}-{instance}-{:05x}", suffix & 0xF_FFFF),
                samples[i % samples.len()].clone(),
            ));
            i += 1;
        }
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            let out = store.txn(txn).await;
            drop(permit);
            out
        }));
    }
    for w in writes {
        w.await
            .map_err(|e| BenchError::Setup(format!("ceiling writer: {e}")))??;
    }
    Ok(opts.tasks as f64 / t.elapsed().as_secs_f64().max(1e-9))
}

/// Waits (up to `limit`) until this process runs no embedded-store snapshot thread and
/// at most one writer thread (the placement store's; the caller holds no other embedded
/// store) — read from the thread names in `/proc/self/task`, the only view of a dropped
/// store's background work.
async fn settle_store_threads(limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let (mut writers, mut snapshots) = (0, 0);
        if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
            for t in tasks.flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                if comm.starts_with("drover-store-wr") {
                    writers += 1;
                } else if comm.starts_with("drover-store-sn") {
                    snapshots += 1;
                }
            }
        }
        if writers <= 1 && snapshots == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count_keys(store: &Arc<dyn Store>, prefix: &str) -> Result<usize, BenchError> {
    let mut n = 0;
    let mut opts = ListOptions::limit(2000);
    loop {
        let page = store.list(prefix, opts.clone()).await?;
        n += page.items.len();
        match page.continue_token {
            Some(c) => opts.continue_token = Some(c),
            None => break,
        }
    }
    Ok(n)
}

/// Someone else's write: the node is cordoned (its revision moves on).
async fn cordon(store: &Arc<dyn Store>, key: &str) -> Result<(), BenchError> {
    let Some(kv) = store.get(key).await? else {
        return Ok(());
    };
    let mut obj: serde_json::Value = serde_json::from_slice(&kv.value)
        .map_err(|e| BenchError::Setup(format!("stored Node {key} does not parse: {e}")))?;
    obj["spec"]["unschedulable"] = json!(true);
    store
        .update(
            key,
            serde_json::to_vec(&obj).unwrap_or_default(),
            kv.mod_revision,
            0,
        )
        .await?;
    Ok(())
}

enum Committed {
    All(usize),
    Conflict(usize),
}

/// A batch's transaction: its Tasks if absent (taken out of the batch), guarded by the
/// revisions its placements saw of their nodes.
fn guarded_txn(keys: &[String], b: &mut Batch) -> Txn {
    let mut txn = Txn::new();
    for (node, rev) in &b.guards {
        txn = txn.when(Compare::mod_revision(keys[*node as usize].clone(), *rev));
    }
    for (k, v) in std::mem::take(&mut b.items) {
        txn = txn.when(Compare::absent(k.clone())).then(Op::put(k, v));
    }
    txn
}

/// Commits one batch's transaction. On a conflict the nodes are read again and the
/// batch (its guards and placements) goes back to the placement thread.
async fn commit(
    store: &Arc<dyn Store>,
    keys: &[String],
    txn: Txn,
    b: Batch,
    feedback: &std_mpsc::Sender<Feedback>,
) -> Result<Committed, BenchError> {
    let n = b.placed.len();
    if store.txn(txn).await?.succeeded {
        let _ = feedback.send(Feedback::Committed);
        return Ok(Committed::All(n));
    }
    let mut fresh = Vec::new();
    for (node, _) in &b.guards {
        if let Some(kv) = store.get(&keys[*node as usize]).await? {
            let parsed: Node = serde_json::from_slice(&kv.value).map_err(|e| {
                BenchError::Setup(format!("stored Node {} does not parse: {e}", kv.key))
            })?;
            fresh.push((*node, NodeState::from_node(&parsed), kv.mod_revision));
        }
    }
    let _ = feedback.send(Feedback::Retry {
        fresh,
        placed: b.placed,
    });
    Ok(Committed::Conflict(n))
}

#[derive(Default)]
struct PlaceOutcome {
    batch_ms: Vec<f64>,
    task_us: Vec<f64>,
    rejections: BTreeMap<String, u64>,
    unplaced: usize,
    unplaced_reasons: BTreeMap<String, u64>,
    classes: usize,
    cache_hits: u64,
    cache_misses: u64,
    examined: u64,
    decisions: u64,
    place_seconds: f64,
    render_seconds: f64,
    cpu_seconds: f64,
    send_wait_seconds: f64,
}

/// The placement thread: every instance of every App, in App order; retries first.
fn place_all(
    plans: Vec<AppPlan>,
    inventory: Inventory,
    mut revisions: Vec<i64>,
    seed: u64,
    batch_size: usize,
    batches: tokio::sync::mpsc::Sender<Batch>,
    feedback: std_mpsc::Receiver<Feedback>,
) -> PlaceOutcome {
    let mut out = PlaceOutcome::default();
    let mut placer = Placer::new(inventory, seed);
    out.classes = placer.classes();
    let asks: Vec<Ask<'_>> = plans
        .iter()
        .map(|p| {
            Ask::new(
                p.resources,
                p.ports.clone(),
                &p.required,
                &[],
                Strategy::Spread,
            )
        })
        .collect();
    let mut counters: Vec<AppCounters> = plans
        .iter()
        .map(|p| AppCounters::new(&p.required))
        .collect();
    let mut next_instance: Vec<i32> = vec![0; plans.len()];
    let mut retry: VecDeque<(u32, i32)> = VecDeque::new();
    let mut app = 0usize;
    let mut in_flight = 0usize;
    let mut seen: Vec<u32> = vec![u32::MAX; placer.nodes().len()];
    let mut batch_no: u32 = 0;
    let mut current = new_batch(batch_size);
    let mut batch_started: Option<Instant> = None;
    let mut place_time = Duration::ZERO;
    let mut render_time = Duration::ZERO;
    let mut send_wait = Duration::ZERO;
    out.task_us.reserve(plans.iter().map(|p| p.instances).sum());

    let apply = |fb: Feedback,
                 placer: &mut Placer,
                 counters: &mut [AppCounters],
                 revisions: &mut [i64],
                 retry: &mut VecDeque<(u32, i32)>,
                 in_flight: &mut usize| {
        *in_flight -= 1;
        if let Feedback::Retry { fresh, placed } = fb {
            for p in placed.iter().rev() {
                placer.unbind(
                    p.node as usize,
                    &asks[p.app as usize],
                    &p.ports,
                    &mut counters[p.app as usize],
                );
                retry.push_front((p.app, p.instance));
            }
            for (i, state, rev) in fresh {
                placer.refresh_node(i as usize, &state);
                revisions[i as usize] = rev;
            }
        }
    };

    loop {
        // Feedback is taken between batches: a retried batch is placed first in the next
        // one (checking the channel for every task cost 4 % of this thread).
        while current.items.is_empty() {
            let Ok(fb) = feedback.try_recv() else {
                break;
            };
            apply(
                fb,
                &mut placer,
                &mut counters,
                &mut revisions,
                &mut retry,
                &mut in_flight,
            );
        }
        // The next instance: a retried one, else the next of the current App.
        let next = retry.pop_front().or_else(|| {
            while app < plans.len() && next_instance[app] as usize >= plans[app].instances {
                app += 1;
            }
            (app < plans.len()).then(|| {
                next_instance[app] += 1;
                (app as u32, next_instance[app] - 1)
            })
        });
        let Some((a, instance)) = next else {
            if !current.items.is_empty() {
                let sealed = std::mem::replace(&mut current, new_batch(batch_size));
                seal(&mut out, &mut batch_started);
                let waited = Instant::now();
                if batches.blocking_send(sealed).is_err() {
                    break;
                }
                send_wait += waited.elapsed();
                in_flight += 1;
                batch_no += 1;
                continue;
            }
            if in_flight == 0 {
                break;
            }
            match feedback.recv() {
                Ok(fb) => apply(
                    fb,
                    &mut placer,
                    &mut counters,
                    &mut revisions,
                    &mut retry,
                    &mut in_flight,
                ),
                Err(_) => break,
            }
            continue;
        };
        let ai = a as usize;
        let t = Instant::now();
        batch_started.get_or_insert(t);
        let decision = placer.place(&asks[ai], &counters[ai]);
        let placed = match decision {
            Ok(d) => {
                out.examined += d.examined as u64;
                out.decisions += 1;
                placer
                    .bind(d.node, &asks[ai], &mut counters[ai])
                    .map(|ports| (d.node, ports))
            }
            Err(why) => {
                out.unplaced += 1;
                *out.unplaced_reasons.entry(why.to_string()).or_insert(0) += 1;
                None
            }
        };
        let t2 = Instant::now();
        out.task_us.push((t2 - t).as_secs_f64() * 1e6);
        place_time += t2 - t;
        let Some((node, ports)) = placed else {
            continue;
        };
        let node_name = &placer.nodes()[node].name;
        let item = plans[ai].template.render(
            instance,
            node_name,
            &ports,
            (u128::from(next_random()) << 64) | u128::from(next_random()),
        );
        render_time += t2.elapsed();
        current.items.push(item);
        if seen[node] != batch_no {
            seen[node] = batch_no;
            current.guards.push((node as u32, revisions[node]));
        }
        current.placed.push(Placed {
            app: a,
            instance,
            node: node as u32,
            ports,
        });
        if current.items.len() >= batch_size {
            let sealed = std::mem::replace(&mut current, new_batch(batch_size));
            seal(&mut out, &mut batch_started);
            let waited = Instant::now();
            if batches.blocking_send(sealed).is_err() {
                break;
            }
            send_wait += waited.elapsed();
            in_flight += 1;
            batch_no += 1;
        }
    }
    out.rejections = std::mem::take(&mut placer.rejections);
    out.cache_hits = placer.cache.hits;
    out.cache_misses = placer.cache.misses;
    out.place_seconds = place_time.as_secs_f64();
    out.render_seconds = render_time.as_secs_f64();
    out.cpu_seconds = thread_cpu_seconds();
    out.send_wait_seconds = send_wait.as_secs_f64();
    out
}

/// The calling thread's CPU time (user + system) so far, from
/// `/proc/thread-self/stat` (clock ticks: 100 per second on Linux); 0 where unreadable.
fn thread_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // Fields after the command (which may hold spaces), from field 3 on: utime is the
    // 14th field, stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn new_batch(size: usize) -> Batch {
    Batch {
        items: Vec::with_capacity(size),
        placed: Vec::with_capacity(size),
        guards: Vec::new(),
    }
}

fn seal(out: &mut PlaceOutcome, started: &mut Option<Instant>) {
    if let Some(s) = started.take() {
        out.batch_ms.push(s.elapsed().as_secs_f64() * 1e3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn small(inject: usize) -> ScheduleReport {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(drover_store::EmbeddedStore::open(dir.path()).expect("store"));
        let opts = ScheduleOptions {
            nodes: 60,
            tasks: 2000,
            batch: 100,
            inject_conflicts: inject,
            seed: 1,
            in_flight: 2,
        };
        run(store, opts).await.expect("bench runs")
    }

    /// With a store of its own for the ceiling, the ceiling's objects land there and
    /// only the Tasks in the placement store.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_ceiling_can_have_a_store_of_its_own() {
        let (a, b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let store: Arc<dyn Store> =
            Arc::new(drover_store::EmbeddedStore::open(a.path()).expect("store"));
        let ceiling: Arc<dyn Store> =
            Arc::new(drover_store::EmbeddedStore::open(b.path()).expect("store"));
        let opts = ScheduleOptions {
            nodes: 60,
            tasks: 1000,
            batch: 100,
            inject_conflicts: 0,
            seed: 2,
            in_flight: 2,
        };
        let r = run_with_ceiling(store.clone(), Some(ceiling), opts)
            .await
            .expect("bench runs");
        assert!(r.separate_ceiling_store);
        assert!(r.settle_seconds < 60.0, "{}", r.settle_seconds);
        // The run dropped the ceiling store and waited for its threads: it reopens.
        let ceiling: Arc<dyn Store> =
            Arc::new(drover_store::EmbeddedStore::open(b.path()).expect("reopens"));
        assert_eq!(r.unplaced, 0, "{:?}", r.unplaced_reasons);
        assert_eq!((r.committed, r.stored_tasks), (1000, 1000));
        assert!(r.ceiling_per_s > 0.0);
        assert_eq!(
            count_keys(&store, "/drover-bench-ceiling/")
                .await
                .expect("count"),
            0
        );
        // The ceiling's Task-shaped keys went to its own store.
        let tasks = crate::apiserver::objects::collection_prefix(
            drover_api::find_kind("Task").expect("Task"),
            Some(NAMESPACE),
        );
        assert_eq!(count_keys(&ceiling, &tasks).await.expect("count"), 1000);
        let nodes = drover_api::find_kind("Node").expect("Node");
        let prefix = crate::apiserver::objects::collection_prefix(nodes, None);
        assert_eq!(count_keys(&ceiling, &prefix).await.expect("count"), 60);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_task_is_committed_and_stored() {
        let r = small(0).await;
        assert_eq!(r.committed, 2000);
        assert_eq!(r.stored_tasks, 2000);
        assert_eq!(r.unplaced, 0, "{:?}", r.unplaced_reasons);
        assert_eq!(r.conflicts, 0);
        assert!(r.placements_per_s > 0.0 && r.ceiling_per_s > 0.0);
    }

    /// A node cordoned between placement and commit fails the batch's revision guard;
    /// the batch is placed again on the refreshed inventory and committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_conflict_refreshes_and_retries() {
        let r = small(3).await;
        assert!(r.conflicts >= 3, "{r:?}");
        assert_eq!(r.committed, 2000);
        assert_eq!(r.stored_tasks, 2000);
        assert!(
            r.rejections.contains_key("node unschedulable"),
            "{:?}",
            r.rejections
        );
    }
}
