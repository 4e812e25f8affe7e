//! `drover logs task/NAME|app/NAME [-f] [--tail N]`: a task's output, through the API server.

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    connect: crate::cmd::ConnectArgs,
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let _ = args.connect;
    anyhow::bail!("not implemented yet")
}
