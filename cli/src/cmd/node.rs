//! `drover node cordon|drain|uncordon NAME`.

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    #[command(flatten)]
    connect: crate::cmd::ConnectArgs,
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let _ = args.connect;
    anyhow::bail!("not implemented yet")
}
