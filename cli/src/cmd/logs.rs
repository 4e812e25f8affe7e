//! `drover logs task/NAME|app/NAME [-f] [--tail N]`: a task's output, through the API server.
//!
//! A task's log is `GET …/tasks/{name}/log`, which the API server proxies from the
//! agent of the task's node. An App's log is the logs of its current tasks (those
//! labelled `drover.dev/app=NAME` and owned by it, not yet ended; all of them if none
//! is running), each line prefixed with `[task-name]`; with `-f` they are followed all
//! at once.

use std::io::Write;

use anyhow::{bail, Context};
use drover_api::kinds::task::TaskPhase;
use drover_api::{App, DroverKind, Task};
use futures::{Stream, StreamExt};
use serde_json::Value;

use crate::client::resources::{resolve_kind, Scope};
use crate::client::Client;
use crate::cmd::{block_on, ConnectArgs};

/// The label the apps controller puts on an App's Tasks.
const APP_LABEL: &str = "drover.dev/app";

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// `task/NAME`, `app/NAME`, or a task's NAME.
    #[arg(value_name = "TASK|KIND/NAME")]
    target: String,
    /// Keep streaming new output until interrupted (or the task ends).
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines (of each task).
    #[arg(long, value_name = "N")]
    tail: Option<u64>,
    /// Which of the task's outputs.
    #[arg(long, value_enum, default_value = "stdout")]
    stream: OutputStream,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    block_on(logs(args))
}

async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let (kind, name) = match args.target.split_once('/') {
        Some((kind, name)) => (resolve_kind(kind)?, name.to_string()),
        None => (resolve_kind("task")?, args.target.clone()),
    };
    if name.is_empty() {
        bail!(
            "{}: name the object, as in task/NAME or app/NAME",
            args.target
        );
    }
    let client = args.connect.client()?;
    let tail = args.tail.map(|n| n.to_string());
    let mut query = vec![
        ("follow", if args.follow { "true" } else { "false" }),
        ("stream", args.stream.as_str()),
    ];
    if let Some(n) = &tail {
        query.push(("tailLines", n.as_str()));
    }
    match kind.kind {
        "Task" => task_logs(&client, &name, &query).await,
        "App" => app_logs(&client, &name, &query, args.follow).await,
        other => bail!("{other}/{name}: logs are kept for tasks and apps only"),
    }
}

fn log_path(client: &Client, task: &str) -> anyhow::Result<String> {
    let info = resolve_kind(Task::KIND)?;
    Ok(Scope::new(info, Some(client.namespace.as_str())).subresource(task, "log"))
}

/// Copies one task's log to stdout as it arrives.
async fn task_logs(client: &Client, task: &str, query: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut stream = client
        .get_stream(&log_path(client, task)?, query)
        .await
        .with_context(|| format!("logs of task/{task}"))?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading the logs of task/{task}"))?;
        out.write_all(&chunk).context("writing to stdout")?;
        out.flush().context("writing to stdout")?;
    }
    Ok(())
}

/// The App's tasks to show: the ones not ended yet, else all (the last ones ended).
async fn app_tasks(client: &Client, app: &str) -> anyhow::Result<Vec<String>> {
    let info = resolve_kind(Task::KIND)?;
    let ns = client.namespace.as_str();
    let selector = format!("{APP_LABEL}={app}");
    let list = client
        .get(
            &Scope::new(info, Some(ns)).collection(),
            &[("labelSelector", selector.as_str())],
        )
        .await
        .with_context(|| format!("listing the tasks of app/{app}"))?;
    let mut tasks: Vec<(String, bool)> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| {
            t.pointer("/spec/owner/kind").and_then(Value::as_str) == Some(App::KIND)
                && t.pointer("/spec/owner/name").and_then(Value::as_str) == Some(app)
        })
        .filter_map(|t| {
            let name = t.pointer("/metadata/name").and_then(Value::as_str)?;
            let phase: TaskPhase = t
                .pointer("/status/phase")
                .cloned()
                .and_then(|p| serde_json::from_value(p).ok())
                .unwrap_or_default();
            Some((name.to_string(), phase.is_terminal()))
        })
        .collect();
    if tasks.is_empty() {
        // Say whether the App exists at all.
        let apps = resolve_kind(App::KIND)?;
        client
            .get(&Scope::new(apps, Some(ns)).item(app), &[])
            .await
            .with_context(|| format!("app/{app}"))?;
        bail!("app/{app} has no tasks in namespace {ns}");
    }
    if tasks.iter().any(|(_, ended)| !ended) {
        tasks.retain(|(_, ended)| !ended);
    }
    let mut names: Vec<String> = tasks.into_iter().map(|(n, _)| n).collect();
    names.sort();
    Ok(names)
}

/// The lines of a byte stream, each prefixed with `[task] `; a last line without its
/// newline gets one.
fn prefixed_lines<S>(task: String, bytes: S) -> impl Stream<Item = anyhow::Result<Vec<u8>>>
where
    S: Stream<Item = reqwest::Result<Vec<u8>>> + Unpin,
{
    let state = (bytes, Vec::<u8>::new(), false);
    futures::stream::unfold(state, move |(mut bytes, mut pending, done)| {
        let task = task.clone();
        async move {
            if done {
                return None;
            }
            loop {
                if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    return Some((Ok(prefix(&task, &line)), (bytes, pending, false)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => pending.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        let e = anyhow::Error::new(e)
                            .context(format!("reading the logs of task/{task}"));
                        return Some((Err(e), (bytes, pending, true)));
                    }
                    None if pending.is_empty() => return None,
                    None => {
                        let mut line = std::mem::take(&mut pending);
                        line.push(b'\n');
                        return Some((Ok(prefix(&task, &line)), (bytes, pending, true)));
                    }
                }
            }
        }
    })
}

fn prefix(task: &str, line: &[u8]) -> Vec<u8> {
    let mut out = format!("[{task}] ").into_bytes();
    out.extend_from_slice(line);
    out
}

async fn app_logs(
    client: &Client,
    app: &str,
    query: &[(&str, &str)],
    follow: bool,
) -> anyhow::Result<()> {
    let tasks = app_tasks(client, app).await?;
    let mut streams = Vec::new();
    for task in &tasks {
        match client.get_stream(&log_path(client, task)?, query).await {
            Ok(s) => streams.push(prefixed_lines(task.clone(), s).boxed()),
            // One task not bound yet, or on a node that is gone, does not hide the others.
            Err(e) => eprintln!("drover: logs of task/{task} (app/{app}): {e:#}"),
        }
    }
    if streams.is_empty() {
        bail!("app/{app}: none of its tasks' logs could be read");
    }
    let mut out = std::io::stdout().lock();
    if follow {
        let mut all = futures::stream::select_all(streams);
        while let Some(line) = all.next().await {
            out.write_all(&line?).context("writing to stdout")?;
            out.flush().context("writing to stdout")?;
        }
    } else {
        for mut s in streams {
            while let Some(line) = s.next().await {
                out.write_all(&line?).context("writing to stdout")?;
            }
        }
        out.flush().context("writing to stdout")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_prefixed_even_across_chunks() {
        let chunks: Vec<reqwest::Result<Vec<u8>>> =
            vec![Ok(b"one\ntw".to_vec()), Ok(b"o\nthree".to_vec())];
        let lines: Vec<String> = prefixed_lines("web-0".into(), futures::stream::iter(chunks))
            .map(|l| String::from_utf8_lossy(&l.expect("line")).into_owned())
            .collect()
            .await;
        assert_eq!(lines, ["[web-0] one\n", "[web-0] two\n", "[web-0] three\n"]);
    }
}
