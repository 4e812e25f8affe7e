//! `drover controller`: the controllers alone (leader-elected), against a store — for
//! clusters where the API server runs apart (etcd).

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {}

pub fn run(_args: ControllerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
