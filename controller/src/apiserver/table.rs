//! `kubectl get` output: recognises a request for a `meta.k8s.io` Table and renders a
//! list as one, with the kind's printer columns (the CRDs' `additionalPrinterColumns`).

use chrono::{DateTime, Utc};
use drover_api::resource::{KindInfo, PrinterColumn, AGE_COLUMN};
use serde_json::{json, Map, Value};

/// Kubernetes' description of `metadata.name`, which the Name column carries.
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when \
    creating resources, although some resources may allow a client to request the generation \
    of an appropriate name automatically. Name is primarily intended for creation idempotence \
    and configuration definition. Cannot be updated. More info: \
    https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// What each row's `object` carries (`?includeObject=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No `object`.
    None,
    /// A `PartialObjectMetadata` (the default; kubectl reads the namespace and labels
    /// from it for `-A`, `--show-labels` and `-L`).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

/// The `includeObject` choice. Takes either the parameter's value (`Object`) or a raw
/// query string (`limit=500&includeObject=Object`); anything else means the default.
pub fn parse_include_object(query: Option<&str>) -> IncludeObject {
    let Some(q) = query else {
        return IncludeObject::default();
    };
    let value = if q.contains('=') {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "includeObject")
            .map(|(_, v)| v)
            .unwrap_or("")
    } else {
        q
    };
    match value {
        "None" => IncludeObject::None,
        "Object" => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// True when the `Accept` header asks for a `meta.k8s.io` Table (v1 or v1beta1) in any
/// of its media ranges, e.g. kubectl's
/// `application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json`.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(range_is_table)
}

fn range_is_table(range: &str) -> bool {
    let mut parts = range.split(';').map(str::trim);
    let media = parts.next().unwrap_or("");
    if !media.eq_ignore_ascii_case("application/json") {
        return false;
    }
    let (mut as_table, mut group, mut version, mut refused) = (false, false, false, false);
    for param in parts {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim().to_ascii_lowercase().as_str() {
            "as" => as_table = v == "Table",
            "g" => group = v == "meta.k8s.io",
            "v" => version = v == "v1" || v == "v1beta1",
            "q" => refused = v.parse::<f64>().is_ok_and(|q| q <= 0.0),
            _ => {}
        }
    }
    as_table && group && version && !refused
}

