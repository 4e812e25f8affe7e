//! `drover bench agent`: bound → Running latency of a real agent, per driver.
//!
//! In one process: the embedded store (in a temporary directory: real WAL and fsync),
//! the API server (plain HTTP on 127.0.0.1, no controllers) and one agent. N Tasks
//! already bound to the agent's node (`spec.nodeName`) are created one after another,
//! each running `sleep 600`; a watch measures, per task, the time from just before its
//! create call to the watch event showing it `Running`. The baseline, measured in the
//! same run, is the raw create → watch-event round trip of as many unbound Tasks
//! (which nothing acts on). Everything is deleted, and every task process killed, at
//! the end.
//!
//! `--driver runc` runs `/bin/sleep 600` in a busybox rootfs the command builds (from
//! the host's `busybox`, Debian's `busybox-static`); it needs root and `runc` on PATH.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::http::Client;
use crate::client::kubeconfig::ClientConfig;

/// The node of the benchmark's agent.
const NODE: &str = "bench-node";

/// How long all tasks of one driver may take to be Running.
const RUNNING_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DriverChoice {
    Process,
    Runc,
    All,
    /// Containers of the Docker daemon at --docker-host (an image is imported first).
    Docker,
}

#[derive(clap::Args, Debug)]
pub struct AgentBenchArgs {
    /// Tasks per driver.
    #[arg(long, default_value_t = 100)]
    tasks: usize,
    /// Which driver(s) to measure.
    #[arg(long, value_enum, default_value_t = DriverChoice::Process)]
    driver: DriverChoice,
    /// The Docker daemon for `--driver docker`, `unix:///PATH`.
    #[arg(long, value_name = "URL", default_value = drover_agent::driver::docker::DEFAULT_HOST)]
    docker_host: String,
}

pub fn run(args: AgentBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.tasks > 0, "--tasks must be at least 1");
    let work = tempfile::Builder::new()
        .prefix("drover-bench-agent-")
        .tempdir()
        .context("creating a temporary directory")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(bench(&args, work.path()));
    // Whatever happened, no task of the benchmark outlives it.
    kill_tasks(&work.path().join("agent").join("tasks"));
    result
}

/// Latencies in milliseconds.
#[derive(Default)]
struct Figures {
    samples: Vec<f64>,
}

