//! `drover`: the command users type. `up` (a single-machine cluster: embedded store +
//! API server), `server` (the API server on the embedded store or etcd), and the
//! kubectl-like verbs (`apply`, `get`, `describe`, `delete`, `scale`, `edit`, `wait`,
//! `api-resources`, `version`) that talk to an API server through a kubeconfig.

mod agent;
mod client;
mod cmd;
mod controller;
mod print;
mod server;
mod serving;
mod shim;
mod signals;
mod up;
mod yaml_lines;

use clap::{Parser, Subcommand};

/// mimalloc: the store's writer, its snapshots and the allocator allocate and free
/// millions of small objects; glibc's malloc spent a tenth of the C1M run in
/// `unlink_chunk`, `sysmalloc` and its arena lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Drover: program against your datacenter like it's a single pool of resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a single-machine cluster on the embedded store.
    Up(up::UpArgs),
    /// Run the API server alone, on the embedded store or on etcd.
    Server(server::ServerArgs),
    /// Run the node agent: register this machine and run the Tasks bound to it.
    Agent(agent::AgentArgs),
    /// Apply manifests (server-side apply): files, directories or - for stdin.
    Apply(cmd::apply::ApplyArgs),
    /// List objects or show some, as a table, YAML, JSON or names.
    Get(cmd::get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(cmd::describe::DescribeArgs),
    /// Delete objects (and wait until they are gone).
    Delete(cmd::delete::DeleteArgs),
    /// Set the number of instances of an App.
    Scale(cmd::scale::ScaleArgs),
    /// Edit an object in your editor and save it back.
    Edit(cmd::edit::EditArgs),
    /// Wait for a condition on objects, or for their deletion.
    Wait(cmd::wait::WaitArgs),
    /// List the kinds the server serves.
    ApiResources(cmd::api_resources::ApiResourcesArgs),
    /// Print the client version, and the server's when it answers.
    Version(cmd::version::VersionArgs),
    /// Print a task's output (or an app's tasks'), following with -f.
    Logs(cmd::logs::LogsArgs),
    /// Watch, list, undo or restart an App's rollouts.
    Rollout(cmd::rollout::RolloutArgs),
    /// Cordon, drain or uncordon a node.
    Node(cmd::node::NodeArgs),
    /// Run the controllers alone against a store (for etcd deployments).
    Controller(controller::ControllerArgs),
    /// Benchmarks: scheduling at scale, agent start latency.
    Bench(cmd::bench::BenchArgs),
    /// Internal: the parent process of one task (started by the agent).
    #[command(hide = true)]
    Shim(shim::ShimArgs),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One TLS provider for every connection; ring, not aws-lc-rs (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Server(args) => server::run(args),
        Command::Agent(args) => agent::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Describe(args) => cmd::describe::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Scale(args) => cmd::scale::run(args),
        Command::Edit(args) => cmd::edit::run(args),
        Command::Wait(args) => cmd::wait::run(args),
        Command::ApiResources(args) => cmd::api_resources::run(args),
        Command::Version(args) => cmd::version::run(args),
        Command::Logs(args) => cmd::logs::run(args),
        Command::Rollout(args) => cmd::rollout::run(args),
        Command::Node(args) => cmd::node::run(args),
        Command::Controller(args) => controller::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Shim(args) => shim::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<cmd::AlreadyReported>().is_some() => {
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("drover: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
