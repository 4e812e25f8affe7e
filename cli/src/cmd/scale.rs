//! `drover scale KIND/NAME --replicas=N`: a merge patch of the `scale` subresource
//! (`spec.replicas`, which is `spec.instances` for an App).

use anyhow::bail;
use serde_json::json;

use crate::client::http::MERGE_PATCH;
use crate::client::resources::{object_ref, select_named, Scope};
use crate::cmd::{block_on, report, AlreadyReported, ConnectArgs};

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// KIND/NAME…, or KIND NAME…
    #[arg(required = true, value_name = "KIND/NAME")]
    targets: Vec<String>,
    /// The new number of instances.
    #[arg(long, value_name = "N")]
    replicas: u32,
}

pub fn run(args: ScaleArgs) -> anyhow::Result<()> {
    block_on(scale(args))
}

async fn scale(args: ScaleArgs) -> anyhow::Result<()> {
    let named = select_named(&args.targets, "scale")?;
    for (info, _) in &named.objects {
        if info.scale.is_none() {
            bail!(
                "{} cannot be scaled: only kinds with a scale subresource can (App)",
                info.plural
            );
        }
    }
    let client = args.connect.client()?;
    let patch = json!({"spec": {"replicas": args.replicas}});
    let mut failed = false;
    for (info, name) in &named.objects {
        let scope = Scope::new(info, Some(client.namespace.as_str()));
        match client
            .patch(&scope.subresource(name, "scale"), &[], MERGE_PATCH, &patch)
            .await
        {
            Ok(_) => println!("{} scaled", object_ref(info, name)),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}
