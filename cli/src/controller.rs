//! `drover controller`: the controllers alone (leader-elected), against a store — for
//! clusters where the API server runs apart (etcd). Several may run; one leads.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    #[command(flatten)]
    backend: crate::serving::StoreArgs,
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
        let store = crate::serving::open_store(&args.backend, &args.data_dir).await?;
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
            args.backend.store
        );
        drover_controller::controllers::manager::run(store, &identity, stop).await;
        println!("drover controller: stopped");
        anyhow::Ok(())
    })
}