impl Figures {
    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    fn row(&self, what: &str) -> String {
        format!(
            "| {what:<34} | {:>5} | {:>8.1} | {:>8.1} | {:>8.1} |",
            self.samples.len(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(100.0)
        )
    }
}

async fn bench(args: &AgentBenchArgs, work: &Path) -> anyhow::Result<()> {
    let store_dir = work.join("store");
    let store = drover_store::EmbeddedStore::open(&store_dir)
        .with_context(|| format!("opening the embedded store in {}", store_dir.display()))?;
    let store: Arc<dyn drover_store::Store> = Arc::new(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1")?;
    let server = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let api = tokio::spawn(drover_controller::apiserver::secure::serve_with(
        store,
        listener,
        drover_controller::apiserver::secure::Security::default(),
        until_stopped(stop.clone()),
    ));
    let agent = tokio::spawn(run_agent(
        server.clone(),
        work.join("agent"),
        args.docker_host.clone(),
        until_stopped(stop.clone()),
    ));
    let client = Client::new(&ClientConfig {
        context: "bench".into(),
        server: server.clone(),
        ca_pem: None,
        insecure_skip_tls_verify: false,
        bearer_token: None,
        namespace: "default".into(),
        namespace_explicit: false,
    })?;
    let drivers = wait_for_node(&client).await?;
    println!(
        "drover bench agent: {} tasks per driver, bound to node {NODE}, API server {server} on the embedded store in {}",
        args.tasks,
        store_dir.display()
    );
    println!();
    println!("| measure                            | tasks |   p50 ms |   p99 ms |   max ms |");
    println!("|------------------------------------|-------|----------|----------|----------|");
    let baseline = round_trips(&client, args.tasks).await?;
    println!("{}", baseline.row("create→watch event (baseline)"));
    let wanted: &[&str] = match args.driver {
        DriverChoice::Process => &["process"],
        DriverChoice::Runc => &["runc"],
        DriverChoice::All => &["process", "runc"],
        DriverChoice::Docker => &["docker"],
    };
    if args.driver == DriverChoice::Docker && drivers.iter().any(|d| d == "docker") {
        import_docker_image(&args.docker_host, work).await?;
    }
    let mut failed = Vec::new();
    let mut ratios = Vec::new();
    let mut notes = Vec::new();
    for driver in wanted {
        match driver_run(&client, driver, args.tasks, work, &drivers).await {
            Ok((running, started)) => {
                println!(
                    "{}",
                    running.row(&format!("{driver}: bound → Running (watch)"))
                );
                notes.push(format!(
                    "{driver}: the Task's own startedAt lies between its create and its Running event for {started} of {} tasks (startedAt has 1 s resolution)",
                    running.samples.len()
                ));
                ratios.push(format!(
                    "{driver} p50 {:.1} ms = {:.1}× the create→watch baseline",
                    running.percentile(50.0),
                    running.percentile(50.0) / baseline.percentile(50.0)
                ));
            }
            Err(e) => {
                println!("| {driver}: {e:#}");
                failed.push(format!("{driver}: {e:#}"));
            }
        }
    }
    println!();
    for r in notes.iter().chain(&ratios) {
        println!("{r}");
    }
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = agent.await {
        eprintln!("drover bench agent: the agent: {e:#}");
    }
    let _ = api.await;
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

async fn run_agent(
    server: String,
    data_dir: PathBuf,
    docker_host: String,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use drover_agent::client::{connect, Connection};
    let connection = Connection::Token {
        server,
        ca_file: None,
        token: "insecure".into(),
    };
    let client = connect(&connection).await.context("connecting the agent")?;
    let config = drover_agent::AgentConfig::new(NODE, NODE, data_dir);
    let drivers = drover_agent::driver::runc::agent_drivers(
        Arc::new(drover_agent::driver::process::ProcessDriver::new(
            config.shim_exe.clone(),
        )),
        &config.data_dir,
    );
    let drivers = drover_agent::driver::docker::with_docker(drivers, &docker_host).await;
    drover_agent::Agent::new(config, client, drivers)
        .run(shutdown)
        .await
        .context("running the agent")
}

fn collection(ns: &str) -> String {
    format!("/apis/drover.dev/v1alpha1/namespaces/{ns}/tasks")
}

/// Waits for the agent's Node; returns the drivers it offers.
async fn wait_for_node(client: &Client) -> anyhow::Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(node) = client
            .get(&format!("/apis/drover.dev/v1alpha1/nodes/{NODE}"), &[])
            .await
        {
            let drivers = node
                .pointer("/status/drivers")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .filter_map(|x| x.get("name").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if !drivers.is_empty() {
                return Ok(drivers);
            }
        }
        if Instant::now() > deadline {
            bail!("node {NODE} did not register within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create(client: &Client, ns: &str, task: &Value) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec(task)?;
    client
        .request(
            Method::POST,
            &collection(ns),
            &[],
            "application/json",
            Some(("application/json", bytes)),
        )
        .await
        .with_context(|| {
            format!(
                "creating task {}",
                task.pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            )
        })?;
    Ok(())
}

/// The current revision of a namespace's tasks (to watch from).
async fn revision(client: &Client, ns: &str) -> anyhow::Result<String> {
    let list = client.get(&collection(ns), &[("limit", "1")]).await?;
    Ok(list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .to_string())
}

/// The baseline: create → ADDED watch event of unbound Tasks, one at a time.
async fn round_trips(client: &Client, n: usize) -> anyhow::Result<Figures> {
    let ns = "bench-baseline";
    let rv = revision(client, ns).await?;
    let mut watch = client
        .watch(&collection(ns), &[("resourceVersion", rv.as_str())])
        .await?;
    let mut figures = Figures::default();
    for i in 0..n {
        let name = format!("baseline-{i}");
        let task = json!({
            "apiVersion": "drover.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"container": {"cmd": "true"}},
        });
        let t0 = Instant::now();
        create(client, ns, &task).await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .context("no watch event within 10 s")??
                .context("the watch ended")?;
            if event
                .object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                == Some(&name)
            {
                break;
            }
        }
        figures.samples.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    for i in 0..n {
        let _ = client
            .delete(&format!("{}/baseline-{i}", collection(ns)))
            .await;
    }
    Ok(figures)
}

/// The container of a benchmark task for `driver`.
fn container(driver: &str, rootfs: Option<&Path>) -> Value {
    if driver == "docker" {
        return json!({"driver": driver, "image": DOCKER_IMAGE, "command": ["/bin/sleep", "600"]});
    }
    match rootfs {
        Some(root) => json!({
            "driver": driver,
            "rootfs": root.display().to_string(),
            "command": ["/bin/sleep", "600"],
        }),
        None => json!({"driver": driver, "cmd": "exec sleep 600"}),
    }
}

/// The image docker tasks run, imported from the busybox rootfs.
const DOCKER_IMAGE: &str = "drover-bench-busybox:latest";

/// Imports the busybox rootfs into the daemon at `host` as [`DOCKER_IMAGE`].
async fn import_docker_image(host: &str, work: &Path) -> anyhow::Result<()> {
    let root = busybox_rootfs(work)?;
    let client =
        drover_agent::driver::docker::DockerClient::new(host).map_err(anyhow::Error::msg)?;
    client
        .import_dir(&root, DOCKER_IMAGE)
        .await
        .with_context(|| format!("importing {DOCKER_IMAGE} into the docker daemon at {host}"))
}

/// A busybox rootfs for runc: `/bin/busybox` and its `sh` and `sleep` links.
fn busybox_rootfs(work: &Path) -> anyhow::Result<PathBuf> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .context("busybox is not installed: apt-get install busybox-static")?;
    let root = work.join("rootfs");
    for dir in ["bin", "etc", "proc", "dev", "sys", "tmp"] {
        std::fs::create_dir_all(root.join(dir))
            .with_context(|| format!("creating {}", root.join(dir).display()))?;
    }
    std::fs::copy(busybox, root.join("bin/busybox"))
        .with_context(|| format!("copying {} into the rootfs", busybox.display()))?;
    for link in ["sh", "sleep"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(link))
            .with_context(|| format!("linking /bin/{link} in the rootfs"))?;
    }
    Ok(root)
}

/// Creates `n` bound tasks for `driver` and measures create → Running; then deletes
/// them and waits for the agent to have killed them.
async fn driver_run(
    client: &Client,
    driver: &str,
    n: usize,
    work: &Path,
    offered: &[String],
) -> anyhow::Result<(Figures, usize)> {
    if !offered.iter().any(|d| d == driver) {
        bail!(
            "node {NODE} does not offer the {driver} driver (it offers {}){}",
            offered.join(", "),
            match driver {
                "runc" => ": the runc driver needs root and runc on PATH (apt-get install runc)",
                "docker" =>
                    ": no Docker daemon answers at --docker-host (apt-get install docker.io)",
                _ => "",
            }
        );
    }
    let rootfs = match driver {
        "runc" => Some(busybox_rootfs(work)?),
        _ => None,
    };
    let ns = format!("bench-{driver}");
    let rv = revision(client, &ns).await?;
    let mut watch = client
        .watch(&collection(&ns), &[("resourceVersion", rv.as_str())])
        .await?;
    type Seen = (String, Instant, chrono::DateTime<chrono::Utc>, Value);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Seen>();
    let watcher = tokio::spawn(async move {
        while let Ok(Some(event)) = watch.next().await {
            let name = event
                .object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if tx
                .send((name, Instant::now(), chrono::Utc::now(), event.object))
                .is_err()
            {
                return;
            }
        }
    });
    let mut created: HashMap<String, (Instant, chrono::DateTime<chrono::Utc>)> = HashMap::new();
    for i in 0..n {
        let name = format!("{driver}-{i}");
        let task = json!({
            "apiVersion": "drover.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "nodeName": NODE,
                "container": container(driver, rootfs.as_deref()),
                "resources": {"cpus": 0.01, "memMiB": 16},
                "killGracePeriodSeconds": 1,
            },
        });
        created.insert(name, (Instant::now(), chrono::Utc::now()));
        create(client, &ns, &task).await?;
    }
    let mut running = Figures::default();
    let mut started = 0usize;
    let mut failures = Vec::new();
    let deadline = tokio::time::Instant::now() + RUNNING_DEADLINE;
    while running.samples.len() + failures.len() < n {
        let Ok(Some((name, at, wall, object))) = tokio::time::timeout_at(deadline, rx.recv()).await
        else {
            break;
        };
        let phase = object.pointer("/status/phase").and_then(Value::as_str);
        let Some((t0, wall0)) = created.get(&name).copied() else {
            continue;
        };
        match phase {
            Some("Running") => {
                created.remove(&name);
                running
                    .samples
                    .push(at.duration_since(t0).as_secs_f64() * 1000.0);
                let started_at = object
                    .pointer("/status/startedAt")
                    .and_then(Value::as_str)
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
                // Whole seconds: from the create's second to the Running event's.
                let (from, to) = (wall0.timestamp(), wall.timestamp() + 1);
                if started_at.is_some_and(|s| (from..=to).contains(&s.timestamp())) {
                    started += 1;
                }
            }
            Some(p @ ("Failed" | "Killed" | "Lost" | "Finished")) => {
                created.remove(&name);
                let message = object
                    .pointer("/status/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                failures.push(format!("task {name} is {p}: {message}"));
            }
            _ => {}
        }
    }
    watcher.abort();
    cleanup(client, &ns, n, driver, &work.join("agent").join("tasks")).await;
    if let Some(first) = failures.first() {
        bail!(
            "{} of {n} tasks did not run; first: {first}",
            failures.len()
        );
    }
    if running.samples.len() < n {
        bail!(
            "only {} of {n} tasks were Running after {} s",
            running.samples.len(),
            RUNNING_DEADLINE.as_secs()
        );
    }
    Ok((running, started))
}

/// Deletes the tasks and waits (up to 30 s) for the agent to have ended every one.
async fn cleanup(client: &Client, ns: &str, n: usize, driver: &str, tasks: &Path) {
    for i in 0..n {
        let _ = client
            .delete(&format!("{}/{driver}-{i}", collection(ns)))
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let checkpoints = drover_agent::lifecycle::Checkpoints::new(tasks);
        let alive = checkpoints
            .load_all()
            .iter()
            .filter(|s| s.namespace == ns && !s.phase.is_terminal())
            .count();
        if alive == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills the process group of every task the agent checkpointed (a safety net: the
/// agent kills deleted tasks, but tasks outlive an agent by design).
fn kill_tasks(tasks: &Path) {
    let checkpoints = drover_agent::lifecycle::Checkpoints::new(tasks);
    // Ended tasks are gone: their pids may be someone else's by now.
    for state in checkpoints
        .load_all()
        .into_iter()
        .filter(|s| !s.phase.is_terminal())
    {
        for pid in [state.pid, state.shim_pid].into_iter().flatten() {
            let _ = std::process::Command::new("kill")
                .args(["-9", "--", &format!("-{pid}"), &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
