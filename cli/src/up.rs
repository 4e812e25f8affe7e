//! `drover up`: one process with everything a single machine needs — the embedded
//! store and the API server today; controllers and a local agent join as they land.
//! Writes a kubeconfig for kubectl and drover alike.

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
        let (security, access) = crate::serving::security(&data_dir, addr, args.insecure)?;
        let server = access.server.clone();
        // Registered before we announce readiness, so an early Ctrl-C still stops cleanly.
        let stop = crate::signals::stop_signal()?;
        let kubeconfig = data_dir.join("kubeconfig");
        crate::serving::write_kubeconfig(&kubeconfig, &access)?;
        println!(
            "drover up: ready in {} ms — API server {server}, embedded store at {} (revision {revision}, {objects} objects)",
            started.elapsed().as_millis(),
            store_dir.display()
        );
        println!("export KUBECONFIG={}", kubeconfig.display());
        if args.exit_when_ready {
            return Ok(());
        }
        println!("drover up: press Ctrl-C to stop");
        let store: Arc<dyn Store> = Arc::new(store);
        let shutdown = async {
            stop.await;
            println!("drover up: stopping");
        };
        drover_controller::apiserver::secure::serve_with(store, listener, security, shutdown)
            .await
            .context("serving the API")?;
        anyhow::Ok(())
    })
}