/// Renders `items` of the kind `info` as a `meta.k8s.io/v1` Table. `list_metadata`
/// becomes the table's metadata (resourceVersion, continue); `date` columns are shown
/// as ages relative to `now`.
pub fn table(
    info: &KindInfo,
    items: &[Value],
    list_metadata: Value,
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let columns = columns(info);
    let mut definitions = vec![json!({
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": NAME_DESCRIPTION,
        "priority": 0,
    })];
    definitions.extend(columns.iter().map(|c| {
        json!({
            "name": c.name,
            "type": c.type_,
            "format": "",
            "description": c.description,
            "priority": c.priority,
        })
    }));
    let rows: Vec<Value> = items
        .iter()
        .map(|item| row(&columns, item, include_object, now))
        .collect();
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "Table",
        "metadata": list_metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

/// The kind's printer columns, with Age appended if the kind forgot it.
fn columns(info: &KindInfo) -> Vec<PrinterColumn> {
    let mut columns = info.printer_columns.to_vec();
    if !columns
        .iter()
        .any(|c| c.name == AGE_COLUMN.name || c.json_path == AGE_COLUMN.json_path)
    {
        columns.push(AGE_COLUMN);
    }
    columns
}

fn row(
    columns: &[PrinterColumn],
    item: &Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let name = item
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let mut cells = vec![name];
    cells.extend(columns.iter().map(|c| cell(c, item, now)));
    let mut row = Map::new();
    row.insert("cells".into(), Value::Array(cells));
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            row.insert(
                "object".into(),
                json!({
                    "apiVersion": "meta.k8s.io/v1",
                    "kind": "PartialObjectMetadata",
                    "metadata": item.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
        IncludeObject::Object => {
            row.insert("object".into(), item.clone());
        }
    }
    Value::Object(row)
}

/// One cell, as the apiextensions table convertor computes it: the first JSONPath result
/// converted to the column's type; nothing (which kubectl prints as `<none>`) when the
/// path finds nothing or the value does not fit the type.
fn cell(column: &PrinterColumn, item: &Value, now: DateTime<Utc>) -> Value {
    let found = match JsonPath::parse(column.json_path) {
        Some(path) => path.first(item),
        None => None,
    };
    let Some(value) = found.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match column.type_ {
        "integer" => match value {
            Value::Number(n) if n.is_i64() || n.is_u64() => value.clone(),
            Value::Number(n) => n
                .as_f64()
                .map(|f| Value::from(f.trunc() as i64))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => match value {
            Value::Number(_) => value.clone(),
            _ => Value::Null,
        },
        "boolean" => match value {
            Value::Bool(_) => value.clone(),
            _ => Value::Null,
        },
        "date" => match value {
            Value::String(s) => Value::String(age(s, now)),
            _ => Value::Null,
        },
        _ => match value {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        },
    }
}

/// A timestamp as kubectl's AGE: `<unknown>` when unset, `<invalid>` when unparsable.
fn age(timestamp: &str, now: DateTime<Utc>) -> String {
    if timestamp.is_empty() || timestamp == "null" {
        return "<unknown>".to_string();
    }
    match DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => human_duration(now.signed_duration_since(t.with_timezone(&Utc))),
        Err(_) => "<invalid>".to_string(),
    }
}

/// Kubernetes' `duration.HumanDuration`: two significant units at most, coarser as the
/// duration grows (`90s`, `5m3s`, `3h`, `2d5h`, `400d`, `2y10d`).
pub fn human_duration(d: chrono::Duration) -> String {
    // Truncated toward zero like Go's int(d.Seconds()); a second of clock skew is "0s".
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The JSONPath subset printer columns use: `.a.b`, `.a[0].b`, `.a[*].b`,
/// `.a['x.y']`, `.a[?(@.type=="Ready")].status`, optionally in `{…}` and after `$`.
#[derive(Clone, Debug, PartialEq)]
struct JsonPath {
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter(Filter),
}

#[derive(Clone, Debug, PartialEq)]
struct Filter {
    path: Vec<String>,
    /// `None` tests only that the path exists.
    comparison: Option<(bool, Value)>,
}

impl JsonPath {
    fn parse(expr: &str) -> Option<JsonPath> {
        let mut s = expr.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            s = inner.trim();
        }
        s = s.strip_prefix('$').unwrap_or(s);
        let mut steps = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                match name {
                    "" => {}
                    "*" => steps.push(Step::Wildcard),
                    _ => steps.push(Step::Field(name.to_string())),
                }
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = closing_bracket(r)?;
                steps.push(parse_bracket(r[..end].trim())?);
                rest = &r[end + 1..];
            } else {
                // A path without a leading dot (`status.phase`).
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                steps.push(Step::Field(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        Some(JsonPath { steps })
    }

    /// The first value the path selects in `root`.
    fn first<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut current = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                step.apply(v, &mut next);
            }
            if next.is_empty() {
                return None;
            }
            current = next;
        }
        current.into_iter().next()
    }
}

/// The index of the `]` closing a bracket, skipping quoted text.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return Some(i),
            (None, _) => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
}

fn parse_bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::Wildcard);
    }
    if let Some(filter) = inner.strip_prefix('?') {
        let body = filter.trim().strip_prefix('(')?.strip_suffix(')')?.trim();
        return parse_filter(body).map(Step::Filter);
    }
    if let Some(key) = unquote(inner) {
        return Some(Step::Field(key.to_string()));
    }
    inner.parse::<i64>().ok().map(Step::Index)
}

fn parse_filter(body: &str) -> Option<Filter> {
    let (lhs, comparison) = match body.find("==").or_else(|| body.find("!=")) {
        Some(i) => {
            let negated = body[i..].starts_with("!=");
            let literal = body[i + 2..].trim();
            let value = match unquote(literal) {
                Some(s) => Value::String(s.to_string()),
                None => serde_json::from_str(literal).ok()?,
            };
            (&body[..i], Some((negated, value)))
        }
        None => (body, None),
    };
    let path = lhs.trim().strip_prefix('@')?;
    let path = path
        .split('.')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    Some(Filter { path, comparison })
}

