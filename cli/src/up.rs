//! `drover up`: one process with everything a single machine needs — the embedded
//! store, the API server, the controllers and a local agent. Writes a kubeconfig for
//! kubectl and drover alike.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use drover_store::{EmbeddedStore, Store};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the cluster keeps its state (default: $DROVER_DATA_DIR, else ~/.local/share/drover).
    #[arg(long, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the API server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Start, report readiness, and stop (for scripts and tests).
    #[arg(long)]
    exit_when_ready: bool,
    /// Serve plain HTTP without authentication (development only).
    #[arg(long)]
    insecure: bool,
    /// Do not run a local agent (this machine then runs no tasks).
    #[arg(long)]
    no_agent: bool,
    /// Do not run the controllers (the API serves and stores, nothing reconciles).
    #[arg(long)]
    no_controllers: bool,
    /// A node whose agent is silent this long is NotReady (its heartbeat lease expires).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(i64).range(1..))]
    node_lease_seconds: i64,
    /// A NotReady node's tasks are Lost (and replaced elsewhere) after this long.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64))]
    node_lost_seconds: u64,
    /// Host ports the local agent offers to tasks, `BEGIN-END`.
    #[arg(long, value_name = "BEGIN-END", default_value = "31000-32000", value_parser = crate::agent::parse_port_range)]
    port_range: (i32, i32),
    /// Loopback address of the external-framework (Mesos v1 scheduler style) API; its
    /// URL goes to DATA_DIR/scheduler-url, its token to DATA_DIR/scheduler-token.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    scheduler_listen: SocketAddr,
}

fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/drover")
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let data_dir = args.data_dir.unwrap_or_else(default_data_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store_dir = data_dir.join("store");
        let store = EmbeddedStore::open(&store_dir)
            .with_context(|| format!("opening the embedded store in {}", store_dir.display()))?;
        let revision = store.current_revision().await?;
        let objects = store.list("/registry/", drover_store::ListOptions::default()).await?.items.len();
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let node = (!args.no_agent).then(drover_agent::config::detect_hostname);
        let (security, access) = crate::serving::security(&data_dir, addr, args.insecure, node.as_deref())?;
        let server = access.server.clone();
        // Registered before we announce readiness, so an early Ctrl-C still stops cleanly.
        let stop = crate::signals::stop_signal()?;
        let kubeconfig = data_dir.join("kubeconfig");
        crate::serving::write_kubeconfig(&kubeconfig, &access)?;
        let agent_note = node.as_deref().map(|n| format!(", local agent for node {n}")).unwrap_or_default();
        println!(
            "drover up: ready in {} ms — API server {server}, embedded store at {} (revision {revision}, {objects} objects){agent_note}",
            started.elapsed().as_millis(),
            store_dir.display()
        );
        println!("export KUBECONFIG={}", kubeconfig.display());
        if args.exit_when_ready {
            return Ok(());
        }
        println!("drover up: press Ctrl-C to stop");
        if !args.no_controllers {
            let token_file = data_dir.join("scheduler-token");
            let bound = drover_controller::framework::prepare(args.scheduler_listen, None, &token_file)
                .map_err(anyhow::Error::msg)?;
            let url = format!("http://{bound}/api/v1/scheduler");
            std::fs::write(data_dir.join("scheduler-url"), &url).context("writing scheduler-url")?;
            println!("drover up: framework scheduler API {url} (token in {})", token_file.display());
        }
        let store: Arc<dyn Store> = Arc::new(store);
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let controllers = (!args.no_controllers).then(|| {
            let store = store.clone();
            let stopped = until_stopped(stopping.clone());
            let identity = format!("drover-up-{}", std::process::id());
            let nodes = drover_controller::controllers::nodes::NodesConfig {
                lease: std::time::Duration::from_secs(args.node_lease_seconds as u64),
                lost_after: std::time::Duration::from_secs(args.node_lost_seconds),
            };
            tokio::spawn(async move { drover_controller::controllers::manager::run_with(store, &identity, nodes, stopped).await })
        });
        let server = tokio::spawn(drover_controller::apiserver::secure::serve_state_with(
            drover_controller::apiserver::ApiState::new(store)
                .with_node_lease_seconds(args.node_lease_seconds),
            listener,
            security,
            until_stopped(stopping.clone()),
        ));
        let agent = match (node, access.agent_token.clone()) {
            (Some(node), Some(token)) => {
                let mut config =
                    drover_agent::AgentConfig::new(node.clone(), node, data_dir.join("agent"));
                config.heartbeat_interval = heartbeat_for(args.node_lease_seconds);
                (config.port_range.begin, config.port_range.end) = args.port_range;
                let connection = drover_agent::client::Connection::Token {
                    server: access.server.clone(),
                    ca_file: (!args.insecure).then(|| data_dir.join("pki").join("ca.crt")),
                    token,
                };
                Some(tokio::spawn(local_agent(
                    config,
                    connection,
                    until_stopped(stopping.clone()),
                )))
            }
            _ => None,
        };
        stop.await;
        println!("drover up: stopping");
        let _ = stopping_tx.send(true);
        if let Some(agent) = agent {
            match agent.await {
                Ok(Err(e)) => eprintln!("drover up: local agent: {e:#}"),
                Err(e) => eprintln!("drover up: local agent: {e}"),
                Ok(Ok(())) => {}
            }
        }
        if let Some(controllers) = controllers {
            let _ = controllers.await;
        }
        server.await.context("the API server task")?.context("serving the API")?;
        anyhow::Ok(())
    })
}

/// The agent of this machine, in this process, talking to the API like any other.
async fn local_agent(
    config: drover_agent::AgentConfig,
    connection: drover_agent::client::Connection,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = drover_agent::client::connect(&connection)
        .await
        .context("connecting the local agent")?;
    let drivers = drover_agent::driver::runc::agent_drivers(
        Arc::new(drover_agent::driver::process::ProcessDriver::new(
            config.shim_exe.clone(),
        )),
        &config.data_dir,
    );
    // Docker where a daemon answers on its default socket; otherwise not advertised.
    let drivers = drover_agent::driver::docker::with_docker(
        drivers,
        drover_agent::driver::docker::DEFAULT_HOST,
    )
    .await;
    let logs = drover_agent::logserver::LogAuth::for_connection(&connection, client.clone());
    let agent = drover_agent::Agent::new(config, client, drivers)
        .serve_logs(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), logs);
    agent.run(shutdown).await.context("running the local agent")
}

/// The local agent heartbeats at least three times per node lease, and never less
/// often than the agent's default (5 s).
fn heartbeat_for(lease_seconds: i64) -> std::time::Duration {
    let third = std::time::Duration::from_millis((lease_seconds.max(1) as u64) * 1000 / 3);
    third.min(std::time::Duration::from_secs(5))
}
