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
    /// Serve the external-framework (Mesos v1 scheduler style) API on this loopback
    /// address while leading (default: off). See docs/frameworks.md.
    #[arg(long, value_name = "ADDR")]
    scheduler_listen: Option<std::net::SocketAddr>,
    /// Bearer token of the scheduler API (default: a random one); written to
    /// DATA_DIR/scheduler-token either way.
    #[arg(long, env = "DROVER_SCHEDULER_TOKEN", hide_env_values = true)]
    scheduler_token: Option<String>,
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
        if let Some(addr) = args.scheduler_listen {
            let token_file = args.data_dir.join("scheduler-token");
            let bound = drover_controller::framework::prepare(addr, args.scheduler_token.clone(), &token_file)
                .map_err(anyhow::Error::msg)?;
            println!(
                "drover controller: scheduler API http://{bound}/api/v1/scheduler while leading (token in {})",
                token_file.display()
            );
        }
        println!(
            "drover controller: {identity} on the {:?} store, waiting for the leader lease",
            args.backend.store
        );
        drover_controller::controllers::manager::run(store, &identity, stop).await;
        println!("drover controller: stopped");
        anyhow::Ok(())
    })
}
