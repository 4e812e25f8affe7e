//! `drover rollout status|history|undo|restart app/NAME`: follow an App's rolling
//! upgrade live, list its revisions (`status.history`, kept by the apps controller),
//! put a previous revision's template back, or force a new version.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use drover_api::kinds::app::{App, DeploymentPhase, Revision, RESTARTED_AT_ANNOTATION};
use drover_api::Defaulting;
use drover_controller::controllers::deploy::{
    previous_revision, restore_template, template_of, version_of,
};
use serde_json::{json, Value};

use crate::client::http::MERGE_PATCH;
use crate::client::resources::{object_ref, select_named, Scope};
use crate::client::Client;
use crate::cmd::{block_on, parse_duration, ConnectArgs};

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(clap::Subcommand, Debug)]
enum RolloutCommand {
    /// Follow the current rollout until it completes (exit 0) or fails (exit 1).
    Status(StatusArgs),
    /// List the revisions of an App.
    History(HistoryArgs),
    /// Roll back to the previous revision (or --to-revision N).
    Undo(UndoArgs),
    /// Start a new rollout of the same template (new tasks replace the old ones).
    Restart(Target),
}

#[derive(clap::Args, Debug)]
struct Target {
    #[command(flatten)]
    connect: ConnectArgs,
    /// app/NAME, or app NAME.
    #[arg(required = true, value_name = "app/NAME")]
    target: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Give up after this long (30s, 2m, …; default: wait as long as it takes).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
}

#[derive(clap::Args, Debug)]
struct HistoryArgs {
    #[command(flatten)]
    target: Target,
    /// Show the template of this revision.
    #[arg(long, value_name = "N")]
    revision: Option<i64>,
}

#[derive(clap::Args, Debug)]
struct UndoArgs {
    #[command(flatten)]
    target: Target,
    /// The revision to go back to (default: the one before the current).
    #[arg(long, value_name = "N")]
    to_revision: Option<i64>,
}

pub fn run(args: RolloutArgs) -> anyhow::Result<()> {
    block_on(async move {
        match args.command {
            RolloutCommand::Status(a) => status(a).await,
            RolloutCommand::History(a) => history(a).await,
            RolloutCommand::Undo(a) => undo(a).await,
            RolloutCommand::Restart(a) => restart(a).await,
        }
    })
}

/// The client, the App's API path and its `app.drover.dev/NAME` reference.
fn target(t: &Target, verb: &str) -> anyhow::Result<(Client, String, String)> {
    let named = select_named(&t.target, verb)?;
    let [(info, name)] = named.objects.as_slice() else {
        bail!("rollout {verb}: name exactly one app (app/NAME)");
    };
    if info.kind != "App" {
        bail!(
            "rollout {verb}: {} has no rollouts; only apps do",
            object_ref(info, name)
        );
    }
    let client = t.connect.client()?;
    let path = Scope::new(info, Some(client.namespace.as_str())).item(name);
    Ok((client, path, object_ref(info, name)))
}

async fn get_app(client: &Client, path: &str, what: &str) -> anyhow::Result<(App, Value)> {
    let raw = client.get(path, &[]).await?;
    let mut app: App =
        serde_json::from_value(raw.clone()).with_context(|| format!("reading {what}"))?;
    // The version is the hash of the defaulted template, as the controller sees it.
    app.apply_defaults();
    Ok((app, raw))
}

