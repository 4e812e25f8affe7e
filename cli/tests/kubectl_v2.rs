//! kubectl < 1.29 downloads the OpenAPI v2 document (protobuf) for `kubectl explain` and
//! before every apply: kubectl 1.27 and 1.28 against `drover up`, with client-side
//! validation on (their default, `--validate=strict`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{kubectl_path, Cluster, WEB};

const OLD_KUBECTLS: [&str; 2] = ["1.27", "1.28"];

fn good_manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/tests/good-manifests")
}

/// Whether every document in `text` (YAML, or JSON) is a `drover.dev` object.
fn only_drover_objects(text: &str) -> bool {
    let mut any = false;
    for doc in serde_yaml::Deserializer::from_str(text) {
        let Ok(value) = <serde_yaml::Value as serde::Deserialize>::deserialize(doc) else {
            return false;
        };
        if value.is_null() {
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default();
        if !api_version.starts_with("drover.dev/") {
            return false;
        }
        any = true;
    }
    any
}

fn show(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn old_kubectl_explains_from_the_v2_document() {
    let c = Cluster::up();
    for v in OLD_KUBECTLS {
        let k = kubectl_path(Some(v));
        // The default explain (v3 when served) and the v2 one, which reads /openapi/v2.
        for extra in [&[][..], &["--output", "plaintext-openapiv2"][..]] {
            let mut args = vec!["explain", "app.spec.healthChecks"];
            args.extend_from_slice(extra);
            let out = c.kubectl_with(&k, &args);
            assert!(out.status.success(), "kubectl {v} {args:?}: {}", show(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("intervalSeconds"), "kubectl {v}: {stdout}");
        }
        let out = c.kubectl_with(
            &k,
            &[
                "explain",
                "app.metadata.labels",
                "--output",
                "plaintext-openapiv2",
            ],
        );
        assert!(out.status.success(), "kubectl {v}: {}", show(&out));
    }
}

#[test]
fn old_kubectl_applies_every_good_manifest() {
    let c = Cluster::up();
    let web = c.write("web.yaml", WEB);
    let mut files = vec![web];
    let mut entries: Vec<PathBuf> = std::fs::read_dir(good_manifests_dir())
        .expect("api/tests/good-manifests")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if only_drover_objects(&text) {
            files.push(path);
        }
    }
    assert!(files.len() > 5, "too few manifests: {files:?}");
    for v in OLD_KUBECTLS {
        let k = kubectl_path(Some(v));
        for file in &files {
            let f = file.to_str().expect("utf-8 path");
            let out = c.kubectl_with(&k, &["apply", "--validate=strict", "-f", f]);
            assert!(
                out.status.success(),
                "kubectl {v} apply -f {f}: {}",
                show(&out)
            );
        }
    }
    let out = c.kubectl_with(&kubectl_path(Some("1.27")), &["get", "apps", "-A"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("web"),
        "{}",
        show(&out)
    );
}

#[test]
fn old_kubectl_rejects_an_unknown_field() {
    let c = Cluster::up();
    let bad = c.write(
        "bad.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: bad\nspec:\n  \
         replicaz: 3\n  container:\n    cmd: sleep 100\n",
    );
    let f = bad.to_str().expect("utf-8 path");
    for v in OLD_KUBECTLS {
        let out = c.kubectl_with(&kubectl_path(Some(v)), &["apply", "-f", f]);
        assert!(
            !out.status.success(),
            "kubectl {v} accepted it: {}",
            show(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("replicaz"), "kubectl {v}: {stderr}");
    }
    let out = c.kubectl_with(&kubectl_path(Some("1.27")), &["get", "app", "bad"]);
    assert!(
        !out.status.success(),
        "the bad app was stored: {}",
        show(&out)
    );
}
