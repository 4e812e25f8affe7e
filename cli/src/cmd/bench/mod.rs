//! `drover bench …`: benchmarks that print their figures and a ratio against a baseline
//! measured in the same run.

pub mod agent;
pub mod schedule;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand, Debug)]
enum BenchCommand {
    /// Simulated nodes in process; placements committed to the store (C1M).
    Schedule(schedule::ScheduleArgs),
    /// Bound → Running latency of a real agent, per driver.
    Agent(agent::AgentBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        BenchCommand::Schedule(a) => schedule::run(a),
        BenchCommand::Agent(a) => agent::run(a),
    }
}
