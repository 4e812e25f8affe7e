//! Finds where a field path (`spec.healthChecks[0].intervalSeconds`) is written in a
//! multi-document YAML text, so validation errors can name a line. Best effort: block
//! style is followed key by key; inside flow style (`{…}`, `[…]`) the line of the
//! deepest enclosing key is returned.

/// The 0-based line where each document starts, numbered as serde_yaml numbers them
/// (a `---` line starts a document; text before the first `---` is a document only if
/// it has content). `None` when the split disagrees with `expected` documents.
pub fn document_starts(text: &str, expected: usize) -> Option<Vec<usize>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut starts = vec![0];
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("---") && (line.len() == 3 || line[3..].starts_with([' ', '\t'])) {
            starts.push(i);
        }
    }
    let first_has_content = lines[..starts.get(1).copied().unwrap_or(lines.len())]
        .iter()
        .any(|l| is_content(l) && !l.starts_with('%'));
    if !first_has_content && starts.len() > 1 {
        starts.remove(0);
    }
    (starts.len() == expected).then_some(starts)
}

fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#')
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => part.split_at(i),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(i) = r[..end].parse() {
                out.push(Segment::Index(i));
            }
            rest = &r[end + 1..];
        }
    }
    out
}

/// Indent of a line counting `- ` sequence markers as indentation, the raw indent,
/// and the text after both.
fn measure(line: &str) -> (usize, usize, &str) {
    let raw = line.len() - line.trim_start_matches(' ').len();
    let mut rest = &line[raw..];
    let mut effective = raw;
    while let Some(r) = rest
        .strip_prefix("- ")
        .or_else(|| (rest == "-").then_some(""))
    {
        let spaces = r.len() - r.trim_start_matches(' ').len();
        effective += 1 + (rest.len() - r.len() - 1) + spaces;
        rest = &r[spaces..];
    }
    (effective, raw, rest)
}

fn key_of(text: &str) -> Option<&str> {
    let (key, _) = text.split_once(':')?;
    Some(key.trim().trim_matches(|c| c == '"' || c == '\''))
}

/// The 1-based line of `path` in the document of `text` starting at 0-based line
/// `start`; the deepest part of the path that could be found.
pub fn locate(text: &str, start: usize, path: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        if line.starts_with("---") {
            end = i;
            break;
        }
    }
    let mut range = (start, end);
    let mut parent_indent: Option<usize> = None;
    let mut found: Option<usize> = None;
    for segment in segments(path) {
        let candidates =
            (range.0..range.1).filter(|&i| is_content(lines[i]) && !lines[i].starts_with("---"));
        match segment {
            Segment::Key(key) => {
                let level = candidates
                    .clone()
                    .map(|i| measure(lines[i]).0)
                    .filter(|&e| parent_indent.is_none_or(|p| e > p))
                    .min();
                let Some(level) = level else {
                    return found.map(|f| f + 1);
                };
                let at = candidates.clone().find(|&i| {
                    let (e, _, rest) = measure(lines[i]);
                    e == level && key_of(rest) == Some(key)
                });
                let Some(at) = at else {
                    return found.map(|f| f + 1);
                };
                let until = (at + 1..range.1)
                    .find(|&i| is_content(lines[i]) && measure(lines[i]).0 <= level)
                    .unwrap_or(range.1);
                found = Some(at);
                range = (at + 1, until);
                parent_indent = Some(level);
                // A value on the key's own line (`key: value` or flow style) ends the walk.
                let (_, _, rest) = measure(lines[at]);
                let value = rest.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
                if !value.is_empty() && !value.starts_with('#') {
                    range = (at, at);
                }
            }
            Segment::Index(n) => {
                let dashes: Vec<usize> = candidates
                    .filter(|&i| {
                        let t = lines[i].trim_start_matches(' ');
                        t.starts_with("- ") || t == "-"
                    })
                    .collect();
                let indent = dashes.iter().map(|&i| measure(lines[i]).1).min();
                let Some(indent) = indent else {
                    return found.map(|f| f + 1);
                };
                let items: Vec<usize> = dashes
                    .into_iter()
                    .filter(|&i| measure(lines[i]).1 == indent)
                    .collect();
                let Some(&at) = items.get(n) else {
                    return found.map(|f| f + 1);
                };
                let until = items.get(n + 1).copied().unwrap_or(range.1);
                found = Some(at);
                range = (at, until);
                parent_indent = Some(indent);
            }
        }
    }
    found.map(|f| f + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# leading comment
---
apiVersion: drover.dev/v1alpha1
kind: App
metadata: {name: web}
spec:
  instances: 3
---
apiVersion: drover.dev/v1alpha1
kind: App
metadata:
  name: api
spec:
  instances: -1
  healthChecks:
  - http: {portName: http}
    intervalSeconds: 5
  - tcp:
      port: 80
    intervalSeconds: 0
  ports:
    - name: http
";

    #[test]
    fn documents_are_numbered_like_serde_yaml() {
        assert_eq!(document_starts(TEXT, 2), Some(vec![1, 7]));
        assert_eq!(document_starts("a: 1\n---\nb: 2\n", 2), Some(vec![0, 1]));
        assert_eq!(document_starts("a: 1\n", 2), None);
    }

    #[test]
    fn finds_fields_in_block_style() {
        assert_eq!(locate(TEXT, 7, "spec.instances"), Some(14));
        assert_eq!(
            locate(TEXT, 7, "spec.healthChecks[1].intervalSeconds"),
            Some(20)
        );
        assert_eq!(locate(TEXT, 7, "spec.healthChecks[1].tcp.port"), Some(19));
        assert_eq!(locate(TEXT, 7, "spec.ports[0].name"), Some(22));
        assert_eq!(locate(TEXT, 7, "metadata.name"), Some(12));
        assert_eq!(locate(TEXT, 1, "spec.instances"), Some(7));
    }

    #[test]
    fn flow_style_gives_the_enclosing_key() {
        assert_eq!(locate(TEXT, 1, "metadata.name"), Some(5));
        assert_eq!(
            locate(TEXT, 7, "spec.healthChecks[0].http.portName"),
            Some(16)
        );
        assert_eq!(locate(TEXT, 7, "spec.nothing"), Some(13));
    }
}
