//! `drover node cordon|uncordon|drain|maintenance NAME`.
//!
//! cordon / uncordon set `spec.unschedulable` (the allocator places nothing new on a
//! cordoned node). drain cordons, then moves the node's tasks one App at a time: it
//! marks them `drover.dev/drain=true` and the apps controller places replacements
//! elsewhere first, killing a drained task only while the App keeps
//! `minimumHealthCapacity × instances` healthy (controllers/drain.rs). Progress is
//! printed live ("draining node n1: 3/5 tasks moved").
//!
//! maintenance adds a window to `spec.maintenance` (`--start now|RFC3339 --duration
//! 1h [--reason TEXT]`) or clears them all (`--clear`); the nodes controller drains the
//! node when the window opens and keeps it unschedulable until it closes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, SecondsFormat, Timelike, Utc};
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
    /// Schedule a maintenance window (the node is drained when it opens and takes no
    /// tasks until it ends), or clear the node's windows.
    Maintenance {
        /// The Node.
        name: String,
        /// When the window opens: `now` or an RFC 3339 time (2026-12-01T08:00:00Z).
        #[arg(long, default_value = "now", conflicts_with = "clear")]
        start: String,
        /// How long it lasts (30m, 1h, …; whole seconds).
        #[arg(long, value_parser = parse_duration, required_unless_present = "clear", conflicts_with = "clear")]
        duration: Option<Duration>,
        /// Why (shown in the node's Maintenance condition).
        #[arg(long, conflicts_with = "clear")]
        reason: Option<String>,
        /// Remove every maintenance window of the node.
        #[arg(long)]
        clear: bool,
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
            NodeVerb::Maintenance {
                name,
                start,
                duration,
                reason,
                clear,
                connect,
            } => {
                let client = connect.client()?;
                if clear {
                    clear_maintenance(&client, &name).await?;
                    println!("node/{name} maintenance windows cleared");
                } else {
                    let window = Window::parse(&start, duration, reason)?;
                    add_maintenance(&client, &name, &window).await?;
                    println!(
                        "node/{name} maintenance scheduled from {} until {}",
                        window.start_text(),
                        window.end_text()
                    );
                }
            }
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

/// A maintenance window to add, as given on the command line.
#[derive(Debug)]
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reason: Option<String>,
}

impl Window {
    /// `--start now|RFC3339`, `--duration` (whole seconds, at least one).
    fn parse(
        start: &str,
        duration: Option<Duration>,
        reason: Option<String>,
    ) -> anyhow::Result<Window> {
        let start = if start.trim().eq_ignore_ascii_case("now") {
            Utc::now()
        } else {
            DateTime::parse_from_rfc3339(start.trim())
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    anyhow!("--start: {start:?} is not \"now\" or an RFC 3339 time like 2026-12-01T08:00:00Z ({e})")
                })?
        };
        // The API keeps whole seconds.
        let start = start.with_nanosecond(0).unwrap_or(start);
        let duration = duration.ok_or_else(|| anyhow!("--duration is required"))?;
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        if seconds < 1 {
            bail!("--duration: must be at least 1s, got {duration:?}");
        }
        let end = chrono::Duration::try_seconds(seconds)
            .and_then(|d| start.checked_add_signed(d))
            .ok_or_else(|| anyhow!("--duration: {duration:?} is too long"))?;
        if end <= Utc::now() {
            bail!(
                "--start/--duration: the window would end at {}, which is past",
                end.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
        }
        Ok(Window {
            start,
            end,
            reason: reason.filter(|r| !r.trim().is_empty()),
        })
    }

    fn start_text(&self) -> String {
        self.start.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn end_text(&self) -> String {
        self.end.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    fn to_json(&self) -> Value {
        let mut w = json!({"start": self.start_text(), "end": self.end_text()});
        if let Some(r) = &self.reason {
            w["reason"] = json!(r);
        }
        w
    }
}

/// Whether the stored window `w` ends after `now` (windows that are over are dropped
/// when a new one is added).
fn still_relevant(w: &Value, now: DateTime<Utc>) -> bool {
    w.get("end")
        .and_then(Value::as_str)
        .and_then(|e| DateTime::parse_from_rfc3339(e).ok())
        .is_none_or(|e| e.with_timezone(&Utc) > now)
}

/// Appends `window` to the node's `spec.maintenance`, guarded by the resourceVersion
/// read (retried on a conflict: the agent writes its Node too).
async fn add_maintenance(client: &Client, node: &str, window: &Window) -> anyhow::Result<()> {
    let path = format!("{API}/nodes/{node}");
    for _ in 0..5 {
        let current = match client.get(&path, &[]).await {
            Ok(v) => v,
            Err(e) if is_not_found(&e) => bail!("node {node:?} not found"),
            Err(e) => return Err(e).with_context(|| format!("reading node {node:?}")),
        };
        let now = Utc::now();
        let mut windows: Vec<Value> = current
            .pointer("/spec/maintenance")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|w| still_relevant(w, now))
            .collect();
        windows.push(window.to_json());
        let version = current
            .pointer("/metadata/resourceVersion")
            .cloned()
            .unwrap_or(Value::Null);
        let patch = json!({
            "metadata": {"resourceVersion": version},
            "spec": {"maintenance": windows},
        });
        match client.patch(&path, &[], MERGE_PATCH, &patch).await {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) => continue,
            Err(e) if is_not_found(&e) => bail!("node {node:?} not found"),
            Err(e) => {
                return Err(e).with_context(|| format!("setting spec.maintenance of node {node:?}"))
            }
        }
    }
    bail!("node {node:?} kept changing while adding the maintenance window; try again")
}

fn is_conflict(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::client::ApiError>()
        .is_some_and(|a| a.code == 409)
}

/// Removes every maintenance window of the node.
async fn clear_maintenance(client: &Client, node: &str) -> anyhow::Result<()> {
    let patch = json!({"spec": {"maintenance": null}});
    match client
        .patch(&format!("{API}/nodes/{node}"), &[], MERGE_PATCH, &patch)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => bail!("node {node:?} not found"),
        Err(e) => Err(e).with_context(|| format!("clearing spec.maintenance of node {node:?}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_parsed_from_start_and_duration() {
        let w = Window::parse(
            "2126-12-01T08:00:00Z",
            Some(Duration::from_secs(3600)),
            Some("kernel".into()),
        )
        .expect("a window");
        assert_eq!(w.start_text(), "2126-12-01T08:00:00Z");
        assert_eq!(w.end_text(), "2126-12-01T09:00:00Z");
        let e = Window::parse("2020-01-01T00:00:00Z", Some(Duration::from_secs(60)), None)
            .expect_err("over");
        assert!(e.to_string().contains("past"), "{e}");
        assert_eq!(w.to_json()["reason"], "kernel");
        let now = Window::parse("now", Some(Duration::from_secs(60)), None).expect("now");
        assert!(now.start <= Utc::now());
        assert!(now.to_json().get("reason").is_none());
        let e =
            Window::parse("tomorrow", Some(Duration::from_secs(60)), None).expect_err("not a time");
        assert!(e.to_string().contains("--start"), "{e}");
        let e =
            Window::parse("now", Some(Duration::from_millis(200)), None).expect_err("too short");
        assert!(e.to_string().contains("--duration"), "{e}");
    }
}
