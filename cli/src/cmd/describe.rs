//! `drover describe KIND NAME`: the object as indented key/values (kubectl's layout for
//! custom resources) and the Events that name it, read from the core events endpoint.

use chrono::{DateTime, Utc};
use drover_api::KindInfo;
use drover_controller::apiserver::table::human_duration;
use serde_json::Value;

use crate::client::resources::{select_named, Scope};
use crate::client::{is_not_found, Client};
use crate::cmd::{block_on, report, AlreadyReported, ConnectArgs};
use crate::print::table::format_rows;

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// KIND NAME…, or KIND/NAME…
    #[arg(required = true, value_name = "KIND NAME")]
    targets: Vec<String>,
}

pub fn run(args: DescribeArgs) -> anyhow::Result<()> {
    block_on(describe(args))
}

async fn describe(args: DescribeArgs) -> anyhow::Result<()> {
    let named = select_named(&args.targets, "describe")?;
    let client = args.connect.client()?;
    let mut failed = false;
    for (i, (info, name)) in named.objects.iter().enumerate() {
        let scope = Scope::new(info, Some(client.namespace.as_str()));
        let object = match client.get(&scope.item(name), &[]).await {
            Ok(o) => o,
            Err(e) => {
                report(&e);
                failed = true;
                continue;
            }
        };
        if i > 0 {
            println!();
        }
        let mut text = render_object(&object);
        text.push_str(&events_section(&client, info, &object).await);
        print!("{text}");
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

const LABEL_WIDTH: usize = 14;

fn header_line(out: &mut String, label: &str, value: &str) {
    let label = format!("{label}:");
    out.push_str(&format!("{label:<LABEL_WIDTH$}{value}\n"));
}

fn map_lines(out: &mut String, label: &str, map: Option<&Value>) {
    let entries: Vec<String> = map
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    match entries.split_first() {
        None => header_line(out, label, "<none>"),
        Some((first, rest)) => {
            header_line(out, label, first);
            for e in rest {
                out.push_str(&format!("{:LABEL_WIDTH$}{e}\n", ""));
            }
        }
    }
}

/// The object: name, namespace, labels and annotations first, then the rest of its
/// metadata, its spec and its status.
pub fn render_object(object: &Value) -> String {
    let meta = object.get("metadata");
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let mut out = String::new();
    header_line(&mut out, "Name", &text(meta.and_then(|m| m.get("name"))));
    if let Some(ns) = meta.and_then(|m| m.get("namespace")) {
        header_line(&mut out, "Namespace", &text(Some(ns)));
    }
    map_lines(&mut out, "Labels", meta.and_then(|m| m.get("labels")));
    map_lines(
        &mut out,
        "Annotations",
        meta.and_then(|m| m.get("annotations")),
    );
    header_line(&mut out, "API Version", &text(object.get("apiVersion")));
    header_line(&mut out, "Kind", &text(object.get("kind")));
    if let Some(Value::Object(meta)) = meta {
        let rest: serde_json::Map<String, Value> = meta
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "name" | "namespace" | "labels" | "annotations" | "managedFields"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        value_lines(&mut out, "Metadata", &Value::Object(rest), 0);
    }
    if let Value::Object(fields) = object {
        for (key, value) in fields {
            if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                value_lines(&mut out, &title(key), value, 0);
            }
        }
    }
    out
}

/// `spec` → `Spec`, as kubectl titles top-level sections.
fn title(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "<none>".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `key: value` lines, nested maps indented by two spaces, list items marked `-`.
fn value_lines(out: &mut String, key: &str, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if map.is_empty() => out.push_str(&format!("{pad}{key}:  <none>\n")),
        Value::Object(map) => {
            out.push_str(&format!("{pad}{key}:\n"));
            for (k, v) in map {
                value_lines(out, k, v, indent + 2);
            }
        }
        Value::Array(items) if items.is_empty() => out.push_str(&format!("{pad}{key}:  <none>\n")),
        Value::Array(items) => {
            out.push_str(&format!("{pad}{key}:\n"));
            for item in items {
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        let mut nested = String::new();
                        for (k, v) in map {
                            value_lines(&mut nested, k, v, indent + 4);
                        }
                        // The first line of the item carries the `-`.
                        let marker_at = indent + 2;
                        if nested.len() > marker_at {
                            nested.replace_range(marker_at..marker_at + 1, "-");
                        }
                        out.push_str(&nested);
                    }
                    other => out.push_str(&format!("{pad}  - {}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{key}:  {}\n", scalar(other))),
    }
}

/// `Events:` with the core events that name the object; `<none>` when there are none
/// or the server does not serve core events yet (404).
async fn events_section(client: &Client, info: &KindInfo, object: &Value) -> String {
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let path = match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) if info.namespaced => format!("/api/v1/namespaces/{ns}/events"),
        _ => "/api/v1/events".to_string(),
    };
    let selector = format!(
        "involvedObject.name={name},involvedObject.kind={}",
        info.kind
    );
    let events = match client.get(&path, &[("fieldSelector", &selector)]).await {
        Ok(list) => list
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        Err(e) if is_not_found(&e) => Vec::new(),
        Err(e) => return format!("Events:       <unavailable: {e:#}>\n"),
    };
    render_events(&events, Utc::now())
}