impl Step {
    fn apply<'a>(&self, v: &'a Value, out: &mut Vec<&'a Value>) {
        match self {
            Step::Field(name) => out.extend(v.get(name.as_str())),
            Step::Index(i) => {
                if let Value::Array(items) = v {
                    let len = items.len() as i64;
                    let idx = if *i < 0 { len + i } else { *i };
                    if let Ok(idx) = usize::try_from(idx) {
                        out.extend(items.get(idx));
                    }
                }
            }
            Step::Wildcard => match v {
                Value::Array(items) => out.extend(items.iter()),
                Value::Object(map) => out.extend(map.values()),
                _ => {}
            },
            Step::Filter(filter) => {
                if let Value::Array(items) = v {
                    out.extend(items.iter().filter(|item| filter.accepts(item)));
                }
            }
        }
    }
}

impl Filter {
    fn accepts(&self, item: &Value) -> bool {
        let mut cur = item;
        for p in &self.path {
            match cur.get(p.as_str()) {
                Some(v) => cur = v,
                None => return false,
            }
        }
        match &self.comparison {
            None => true,
            Some((negated, want)) => {
                let equal = match (cur, want) {
                    (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                    (a, b) => a == b,
                };
                equal != *negated
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use drover_api::registry::find_kind;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 2, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn app_info() -> &'static KindInfo {
        find_kind("App").unwrap_or_else(|| panic!("App is registered"))
    }

    #[test]
    fn renders_an_app_list_exactly() {
        let items = vec![
            json!({
                "apiVersion": "drover.dev/v1alpha1",
                "kind": "App",
                "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"},
                             "creationTimestamp": "2026-01-02T11:55:00Z", "resourceVersion": "7"},
                "spec": {"instances": 3},
                "status": {"running": 2, "healthy": 1, "version": "v2"}
            }),
            json!({
                "apiVersion": "drover.dev/v1alpha1",
                "kind": "App",
                "metadata": {"name": "db", "namespace": "prod", "creationTimestamp": "2025-12-30T10:00:00Z"},
                "spec": {"instances": 1}
            }),
        ];
        let t = table(
            app_info(),
            &items,
            json!({"resourceVersion": "57", "continue": "abc"}),
            IncludeObject::Metadata,
            now(),
        );
        let expected = json!({
            "apiVersion": "meta.k8s.io/v1",
            "kind": "Table",
            "metadata": {"resourceVersion": "57", "continue": "abc"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0},
                {"name": "Instances", "type": "integer", "format": "", "description": "Desired instances", "priority": 0},
                {"name": "Running", "type": "integer", "format": "", "description": "Running instances", "priority": 0},
                {"name": "Healthy", "type": "integer", "format": "", "description": "Healthy instances", "priority": 0},
                {"name": "Age", "type": "date", "format": "", "description": "Time since the object was created", "priority": 0},
                {"name": "Version", "type": "string", "format": "", "description": "Current version", "priority": 1}
            ],
            "rows": [
                {
                    "cells": ["web", 3, 2, 1, "5m", "v2"],
                    "object": {
                        "apiVersion": "meta.k8s.io/v1",
                        "kind": "PartialObjectMetadata",
                        "metadata": {"name": "web", "namespace": "default", "labels": {"tier": "front"},
                                     "creationTimestamp": "2026-01-02T11:55:00Z", "resourceVersion": "7"}
                    }
                },
                {
                    "cells": ["db", 1, null, null, "3d2h", null],
                    "object": {
                        "apiVersion": "meta.k8s.io/v1",
                        "kind": "PartialObjectMetadata",
                        "metadata": {"name": "db", "namespace": "prod", "creationTimestamp": "2025-12-30T10:00:00Z"}
                    }
                }
            ]
        });
        assert_eq!(t, expected);
    }

