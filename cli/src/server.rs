//! `drover server`: the API server alone, on the embedded store or on etcd.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StoreKind {
    Embedded,
    Etcd,
}

#[derive(clap::Args)]
pub struct ServerArgs {
    #[command(flatten)]
    backend: crate::serving::StoreArgs,
    /// Where the server keeps its certificates, tokens and kubeconfig, and (with
    /// --store embedded) the store.
    #[arg(long, env = "DROVER_DATA_DIR", default_value = "drover-data")]
    data_dir: PathBuf,
    /// Address of the API server (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Serve plain HTTP without authentication (development only).
    #[arg(long)]
    insecure: bool,
    /// A node whose agent is silent this long loses its heartbeat lease (NotReady).
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(i64).range(1..))]
    node_lease_seconds: i64,
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let store = crate::serving::open_store(&args.backend, &args.data_dir).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let (security, access) =
            crate::serving::security(&args.data_dir, addr, args.insecure, None)?;
        let kubeconfig = args.data_dir.join("kubeconfig");
        crate::serving::write_kubeconfig(&kubeconfig, &access)?;
        let stop = crate::signals::stop_signal()?;
        println!(
            "drover server: API server {} on the {:?} store",
            access.server, args.backend.store
        );
        println!("export KUBECONFIG={}", kubeconfig.display());
        let state = drover_controller::apiserver::ApiState::new(store)
            .with_node_lease_seconds(args.node_lease_seconds);
        drover_controller::apiserver::secure::serve_state_with(state, listener, security, stop)
            .await
            .context("serving the API")?;
        anyhow::Ok(())
    })
}
