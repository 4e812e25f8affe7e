//! `drover delete KIND NAME…` / `KIND/NAME…`: deletes each object and, with
//! `--wait` (the default), waits until a watch sees it DELETED or a GET answers 404.
//! `--cascade=background|foreground|orphan` is kubectl's flag: the DeleteOptions'
//! propagationPolicy (background: the object goes now, the garbage collector deletes
//! its dependents after; foreground: dependents first, then the object; orphan: the
//! dependents stay, without their ownerReference).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::client::resources::{quoted_ref, select_named, Scope};
use crate::client::{is_not_found, ApiError, Client};
use crate::cmd::{block_on, parse_duration, report, AlreadyReported, ConnectArgs};

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// KIND NAME…, or KIND/NAME…
    #[arg(required = true, value_name = "KIND NAME…")]
    targets: Vec<String>,
    /// Wait until the objects are gone (finalizers done).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    wait: bool,
    /// How long to wait for each object to go (0 = no limit).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Succeed for objects that do not exist.
    #[arg(long)]
    ignore_not_found: bool,
    /// What happens to the dependents (an App's Tasks): background, foreground or orphan.
    #[arg(long, value_enum, default_value_t = Cascade::Background, value_name = "POLICY")]
    cascade: Cascade,
}

/// kubectl's `--cascade`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cascade {
    /// The object goes now; its dependents are deleted after it.
    Background,
    /// The dependents are deleted first, then the object.
    Foreground,
    /// The dependents stay, without their owner reference.
    Orphan,
}

impl Cascade {
    /// The DeleteOptions `propagationPolicy`.
    fn policy(self) -> &'static str {
        match self {
            Cascade::Background => "Background",
            Cascade::Foreground => "Foreground",
            Cascade::Orphan => "Orphan",
        }
    }
}

/// DELETE with DeleteOptions asking for `cascade`.
async fn delete_with(
    client: &Client,
    path: &str,
    cascade: Cascade,
) -> anyhow::Result<crate::client::http::Answer> {
    let options = json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": cascade.policy(),
    });
    client
        .request(
            Method::DELETE,
            path,
            &[],
            "application/json",
            Some(("application/json", serde_json::to_vec(&options)?)),
        )
        .await
}

pub fn run(args: DeleteArgs) -> anyhow::Result<()> {
    block_on(delete(args))
}

async fn delete(args: DeleteArgs) -> anyhow::Result<()> {
    let named = select_named(&args.targets, "delete")?;
    let client = args.connect.client()?;
    let mut failed = false;
    for (info, name) in &named.objects {
        let scope = Scope::new(info, Some(client.namespace.as_str()));
        let path = scope.item(name);
        let answer = match delete_with(&client, &path, args.cascade).await {
            Ok(answer) => answer,
            Err(e) if is_not_found(&e) && args.ignore_not_found => continue,
            Err(e) => {
                report(&e);
                failed = true;
                continue;
            }
        };
        println!("{} deleted", quoted_ref(info, name));
        if !args.wait {
            continue;
        }
        let revision = answer
            .body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string);
        let gone = wait_until_gone(&client, &scope, name, revision.as_deref());
        let result = if args.timeout.is_zero() {
            gone.await
        } else {
            match tokio::time::timeout(args.timeout, gone).await {
                Ok(r) => r,
                Err(_) => Err(anyhow::anyhow!(
                    "timed out after {:?} waiting for {} to be deleted",
                    args.timeout,
                    quoted_ref(info, name)
                )),
            }
        };
        if let Err(e) = result {
            report(&e);
            failed = true;
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// Watches from the revision the DELETE answered with (so the deletion itself is never
/// missed); a GET settles the common case where the object is already gone.
pub async fn wait_until_gone(
    client: &Client,
    scope: &Scope<'_>,
    name: &str,
    revision: Option<&str>,
) -> anyhow::Result<()> {
    let path = scope.item(name);
    let mut watching = true;
    loop {
        match client.get(&path, &[]).await {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        if !watching {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let selector = format!("metadata.name={name}");
        let mut query = vec![("fieldSelector", selector.as_str())];
        if let Some(rv) = revision {
            query.push(("resourceVersion", rv));
        }
        let mut events = client.watch(&scope.collection(), &query).await?;
        loop {
            match events.next().await {
                Ok(Some(event)) if event.kind == "DELETED" => return Ok(()),
                Ok(Some(_)) => {}
                // The stream ended: look again.
                Ok(None) => break,
                // Our revision was compacted away: poll with GET instead.
                Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.code == 410) => {
                    watching = false;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
