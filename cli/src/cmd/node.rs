//! `drover node cordon|uncordon|drain NAME`.
//!
//! cordon / uncordon set `spec.unschedulable` (the allocator places nothing new on a
//! cordoned node). drain cordons, then moves the node's tasks one App at a time: it
//! marks them `drover.dev/drain=true` and the apps controller places replacements
//! elsewhere first, killing a drained task only while the App keeps
//! `minimumHealthCapacity × instances` healthy (controllers/drain.rs). Progress is
//! printed live ("draining node n1: 3/5 tasks moved").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::client::http::MERGE_PATCH;
use crate::client::{is_not_found, Client};
use crate::cmd::{block_on, parse_duration, ConnectArgs};

const API: &str = "/apis/drover.dev/v1alpha1";
const DRAIN_ANNOTATION: &str = "drover.dev/drain";

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    #[command(subcommand)]
    verb: NodeVerb,
}

#[derive(clap::Subcommand, Debug)]
enum NodeVerb {
    /// Mark the node unschedulable: no new tasks go there (running ones stay).
    Cordon {
        /// The Node.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Mark the node schedulable again.
    Uncordon {
        /// The Node.
        name: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Cordon the node and move its tasks elsewhere, App by App, never taking an App
    /// below its upgradeStrategy.minimumHealthCapacity.
    Drain {
        /// The Node.
        name: String,
        /// Give up after this long (0 = no limit).
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        timeout: Duration,
        /// Also delete tasks that no App owns (they are not replaced).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.verb {
            NodeVerb::Cordon { name, connect } => {
                set_unschedulable(&connect.client()?, &name, true).await?;
                println!("node/{name} cordoned");
            }
            NodeVerb::Uncordon { name, connect } => {
                set_unschedulable(&connect.client()?, &name, false).await?;
                println!("node/{name} uncordoned");
            }
            NodeVerb::Drain {
                name,
                timeout,
                force,
                connect,
            } => drain(&connect.client()?, &name, timeout, force).await?,
        }
        Ok(())
    })
}

async fn set_unschedulable(client: &Client, node: &str, on: bool) -> anyhow::Result<()> {
    let patch = json!({"spec": {"unschedulable": on}});
    match client
        .patch(&format!("{API}/nodes/{node}"), &[], MERGE_PATCH, &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => bail!("node {node:?} not found"),
        Err(e) => Err(e).with_context(|| format!("setting spec.unschedulable of node {node:?}")),
    }
}

/// A task on the node, as the drain needs it.
#[derive(Clone, Debug)]
struct OnNode {
    namespace: String,
    name: String,
    /// The owning App, if an App owns it.
    app: Option<String>,
}

impl OnNode {
    fn path(&self) -> String {
        format!("{API}/namespaces/{}/tasks/{}", self.namespace, self.name)
    }
    fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The tasks bound to `node` that still run (or are about to).
async fn tasks_on(client: &Client, node: &str) -> anyhow::Result<Vec<OnNode>> {
    let selector = format!("spec.nodeName={node}");
    let list = client
        .get(
            &format!("{API}/tasks"),
            &[("fieldSelector", selector.as_str())],
        )
        .await
        .with_context(|| format!("listing the tasks on node {node:?}"))?;
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(items
        .iter()
        .filter(|t| {
            !matches!(
                t.pointer("/status/phase").and_then(Value::as_str),
                Some("Finished" | "Failed" | "Killed" | "Lost")
            )
        })
        .map(|t| {
            let s = |p: &str| t.pointer(p).and_then(Value::as_str).unwrap_or_default();
            OnNode {
                namespace: s("/metadata/namespace").to_string(),
                name: s("/metadata/name").to_string(),
                app: (s("/spec/owner/kind") == "App").then(|| s("/spec/owner/name").to_string()),
            }
        })
        .collect())
}

async fn drain(client: &Client, node: &str, timeout: Duration, force: bool) -> anyhow::Result<()> {
    set_unschedulable(client, node, true).await?;
    println!("node/{node} cordoned");
    let started = Instant::now();
    let initial = tasks_on(client, node).await?;
    let (owned, unowned): (Vec<OnNode>, Vec<OnNode>) =
        initial.iter().cloned().partition(|t| t.app.is_some());
    if !unowned.is_empty() && !force {
        let names: Vec<String> = unowned.iter().map(OnNode::id).collect();
        bail!(
            "cannot drain node {node:?}: tasks no App owns would not be replaced: {} (use --force to delete them)",
            names.join(", ")
        );
    }
    for t in &unowned {
        match client.delete(&t.path()).await {
            Ok(_) => println!("task {} deleted (no App owns it)", t.id()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).with_context(|| format!("deleting task {}", t.id())),
        }
    }
    let total = initial.len();
    let mut by_app: BTreeMap<(String, String), Vec<OnNode>> = BTreeMap::new();
    for t in owned {
        let app = t.app.clone().unwrap_or_default();
        by_app
            .entry((t.namespace.clone(), app))
            .or_default()
            .push(t);
    }
    let mut progress = Progress::new(node, total);
    progress.show(total - tasks_on(client, node).await?.len());
    for ((namespace, app), tasks) in &by_app {
        for t in tasks {
            let patch = json!({"metadata": {"annotations": {DRAIN_ANNOTATION: "true"}}});
            match client.patch(&t.path(), &[], MERGE_PATCH, &patch).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("marking task {} for drain", t.id()))
                }
            }
        }
        // Wait until this App's tasks have left the node.
        loop {
            let now_on = tasks_on(client, node).await?;
            progress.show(total.saturating_sub(now_on.len()));
            let left = now_on
                .iter()
                .filter(|t| &t.namespace == namespace && t.app.as_ref() == Some(app))
                .count();
            if left == 0 {
                break;
            }
            if !timeout.is_zero() && started.elapsed() > timeout {
                let names: Vec<String> = now_on.iter().map(OnNode::id).collect();
                bail!(
                    "timed out after {:?} draining node {node:?}: {} task(s) still on it ({}); App {namespace}/{app} cannot spare them yet (see its status: replacements must be placed and healthy first)",
                    timeout,
                    now_on.len(),
                    names.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    progress.show(total);
    println!("node/{node} drained");
    Ok(())
}

/// Prints "draining node n1: 3/5 tasks moved" whenever the count changes.
struct Progress<'a> {
    node: &'a str,
    total: usize,
    shown: Option<usize>,
}

impl<'a> Progress<'a> {
    fn new(node: &'a str, total: usize) -> Self {
        Progress {
            node,
            total,
            shown: None,
        }
    }
    fn show(&mut self, moved: usize) {
        let moved = moved.min(self.total);
        if self.shown != Some(moved) {
            self.shown = Some(moved);
            println!(
                "draining node {}: {moved}/{} tasks moved",
                self.node, self.total
            );
        }
    }
}
