//! `drover get KIND [NAME…]` / `KIND/NAME…`: the server's Table rendered as kubectl
//! renders it, or the objects as YAML, JSON or names; `-l`, `--field-selector`, `-A`,
//! and `-w` (the table header once, then one row per event).

use anyhow::bail;
use chrono::Utc;
use drover_api::KindInfo;
use drover_controller::apiserver::table::{table as table_of, IncludeObject};
use serde_json::{json, Value};

use crate::client::resources::{select, Scope, Selection};
use crate::client::Client;
use crate::cmd::{block_on, report, AlreadyReported, ConnectArgs};
use crate::print::object::{self, Format};
use crate::print::table::{self, Columns, TableOptions};

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// KIND [NAME…], or KIND/NAME…
    #[arg(required = true, value_name = "KIND [NAME]…")]
    targets: Vec<String>,
    /// Output format: wide, yaml, json or name (default: a table).
    #[arg(short = 'o', long, value_name = "FORMAT")]
    output: Option<String>,
    /// Label selector (`tier=frontend`, `env in (a,b)`, `!canary`).
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// Field selector (`metadata.name=web`).
    #[arg(long, value_name = "SELECTOR")]
    field_selector: Option<String>,
    /// List across every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// After listing, keep printing changes.
    #[arg(short = 'w', long)]
    watch: bool,
}

/// The output the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    Table { wide: bool },
    Object(Format),
}

fn output_of(flag: Option<&str>) -> anyhow::Result<Output> {
    Ok(match flag {
        None => Output::Table { wide: false },
        Some("wide") => Output::Table { wide: true },
        Some("yaml") => Output::Object(Format::Yaml),
        Some("json") => Output::Object(Format::Json),
        Some("name") => Output::Object(Format::Name),
        Some(other) => bail!("-o {other}: unknown output format (use wide, yaml, json or name)"),
    })
}

pub fn run(args: GetArgs) -> anyhow::Result<()> {
    block_on(get(args))
}

async fn get(args: GetArgs) -> anyhow::Result<()> {
    let output = output_of(args.output.as_deref())?;
    let selection = select(&args.targets)?;
    let client = args.connect.client()?;
    let namespace = (!args.all_namespaces).then_some(client.namespace.as_str());
    let options = TableOptions {
        wide: matches!(output, Output::Table { wide: true }),
        namespace_column: args.all_namespaces,
    };
    match selection {
        Selection::Kind(info) => {
            let scope = Scope::new(info, namespace);
            let mut query = Vec::new();
            if let Some(l) = &args.selector {
                query.push(("labelSelector", l.as_str()));
            }
            if let Some(f) = &args.field_selector {
                query.push(("fieldSelector", f.as_str()));
            }
            if args.watch {
                return watch(&client, info, &scope, &query, output, options).await;
            }
            list(&client, info, &scope, &query, output, options).await
        }
        Selection::Objects(named) => {
            if args.selector.is_some() {
                bail!("a label selector (-l) cannot be combined with object names");
            }
            if args.watch {
                let [(info, name)] = named.objects.as_slice() else {
                    bail!("-w watches one kind: give one name, or none");
                };
                let scope = Scope::new(info, Some(client.namespace.as_str()));
                let selector = format!("metadata.name={name}");
                let query = [("fieldSelector", selector.as_str())];
                let options = TableOptions {
                    namespace_column: false,
                    ..options
                };
                return watch(&client, info, &scope, &query, output, options).await;
            }
            named_objects(&client, &named.objects, output, options).await
        }
    }
}

async fn list(
    client: &Client,
    info: &KindInfo,
    scope: &Scope<'_>,
    query: &[(&str, &str)],
    output: Output,
    options: TableOptions,
) -> anyhow::Result<()> {
    match output {
        Output::Table { .. } => {
            let table = client.get_table(&scope.collection(), query).await?;
            let text = table::render(&table, options);
            if text.is_empty() {
                eprintln!("{}", no_resources(info, scope));
            }
            print!("{text}");
        }
        Output::Object(format) => {
            let list = client.get(&scope.collection(), query).await?;
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if items.is_empty() && format == Format::Name {
                eprintln!("{}", no_resources(info, scope));
            }
            print!("{}", object::render(items, format, false)?);
        }
    }
    Ok(())
}

fn no_resources(info: &KindInfo, scope: &Scope<'_>) -> String {
    match scope.namespace {
        Some(ns) if info.namespaced => format!("No resources found in {ns} namespace."),
        _ => "No resources found".to_string(),
    }
}