    #[test]
    fn include_object_variants() {
        let item = json!({"metadata": {"name": "a"}, "spec": {"instances": 1}});
        let full = table(
            app_info(),
            std::slice::from_ref(&item),
            json!({}),
            IncludeObject::Object,
            now(),
        );
        assert_eq!(full["rows"][0]["object"], item);
        let none = table(app_info(), &[item], json!({}), IncludeObject::None, now());
        assert!(none["rows"][0].get("object").is_none());
        let empty = table(
            app_info(),
            &[],
            json!({"resourceVersion": "1"}),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(empty["rows"], json!([]));
        assert_eq!(empty["columnDefinitions"][0]["name"], "Name");
    }

    #[test]
    fn every_kind_has_an_age_column_after_name() {
        for info in drover_api::registry::KINDS {
            let t = table(info, &[], json!({}), IncludeObject::Metadata, now());
            let defs = t["columnDefinitions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(defs[0]["name"], "Name", "{}", info.kind);
            assert_eq!(
                defs.iter().filter(|d| d["name"] == "Age").count(),
                1,
                "{}",
                info.kind
            );
            assert_eq!(defs.len(), columns(info).len() + 1);
        }
    }

    #[test]
    fn age_is_appended_when_missing() {
        const COLS: &[PrinterColumn] = &[PrinterColumn {
            name: "Phase",
            type_: "string",
            json_path: ".status.phase",
            description: "Phase",
            priority: 0,
        }];
        let info = KindInfo {
            printer_columns: COLS,
            ..*app_info()
        };
        let names: Vec<&str> = columns(&info).iter().map(|c| c.name).collect();
        assert_eq!(names, ["Phase", "Age"]);
    }

    #[test]
    fn node_ready_column_uses_a_filter() {
        let node = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-02T11:59:30Z"},
            "status": {"conditions": [
                {"type": "DiskPressure", "status": "False"},
                {"type": "Ready", "status": "True"}
            ], "capacity": {"cpus": 4.0, "memMiB": 8192}},
            "spec": {"unschedulable": false}
        });
        let info = find_kind("Node").unwrap_or_else(|| panic!("Node is registered"));
        let t = table(info, &[node], json!({}), IncludeObject::None, now());
        let defs = t["columnDefinitions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cells = t["rows"][0]["cells"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cell = |name: &str| {
            let i = defs.iter().position(|d| d["name"] == name);
            i.map(|i| cells[i].clone())
        };
        assert_eq!(cell("Ready"), Some(json!("True")));
        assert_eq!(cell("Age"), Some(json!("30s")));
        assert_eq!(cell("Name"), Some(json!("n1")));
    }

    #[test]
    fn cells_follow_column_types() {
        let col = |type_: &'static str, json_path: &'static str| PrinterColumn {
            name: "X",
            type_,
            json_path,
            description: "",
            priority: 0,
        };
        let obj = json!({"a": {"i": 3, "f": 2.5, "b": true, "s": "x", "t": "2026-01-02T10:00:00Z",
                                "bad": "yesterday", "empty": "", "list": [1, 2]}});
        let c = |type_, path| cell(&col(type_, path), &obj, now());
        assert_eq!(c("integer", ".a.i"), json!(3));
        assert_eq!(c("integer", ".a.f"), json!(2));
        assert_eq!(c("integer", ".a.s"), Value::Null);
        assert_eq!(c("number", ".a.f"), json!(2.5));
        assert_eq!(c("number", ".a.i"), json!(3));
        assert_eq!(c("boolean", ".a.b"), json!(true));
        assert_eq!(c("boolean", ".a.s"), Value::Null);
        assert_eq!(c("string", ".a.s"), json!("x"));
        assert_eq!(c("string", ".a.i"), json!("3"));
        assert_eq!(c("string", ".a.b"), json!("true"));
        assert_eq!(c("string", ".a.list"), json!("[1,2]"));
        assert_eq!(c("string", ".a.missing"), Value::Null);
        assert_eq!(c("date", ".a.t"), json!("120m"));
        assert_eq!(c("date", ".a.bad"), json!("<invalid>"));
        assert_eq!(c("date", ".a.empty"), json!("<unknown>"));
        assert_eq!(c("date", ".a.missing"), Value::Null);
        assert_eq!(c("string", "{.a.s}"), json!("x"));
    }

