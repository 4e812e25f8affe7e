//! The manifest corpus: every `bad-manifests/*.yaml` fails with exactly the errors its
//! `# expect:` lines list; every `good-manifests/*` loads, defaults and validates.

use std::path::{Path, PathBuf};

use drover_api::manifest::{load_manifests, LoadOptions, ManifestError};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "json"))
        .collect();
    out.sort();
    out
}

fn options() -> LoadOptions {
    LoadOptions {
        default_namespace: Some("default".into()),
        strict: true,
    }
}

/// One line per problem: validation errors as `field: message`, the rest as displayed.
fn error_lines(errors: &[ManifestError]) -> Vec<String> {
    let mut lines = Vec::new();
    for e in errors {
        match e {
            ManifestError::Invalid { errors, .. } => {
                lines.extend(errors.errors.iter().map(ToString::to_string))
            }
            other => lines.push(other.to_string()),
        }
    }
    lines
}

#[test]
fn bad_manifests_fail_with_their_expected_errors() {
    let bad = files("bad-manifests");
    assert!(bad.len() >= 15, "the corpus shrank to {}", bad.len());
    let mut failures = Vec::new();
    for path in &bad {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut expected: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(str::to_string)
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no # expect: line",
            path.display()
        );
        let mut got = match load_manifests(&text, &options()) {
            Ok(_) => vec!["(loaded without errors)".to_string()],
            Err(errors) => error_lines(&errors),
        };
        expected.sort();
        got.sort();
        if got != expected {
            failures.push(format!(
                "{}:\n  expected:\n    {}\n  got:\n    {}",
                path.display(),
                expected.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn good_manifests_load_and_validate() {
    let good = files("good-manifests");
    assert!(!good.is_empty());
    for path in &good {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let objects = load_manifests(&text, &options())
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), error_lines(&e).join("\n")));
        assert!(!objects.is_empty(), "{}", path.display());
        for o in &objects {
            // Defaulted objects survive a JSON round trip unchanged.
            let back = drover_api::AnyObject::from_json(o.to_json())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(&back, o, "{}", path.display());
        }
    }
}
