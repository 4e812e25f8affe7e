//! The real kubectl against a `drover up` started by the test: the verbs users type,
//! with no extra flags.

mod common;

use common::{kubectl_path, Cluster, WEB};

#[test]
fn kubectl_apply_get_scale_delete() {
    let c = Cluster::up();
    let file = c.write("web.yaml", WEB);
    let f = file.to_str().expect("utf-8 path");

    let out = c.ok(&["apply", "-f", f]);
    assert!(out.contains("app.drover.dev/web created"), "{out}");
    let out = c.ok(&["apply", "-f", f]);
    assert!(out.contains("app.drover.dev/web unchanged"), "{out}");

    // Table with our printer columns.
    let out = c.ok(&["get", "apps"]);
    let header = out.lines().next().unwrap_or_default();
    for col in ["NAME", "INSTANCES", "AGE"] {
        assert!(header.contains(col), "missing {col} in {out}");
    }
    assert!(
        out.lines().nth(1).unwrap_or_default().starts_with("web "),
        "{out}"
    );

    let yaml = c.ok(&["get", "app", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("instances: 3") && yaml.contains("uid:") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let all = c.ok(&["get", "apps", "-A"]);
    assert!(
        all.lines()
            .next()
            .unwrap_or_default()
            .starts_with("NAMESPACE"),
        "{all}"
    );
    assert!(all.contains("default"), "{all}");
    assert!(c
        .ok(&["get", "apps", "-l", "tier=frontend", "-o", "name"])
        .contains("app.drover.dev/web"));
    assert!(!c
        .ok(&["get", "apps", "-l", "tier!=frontend", "-o", "name"])
        .contains("web"));

    // Change and re-apply: configured, generation bumps.
    let changed = c.write("web2.yaml", &WEB.replace("instances: 3", "instances: 4"));
    let out = c.ok(&["apply", "-f", changed.to_str().expect("utf-8")]);
    assert!(out.contains("app.drover.dev/web configured"), "{out}");
    assert_eq!(
        c.ok(&["get", "app", "web", "-o", "jsonpath={.metadata.generation}"]),
        "2"
    );

    let out = c.ok(&["scale", "app/web", "--replicas=5"]);
    assert!(out.contains("scaled"), "{out}");
    assert_eq!(
        c.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "5"
    );

    let out = c.ok(&["delete", "app", "web"]);
    assert!(out.contains("app.drover.dev \"web\" deleted"), "{out}");
    let gone = c.kubectl(&["get", "app", "web"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("NotFound")
            || String::from_utf8_lossy(&gone.stderr).contains("not found")
    );
}

#[test]
fn kubectl_server_side_apply() {
    let c = Cluster::up();
    let file = c.write("web.yaml", WEB);
    let f = file.to_str().expect("utf-8 path");
    let out = c.ok(&["apply", "--server-side", "-f", f]);
    assert!(
        out.contains("app.drover.dev/web serverside-applied"),
        "{out}"
    );
    let out = c.ok(&["apply", "--server-side", "-f", f]);
    assert!(out.contains("serverside-applied"), "{out}");
    let managers = c.ok(&[
        "get",
        "app",
        "web",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kubectl"), "{managers}");
}

#[test]
fn kubectl_shows_422_with_the_field_path() {
    let c = Cluster::up();
    let bad = c.write("bad.yaml", &WEB.replace("instances: 3", "instances: -1"));
    let out = c.kubectl(&["apply", "-f", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.instances"), "{err}");
    assert!(err.contains("is invalid"), "{err}");
    // Nothing was stored.
    assert!(!c.kubectl(&["get", "app", "web"]).status.success());
}

#[test]
fn kubectl_discovery_and_explain() {
    let c = Cluster::up();
    let out = c.ok(&["api-resources", "--api-group=drover.dev"]);
    for r in ["apps", "tasks", "jobs", "nodes"] {
        assert!(out.contains(r), "missing {r} in {out}");
    }
    let out = c.ok(&["explain", "app.spec.healthChecks"]);
    assert!(out.contains("intervalSeconds"), "{out}");
}

#[test]
fn older_and_newer_kubectl_apply_and_get() {
    let c = Cluster::up();
    let file = c.write("web.yaml", WEB);
    let f = file.to_str().expect("utf-8 path");
    for v in ["1.27", "1.33"] {
        let k = kubectl_path(Some(v));
        let out = c.kubectl_with(&k, &["apply", "-f", f]);
        assert!(
            out.status.success(),
            "kubectl {v} apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = c.kubectl_with(&k, &["get", "apps"]);
        assert!(
            out.status.success(),
            "kubectl {v} get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    }
}
