//! `drover up`: one process with everything a single machine needs. Today that is the
//! embedded store, opened (or recovered) in the data directory; the API server,
//! controllers and a local agent join it as they land.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use drover_store::{EmbeddedStore, Store};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the cluster keeps its state (default: $DROVER_DATA_DIR, else ~/.local/share/drover).
    #[arg(long, env = "DROVER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Start, report readiness, and stop (for scripts and tests).
    #[arg(long)]
    exit_when_ready: bool,
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
        println!(
            "drover up: ready in {} ms — embedded store at {} (revision {revision}, {objects} objects)",
            started.elapsed().as_millis(),
            store_dir.display()
        );
        if args.exit_when_ready {
            return Ok(());
        }
        println!("drover up: press Ctrl-C to stop");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        println!("drover up: stopping");
        drop(store);
        anyhow::Ok(())
    })
}