/// Where the rollout stands: `Some(Ok)` when it completed, `Some(Err)` when it failed
/// or was rolled back, `None` while it goes on; and a line to show.
fn progress(app: &App, what: &str) -> (Option<Result<(), String>>, String) {
    let version = version_of(&template_of(app));
    let status = app.status.clone().unwrap_or_default();
    let Some(d) = status.deployment.filter(|d| d.version == version) else {
        return (
            None,
            "Waiting for the rollout of the new version to start…".to_string(),
        );
    };
    let message = d.message.clone().unwrap_or_default();
    match d.phase {
        DeploymentPhase::Complete => (
            Some(Ok(())),
            format!("{what} successfully rolled out (revision {})", d.revision),
        ),
        DeploymentPhase::Failed => (
            Some(Err(format!("rollout of {what} failed: {message}"))),
            message,
        ),
        DeploymentPhase::RolledBack => (
            Some(Err(format!("rollout of {what} was rolled back: {message}"))),
            message,
        ),
        DeploymentPhase::Progressing => {
            let line = if message.starts_with("waiting for dependency") {
                format!("Waiting for rollout to finish: {message}…")
            } else {
                format!(
                    "Waiting for rollout to finish: {} of {} updated instances are healthy…",
                    d.updated, d.total
                )
            };
            (None, line)
        }
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let (client, path, what) = target(&args.target, "status")?;
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let (app, _) = get_app(&client, &path, &what).await?;
        let (done, line) = progress(&app, &what);
        if line != last {
            println!("{line}");
            let _ = std::io::stdout().flush();
            last = line;
        }
        match done {
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => bail!(e),
            None => {}
        }
        if args.timeout.is_some_and(|t| started.elapsed() >= t) {
            bail!(
                "timed out after {:?} waiting for the rollout of {what}",
                args.timeout.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let (client, path, what) = target(&args.target, "history")?;
    let (app, _) = get_app(&client, &path, &what).await?;
    let status = app.status.clone().unwrap_or_default();
    if let Some(n) = args.revision {
        let r = find_revision(&status.history, n, &what)?;
        println!("{what} revision {n} (version {})", r.version);
        print!(
            "{}",
            serde_yaml::to_string(&r.template).context("rendering the template")?
        );
        return Ok(());
    }
    if status.history.is_empty() {
        println!("{what}: no revisions recorded yet");
        return Ok(());
    }
    let current = status.deployment.map(|d| d.revision);
    println!("{what}");
    println!("{:<10} {:<18} {:<22} CAUSE", "REVISION", "VERSION", "TIME");
    for r in &status.history {
        let time = r.time.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        let mark = if Some(r.revision) == current { "*" } else { "" };
        println!(
            "{:<10} {:<18} {:<22} {}",
            format!("{}{mark}", r.revision),
            r.version,
            time.get(..19).unwrap_or(&time),
            r.cause.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn find_revision<'a>(history: &'a [Revision], n: i64, what: &str) -> anyhow::Result<&'a Revision> {
    history.iter().find(|r| r.revision == n).ok_or_else(|| {
        let known: Vec<String> = history.iter().map(|r| r.revision.to_string()).collect();
        anyhow!(
            "{what} has no revision {n} (revisions: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    })
}

async fn undo(args: UndoArgs) -> anyhow::Result<()> {
    let (client, path, what) = target(&args.target, "undo")?;
    let (app, mut raw) = get_app(&client, &path, &what).await?;
    let history = app.status.clone().unwrap_or_default().history;
    let current = version_of(&template_of(&app));
    let to = match args.to_revision {
        Some(n) => find_revision(&history, n, &what)?,
        None => previous_revision(&history, &current)
            .ok_or_else(|| anyhow!("{what} has no previous revision to roll back to"))?,
    };
    if to.version == current {
        println!(
            "{what}: revision {} is already current; nothing to do",
            to.revision
        );
        return Ok(());
    }
    restore_template(&mut raw, &to.template);
    if let Some(m) = raw.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    client
        .put(&path, &raw)
        .await
        .with_context(|| format!("rolling {what} back to revision {}", to.revision))?;
    println!("{what} rolled back to revision {}", to.revision);
    Ok(())
}

async fn restart(args: Target) -> anyhow::Result<()> {
    let (client, path, what) = target(&args, "restart")?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let patch = json!({"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}});
    client
        .patch(&path, &[], MERGE_PATCH, &patch)
        .await
        .with_context(|| format!("restarting {what}"))?;
    println!("{what} restarted");
    Ok(())
}
