//! `drover version`: the client's version, and the server's `/version` when the
//! kubeconfig names a server that answers.

use std::time::Duration;

use serde_json::Value;

use crate::cmd::{block_on, ConnectArgs};

#[derive(clap::Args, Debug)]
pub struct VersionArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Only the client's version.
    #[arg(long)]
    client: bool,
}

pub fn run(args: VersionArgs) -> anyhow::Result<()> {
    println!("Client Version: drover {}", env!("CARGO_PKG_VERSION"));
    if args.client {
        return Ok(());
    }
    block_on(async move {
        let server = async {
            let client = args.connect.client()?;
            let version = client.get("/version", &[]).await?;
            anyhow::Ok((client.server().to_string(), version))
        };
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok((url, version))) => {
                let git = version
                    .get("gitVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown");
                println!("Server Version: {git} ({url})");
            }
            Ok(Err(e)) => eprintln!("drover: no server version: {e:#}"),
            Err(_) => {
                eprintln!("drover: no server version: the API server did not answer within 5s")
            }
        }
        Ok(())
    })
}
