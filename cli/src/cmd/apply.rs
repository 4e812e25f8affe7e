//! `drover apply -f FILE|DIR|-`: every manifest is validated locally first (an error
//! names the file, the document, the field and, when it can be found, the line), then
//! each object of the valid files is applied server-side. Like kubectl, what can be
//! applied is, and the rest is reported; any error makes the exit code 1.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use drover_api::manifest::{load_manifests, LoadOptions, ManifestError};
use drover_api::KindInfo;
use serde::Deserialize as _;
use serde_json::Value;

use crate::client::http::APPLY_PATCH;
use crate::client::resources::{object_ref, Scope};
use crate::client::{is_not_found, ApiError, Client};
use crate::cmd::{block_on, report, AlreadyReported, ConnectArgs};
use crate::yaml_lines;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// A manifest file, a directory of *.yaml/*.yml/*.json files, or - for stdin.
    #[arg(
        short = 'f',
        long = "filename",
        required = true,
        value_name = "FILE|DIR|-"
    )]
    files: Vec<String>,
    /// Take over fields another manager owns instead of failing with a conflict.
    #[arg(long)]
    force_conflicts: bool,
    /// The field manager recorded for the applied fields.
    #[arg(long, default_value = "drover")]
    field_manager: String,
}

/// One manifest read from a file or stdin.
struct Source {
    /// As shown in messages.
    name: String,
    text: String,
}

/// One object to apply and where it came from.
struct Document {
    number: usize,
    info: &'static KindInfo,
    name: String,
    namespace: Option<String>,
    body: Value,
}

pub fn run(args: ApplyArgs) -> anyhow::Result<()> {
    block_on(apply(args))
}