    #[test]
    fn json_path_subset() {
        let obj = json!({
            "spec": {"ports": [{"name": "http", "port": 80}, {"name": "grpc", "port": 9090}]},
            "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
            "status": {"conditions": [{"type": "Ready", "status": "False", "gen": 2}]}
        });
        let get = |p: &str| {
            JsonPath::parse(p)
                .and_then(|path| path.first(&obj).cloned())
                .unwrap_or(Value::Null)
        };
        assert_eq!(get(".spec.ports[0].name"), json!("http"));
        assert_eq!(get(".spec.ports[1].port"), json!(9090));
        assert_eq!(get(".spec.ports[-1].port"), json!(9090));
        assert_eq!(get(".spec.ports[2].port"), Value::Null);
        assert_eq!(get(".spec.ports[*].port"), json!(80));
        assert_eq!(get("$.spec.ports[?(@.name=='grpc')].port"), json!(9090));
        assert_eq!(get(".spec.ports[?(@.port == 9090)].name"), json!("grpc"));
        assert_eq!(get(".spec.ports[?(@.name!=\"http\")].name"), json!("grpc"));
        assert_eq!(
            get(".status.conditions[?(@.type==\"Ready\")].status"),
            json!("False")
        );
        assert_eq!(
            get(".status.conditions[?(@.type==\"Gone\")].status"),
            Value::Null
        );
        assert_eq!(get(".status.conditions[?(@.gen)].type"), json!("Ready"));
        assert_eq!(
            get(".metadata.labels['app.kubernetes.io/name']"),
            json!("web")
        );
        assert_eq!(get("spec.ports[0].name"), json!("http"));
        assert_eq!(get(".spec.ports[x"), Value::Null);
    }

    #[test]
    fn human_durations_match_kubernetes() {
        let d = |s: i64| human_duration(chrono::Duration::seconds(s));
        assert_eq!(d(-5), "<invalid>");
        assert_eq!(d(-1), "0s");
        assert_eq!(d(0), "0s");
        assert_eq!(d(5), "5s");
        assert_eq!(d(90), "90s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(120), "2m");
        assert_eq!(d(303), "5m3s");
        assert_eq!(d(599), "9m59s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 - 1), "179m");
        assert_eq!(d(3 * 3600), "3h");
        assert_eq!(d(3 * 3600 + 25 * 60), "3h25m");
        assert_eq!(d(8 * 3600), "8h");
        assert_eq!(d(47 * 3600 + 59 * 60), "47h");
        assert_eq!(d(48 * 3600), "2d");
        assert_eq!(d(50 * 3600), "2d2h");
        assert_eq!(d(8 * 86400 - 1), "7d23h");
        assert_eq!(d(8 * 86400), "8d");
        assert_eq!(d(729 * 86400), "729d");
        assert_eq!(d(730 * 86400), "2y");
        assert_eq!(d(740 * 86400), "2y10d");
        assert_eq!(d(8 * 365 * 86400), "8y");
        assert_eq!(
            human_duration(chrono::Duration::milliseconds(-1500)),
            "0s",
            "sub-second truncation toward zero, as Go's int(d.Seconds())"
        );
    }

    #[test]
    fn recognises_table_requests() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(wants_table(
            "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
        ));
        assert!(wants_table(
            "application/json; as=Table; g=meta.k8s.io; v=v1; q=0.9, */*"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table("*/*"));
        assert!(!wants_table(""));
        assert!(!wants_table(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
        ));
        assert!(!wants_table("application/json;as=Table;v=v2;g=meta.k8s.io"));
        assert!(!wants_table("application/json;as=Table;v=v1;g=other.io"));
        assert!(!wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io;q=0"
        ));
        assert!(!wants_table(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io"
        ));
    }

    #[test]
    fn include_object_parsing() {
        assert_eq!(parse_include_object(None), IncludeObject::Metadata);
        assert_eq!(parse_include_object(Some("None")), IncludeObject::None);
        assert_eq!(
            parse_include_object(Some("Metadata")),
            IncludeObject::Metadata
        );
        assert_eq!(parse_include_object(Some("Object")), IncludeObject::Object);
        assert_eq!(parse_include_object(Some("bogus")), IncludeObject::Metadata);
        assert_eq!(
            parse_include_object(Some("limit=500&includeObject=Object")),
            IncludeObject::Object
        );
        assert_eq!(
            parse_include_object(Some("limit=500")),
            IncludeObject::Metadata
        );
    }
}
