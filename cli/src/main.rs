//! `drover`: the command users type. Today: `up` (a single-machine cluster: embedded
//! store + API server), `server` (the API server on the embedded store or etcd) and
//! `version`; the kubectl-like verbs and `agent` are next.

mod server;
mod signals;
mod up;

use clap::{Parser, Subcommand};

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
    /// Print the client version.
    Version,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Server(args) => server::run(args),
        Command::Version => {
            println!("drover {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drover: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