async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let (sources, mut failed) = read_sources(&args.files);
    let client = args.connect.client()?;
    for source in &sources {
        let documents = match documents_of(source, &client) {
            Ok(d) => d,
            Err(messages) => {
                for m in messages {
                    eprintln!("drover: {m}");
                }
                failed = true;
                continue;
            }
        };
        for document in &documents {
            match apply_one(&client, document, &args).await {
                Ok(outcome) => println!("{} {outcome}", object_ref(document.info, &document.name)),
                Err(e) => {
                    eprintln!(
                        "drover: {}: document {}: {}",
                        source.name,
                        document.number,
                        describe_failure(&e)
                    );
                    failed = true;
                }
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// The files named by `-f`, each directory expanded; unreadable ones are reported.
fn read_sources(args: &[String]) -> (Vec<Source>, bool) {
    let mut sources = Vec::new();
    let mut failed = false;
    for arg in args {
        match expand(arg) {
            Ok(found) => sources.extend(found),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    (sources, failed)
}

fn expand(arg: &str) -> anyhow::Result<Vec<Source>> {
    if arg == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading manifests from stdin")?;
        return Ok(vec![Source {
            name: "<stdin>".into(),
            text,
        }]);
    }
    let path = Path::new(arg);
    let meta =
        std::fs::metadata(path).with_context(|| format!("{arg}: the path does not exist"))?;
    if !meta.is_dir() {
        return Ok(vec![read_file(path)?]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("{arg}: reading the directory"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{arg}: no *.yaml, *.yml or *.json files in the directory");
    }
    files.iter().map(|p| read_file(p)).collect()
}

fn read_file(path: &Path) -> anyhow::Result<Source> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: reading the file", path.display()))?;
    Ok(Source {
        name: path.display().to_string(),
        text,
    })
}

/// Validates a whole source with drover-api's loader and returns its objects as
/// written (not defaulted: server-side apply must own only what the user wrote).
fn documents_of(source: &Source, client: &Client) -> Result<Vec<Document>, Vec<String>> {
    let options = LoadOptions {
        default_namespace: Some(client.namespace.clone()),
        strict: true,
    };
    if let Err(errors) = load_manifests(&source.text, &options) {
        return Err(errors.iter().flat_map(|e| explain(source, e)).collect());
    }
    let mut documents = Vec::new();
    let mut errors = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(&source.text).enumerate() {
        let number = i + 1;
        let parsed = serde_yaml::Value::deserialize(de)
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()));
        match parsed {
            Ok(Value::Null) => {}
            Ok(body) => match document(number, body, client) {
                Ok(d) => documents.push(d),
                Err(e) => errors.push(format!("{}: document {number}: {e:#}", source.name)),
            },
            Err(e) => errors.push(format!("{}: document {number}: {e}", source.name)),
        }
    }
    if errors.is_empty() {
        Ok(documents)
    } else {
        Err(errors)
    }
}

fn document(number: usize, body: Value, client: &Client) -> anyhow::Result<Document> {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    let info =
        drover_api::registry::kind_by_name(kind).ok_or_else(|| anyhow!("unknown kind {kind:?}"))?;
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow!("metadata.name: Required value: apply needs a name"))?
        .to_string();
    let written = body
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty());
    let namespace = if !info.namespaced {
        None
    } else {
        match written {
            Some(ns) if client.namespace_explicit && ns != client.namespace => bail!(
                "metadata.namespace: the namespace of {} is {ns:?}, which does not match --namespace={:?}",
                object_ref(info, &name),
                client.namespace
            ),
            Some(ns) => Some(ns.to_string()),
            None => Some(client.namespace.clone()),
        }
    };
    Ok(Document {
        number,
        info,
        name,
        namespace,
        body,
    })
}

/// One loader error as `file: document N: field: message (line L)` lines.
fn explain(source: &Source, error: &ManifestError) -> Vec<String> {
    let file = &source.text;
    let starts = || {
        let count = serde_yaml::Deserializer::from_str(file).count();
        yaml_lines::document_starts(file, count)
    };
    let line_of = |document: usize, field: &str| {
        starts()
            .and_then(|s| s.get(document - 1).copied())
            .and_then(|start| yaml_lines::locate(file, start, field))
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default()
    };
    match error {
        ManifestError::Invalid {
            document, errors, ..
        } => errors
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{}: document {document}: {}: {}{}",
                    source.name,
                    e.field,
                    e.message,
                    line_of(*document, &e.field)
                )
            })
            .collect(),
        ManifestError::UnknownFields { document, fields } => fields
            .iter()
            .map(|f| {
                format!(
                    "{}: document {document}: {f}: unknown field{}",
                    source.name,
                    line_of(*document, f)
                )
            })
            .collect(),
        other => vec![format!("{}: {other}", source.name)],
    }
}

/// Applies one object; says whether it was created, configured or unchanged.
async fn apply_one(
    client: &Client,
    document: &Document,
    args: &ApplyArgs,
) -> anyhow::Result<&'static str> {
    let scope = Scope::new(document.info, document.namespace.as_deref());
    let path = scope.item(&document.name);
    let before = match client.get(&path, &[]).await {
        Ok(object) => resource_version(&object),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    let mut query = vec![
        ("fieldManager", args.field_manager.as_str()),
        ("fieldValidation", "Strict"),
    ];
    if args.force_conflicts {
        query.push(("force", "true"));
    }
    let answer = client
        .patch(&path, &query, APPLY_PATCH, &document.body)
        .await?;
    if answer.status == reqwest::StatusCode::CREATED || before.is_none() {
        return Ok("created");
    }
    if resource_version(&answer.body) == before {
        Ok("unchanged")
    } else {
        Ok("configured")
    }
}

fn resource_version(object: &Value) -> Option<String> {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A server error as the user should read it.
fn describe_failure(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ApiError>() {
        Some(api) if api.code == 409 && api.message.contains("conflict") => format!(
            "{}\n(another field manager owns these fields: re-run with --force-conflicts to take them over)",
            api.message
        ),
        Some(api) => api.message.clone(),
        None => format!("{e:#}"),
    }
}
