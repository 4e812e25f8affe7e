//! `drover controller`: the controllers alone (leader-elected), against a store — for
//! clusters where the API server runs apart (etcd). Several may run; one leads.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use drover_store::{EmbeddedStore, EtcdStore, Store};

use crate::server::StoreKind;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Which store keeps the cluster state.
    #[arg(long, value_enum, default_value = "embedded")]
    store: StoreKind,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
    /// The data directory whose `store/` holds the embedded store (with --store
    /// embedded; only one process can open it, so not while `drover up` or `drover
    /// server` use it).
    #[arg(long, env = "DROVER_DATA_DIR", default_value = "drover-data")]
    data_dir: PathBuf,
    /// Name of this process in the leader lease (default: controller-HOST-PID).
    #[arg(long)]
    identity: Option<String>,
}

pub fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store: Arc<dyn Store> =
            match args.store {
                StoreKind::Embedded => {
                    let dir = args.data_dir.join("store");
                    Arc::new(EmbeddedStore::open(&dir).with_context(|| {
                        format!("opening the embedded store in {}", dir.display())
                    })?)
                }
                StoreKind::Etcd => Arc::new(
                    EtcdStore::connect(&args.etcd_endpoints)
                        .await
                        .with_context(|| {
                            format!("connecting to etcd at {}", args.etcd_endpoints.join(","))
                        })?,
                ),
            };
        let identity = args.identity.unwrap_or_else(|| {
            format!(
                "controller-{}-{}",
                drover_agent::config::detect_hostname(),
                std::process::id()
            )
        });
        let stop = crate::signals::stop_signal()?;
        println!(
            "drover controller: {identity} on the {:?} store, waiting for the leader lease",
            args.store
        );
        drover_controller::controllers::manager::run(store, &identity, stop).await;
        println!("drover controller: stopped");
        anyhow::Ok(())
    })
}
