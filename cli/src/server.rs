//! `drover server`: the API server alone, on the embedded store or on etcd.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use drover_store::{EmbeddedStore, EtcdStore, Store};

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StoreKind {
    Embedded,
    Etcd,
}

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Which store keeps the cluster state.
    #[arg(long, value_enum, default_value = "embedded")]
    store: StoreKind,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    etcd_endpoints: Vec<String>,
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
            access.server, args.store
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
