//! Renders a server-side `meta.k8s.io` Table as kubectl does: upper-case headers, NAME
//! first (NAMESPACE before it with `-A`), `<none>` for empty cells, priority > 0
//! columns only with `-o wide`, columns padded to the widest cell plus three spaces.

use serde_json::Value;

/// Which columns to show.
#[derive(Clone, Copy, Debug, Default)]
pub struct TableOptions {
    /// `-o wide`: also the columns of priority > 0.
    pub wide: bool,
    /// `-A`: a NAMESPACE column first, read from each row's object metadata.
    pub namespace_column: bool,
}

/// Columns picked from a Table's `columnDefinitions`, reusable for later rows (`-w`).
#[derive(Clone, Debug)]
pub struct Columns {
    /// Indexes of the shown cells.
    shown: Vec<usize>,
    headers: Vec<String>,
    namespace_column: bool,
}

impl Columns {
    pub fn of(table: &Value, options: TableOptions) -> Columns {
        let definitions = table
            .get("columnDefinitions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut shown = Vec::new();
        let mut headers = Vec::new();
        if options.namespace_column {
            headers.push("NAMESPACE".to_string());
        }
        for (i, d) in definitions.iter().enumerate() {
            let priority = d.get("priority").and_then(Value::as_i64).unwrap_or(0);
            if priority > 0 && !options.wide {
                continue;
            }
            shown.push(i);
            headers.push(
                d.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_uppercase(),
            );
        }
        Columns {
            shown,
            headers,
            namespace_column: options.namespace_column,
        }
    }

    pub fn header(&self) -> Vec<String> {
        self.headers.clone()
    }

    /// Every row of `table` as printable cells.
    pub fn rows(&self, table: &Value) -> Vec<Vec<String>> {
        table
            .get("rows")
            .and_then(Value::as_array)
            .map(|rows| rows.iter().map(|r| self.row(r)).collect())
            .unwrap_or_default()
    }

    fn row(&self, row: &Value) -> Vec<String> {
        let cells = row
            .get("cells")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out = Vec::with_capacity(self.headers.len());
        if self.namespace_column {
            out.push(
                row.pointer("/object/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        out.extend(self.shown.iter().map(|&i| cell_text(cells.get(i))));
        out
    }
}

/// A cell as kubectl prints it.
pub fn cell_text(cell: Option<&Value>) -> String {
    match cell {
        None | Some(Value::Null) => "<none>".to_string(),
        Some(Value::String(s)) if s.is_empty() => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.is_empty() => "<none>".to_string(),
        Some(other) => other.to_string(),
    }
}

/// Pads columns to a common width (kubectl's tabwriter: three spaces of padding, the
/// last column unpadded). `widths` carries over between calls so a watch's later rows
/// line up with the first ones; it only ever grows.
pub fn format_rows(rows: &[Vec<String>], widths: &mut Vec<usize>) -> String {
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(current) => *current = (*current).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count() + 3;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A Table as text with its header; empty when it has no rows.
pub fn render(table: &Value, options: TableOptions) -> String {
    let columns = Columns::of(table, options);
    let rows = columns.rows(table);
    if rows.is_empty() {
        return String::new();
    }
    let mut all = vec![columns.header()];
    all.extend(rows);
    format_rows(&all, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Value {
        json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "priority": 0},
                {"name": "Instances", "type": "integer", "priority": 0},
                {"name": "Role", "type": "string", "priority": 1},
                {"name": "Age", "type": "date", "priority": 0},
            ],
            "rows": [
                {"cells": ["web", 3, "prod", "5s"], "object": {"metadata": {"name": "web", "namespace": "default"}}},
                {"cells": ["api-server", null, null, "2m10s"], "object": {"metadata": {"name": "api-server", "namespace": "team-a"}}},
            ]
        })
    }

    #[test]
    fn renders_like_kubectl() {
        let text = render(&table(), TableOptions::default());
        assert_eq!(
            text,
            "NAME         INSTANCES   AGE\nweb          3           5s\napi-server   <none>      2m10s\n"
        );
    }

    #[test]
    fn wide_and_all_namespaces_add_columns() {
        let text = render(
            &table(),
            TableOptions {
                wide: true,
                namespace_column: true,
            },
        );
        let header: Vec<&str> = text
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(header, ["NAMESPACE", "NAME", "INSTANCES", "ROLE", "AGE"]);
        assert!(text.contains("team-a      api-server"), "{text}");
    }

    #[test]
    fn later_rows_keep_the_widths() {
        let mut widths = Vec::new();
        let first = format_rows(
            &[
                vec!["NAME".into(), "AGE".into()],
                vec!["web".into(), "1s".into()],
            ],
            &mut widths,
        );
        let later = format_rows(&[vec!["a".into(), "2s".into()]], &mut widths);
        assert_eq!(first, "NAME   AGE\nweb    1s\n");
        assert_eq!(later, "a      2s\n");
    }
}
