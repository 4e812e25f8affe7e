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
        let store: Arc<dyn Store> = Arc::new(store);
        let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
        let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let controllers = (!args.no_controllers).then(|| {
            let store = store.clone();
            let stopped = until_stopped(stopping.clone());
            let identity = format!("drover-up-{}", std::process::id());
            tokio::spawn(async move { drover_controller::controllers::manager::run(store, &identity, stopped).await })
        });
        let server = tokio::spawn(drover_controller::apiserver::secure::serve_with(
            store,
            listener,
            security,
            until_stopped(stopping.clone()),
        ));
        let agent = match (node, access.agent_token.clone()) {
            (Some(node), Some(token)) => Some(tokio::spawn(local_agent(
                node,
                access.server.clone(),
                token,
                (!args.insecure).then(|| data_dir.join("pki").join("ca.crt")),
                data_dir.join("agent"),
                until_stopped(stopping.clone()),
            ))),
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
    node: String,
    server: String,
    token: String,
    ca_file: Option<PathBuf>,
    data_dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use drover_agent::client::{connect, Connection};
    let connection = Connection::Token {
        server,
        ca_file,
        token,
    };
    let client = connect(&connection)
        .await
        .context("connecting the local agent")?;
    let config = drover_agent::AgentConfig::new(node.clone(), node, data_dir);
    let agent = drover_agent::Agent::new(
        config,
        client,
        Arc::new(drover_agent::driver::process::ProcessDriver::default()),
    );
    agent.run(shutdown).await.context("running the local agent")
}