/// Named objects, each fetched on its own; the missing ones are reported, the rest
/// printed together.
async fn named_objects(
    client: &Client,
    objects: &[(&'static KindInfo, String)],
    output: Output,
    options: TableOptions,
) -> anyhow::Result<()> {
    let mut failed = false;
    let mut found = Vec::new();
    for (info, name) in objects {
        let scope = Scope::new(info, Some(client.namespace.as_str()));
        let path = scope.item(name);
        let answer = match output {
            Output::Table { .. } => client.get_table(&path, &[]).await,
            Output::Object(_) => client.get(&path, &[]).await,
        };
        match answer {
            Ok(value) => found.push((*info, value)),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    match output {
        Output::Table { .. } => {
            // One table per kind, in the order the kinds first appear, as kubectl.
            let mut kinds: Vec<&str> = Vec::new();
            for (info, _) in &found {
                if !kinds.contains(&info.kind) {
                    kinds.push(info.kind);
                }
            }
            let mut first = true;
            for kind in kinds {
                let tables: Vec<&Value> = found
                    .iter()
                    .filter(|(i, _)| i.kind == kind)
                    .map(|(_, t)| t)
                    .collect();
                let Some(head) = tables.first() else { continue };
                let columns = Columns::of(head, options);
                let mut rows = vec![columns.header()];
                for t in &tables {
                    rows.extend(columns.rows(t));
                }
                if !first {
                    println!();
                }
                first = false;
                print!("{}", table::format_rows(&rows, &mut Vec::new()));
            }
        }
        Output::Object(format) => {
            let single = objects.len() == 1;
            let items = found.into_iter().map(|(_, o)| o).collect();
            print!("{}", object::render(items, format, single)?);
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// Lists, prints, then follows the changes from the list's revision until the server
/// closes the stream.
async fn watch(
    client: &Client,
    info: &'static KindInfo,
    scope: &Scope<'_>,
    query: &[(&str, &str)],
    output: Output,
    options: TableOptions,
) -> anyhow::Result<()> {
    let list = client.get(&scope.collection(), query).await?;
    let revision = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let items = list
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut printer = WatchPrinter::new(info, output, options);
    if items.is_empty() {
        eprintln!("{}", no_resources(info, scope));
    } else {
        printer.print(&items)?;
    }
    let mut watch_query = query.to_vec();
    if !revision.is_empty() {
        watch_query.push(("resourceVersion", revision.as_str()));
    }
    let mut events = client.watch(&scope.collection(), &watch_query).await?;
    while let Some(event) = events.next().await? {
        if event.kind == "BOOKMARK" {
            continue;
        }
        printer.print(std::slice::from_ref(&event.object))?;
    }
    Ok(())
}

/// Prints watched objects; tables get their header once and keep their widths.
struct WatchPrinter {
    info: &'static KindInfo,
    output: Output,
    options: TableOptions,
    columns: Option<Columns>,
    widths: Vec<usize>,
    printed: usize,
}

impl WatchPrinter {
    fn new(info: &'static KindInfo, output: Output, options: TableOptions) -> Self {
        WatchPrinter {
            info,
            output,
            options,
            columns: None,
            widths: Vec::new(),
            printed: 0,
        }
    }

    fn print(&mut self, objects: &[Value]) -> anyhow::Result<()> {
        use std::io::Write as _;
        let text = match self.output {
            Output::Table { .. } => {
                // The same rendering the server does, so rows match `drover get`.
                let table = table_of(
                    self.info,
                    objects,
                    json!({}),
                    IncludeObject::Metadata,
                    Utc::now(),
                );
                let mut rows = Vec::new();
                let columns = match &self.columns {
                    Some(c) => c.clone(),
                    None => {
                        let c = Columns::of(&table, self.options);
                        rows.push(c.header());
                        self.columns = Some(c.clone());
                        c
                    }
                };
                rows.extend(columns.rows(&table));
                table::format_rows(&rows, &mut self.widths)
            }
            Output::Object(Format::Name) => object::render(objects.to_vec(), Format::Name, false)?,
            Output::Object(format) => {
                let mut text = String::new();
                for o in objects {
                    if format == Format::Yaml && self.printed > 0 {
                        text.push_str("---\n");
                    }
                    text.push_str(&object::render(vec![o.clone()], format, true)?);
                    self.printed += 1;
                }
                text
            }
        };
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        Ok(())
    }
}