fn render_events(events: &[Value], now: DateTime<Utc>) -> String {
    if events.is_empty() {
        return "Events:       <none>\n".to_string();
    }
    let text = |e: &Value, p: &str| {
        e.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut rows = vec![
        ["Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
        ["----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    ];
    for e in events {
        let when = [
            "/lastTimestamp",
            "/eventTime",
            "/firstTimestamp",
            "/metadata/creationTimestamp",
        ]
        .iter()
        .find_map(|p| {
            e.pointer(p)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration(now.signed_duration_since(t.with_timezone(&Utc))))
        .unwrap_or_else(|| "<unknown>".into());
        let from = [text(e, "/source/component"), text(e, "/reportingComponent")]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_default();
        rows.push(vec![
            text(e, "/type"),
            text(e, "/reason"),
            when,
            from,
            text(e, "/message"),
        ]);
    }
    let mut out = "Events:\n".to_string();
    for line in format_rows(&rows, &mut Vec::new()).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_nested_values() {
        let web = json!({
            "apiVersion": "drover.dev/v1alpha1", "kind": "App",
            "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "frontend"},
                         "generation": 2, "managedFields": [{"manager": "drover"}]},
            "spec": {"instances": 3, "ports": [{"name": "http", "port": 80}], "args": ["-v"]},
            "status": {"conditions": []}
        });
        let text = render_object(&web);
        assert!(text.starts_with("Name:         web\nNamespace:    default\nLabels:       tier=frontend\nAnnotations:  <none>\n"), "{text}");
        assert!(text.contains("Metadata:\n  generation:  2\n"), "{text}");
        assert!(text.contains("Spec:\n  args:\n    - -v\n  instances:  3\n  ports:\n    - name:  http\n      port:  80\n"), "{text}");
        assert!(!text.contains("managedFields"), "{text}");
    }

    #[test]
    fn events_table() {
        let now = Utc::now();
        let ts = (now - chrono::Duration::seconds(30)).to_rfc3339();
        let events = [
            json!({"type": "Warning", "reason": "FailedScheduling", "lastTimestamp": ts,
            "source": {"component": "drover-scheduler"}, "message": "0/1 nodes: 1 insufficient memMiB"}),
        ];
        let text = render_events(&events, now);
        assert!(text.starts_with("Events:\n  Type      Reason"), "{text}");
        assert!(
            text.contains("Warning   FailedScheduling   30s    drover-scheduler   0/1 nodes"),
            "{text}"
        );
        assert_eq!(render_events(&[], now), "Events:       <none>\n");
    }
}
