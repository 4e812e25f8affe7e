//! The real kubectl against a `drover up` started by the test: the verbs users type,
//! with no extra flags.

mod common;

use common::{kubectl_path, Cluster, WEB};

/// Every case runs against `drover up` (embedded store) and `drover server` on etcd.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $case() { super::$case(&super::Cluster::up()); } )*
        }
        mod etcd {
            $( #[test] fn $case() { super::$case(&super::Cluster::on_etcd()); } )*
        }
    };
}

on_both_stores!(
    kubectl_apply_get_scale_delete,
    kubectl_server_side_apply,
    kubectl_shows_422_with_the_field_path,
    kubectl_discovery_and_explain,
    older_and_newer_kubectl_apply_and_get,
    kubectl_get_watch_receives_a_change,
    kubectl_edit_through_kube_editor,
    kubectl_wait_for_a_condition_set_through_status,
    kubectl_describe_shows_events,
);

fn kubectl_apply_get_scale_delete(c: &Cluster) {
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

fn kubectl_server_side_apply(c: &Cluster) {
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

fn kubectl_shows_422_with_the_field_path(c: &Cluster) {
    let bad = c.write("bad.yaml", &WEB.replace("instances: 3", "instances: -1"));
    let out = c.kubectl(&["apply", "-f", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.instances"), "{err}");
    assert!(err.contains("is invalid"), "{err}");
    // Nothing was stored.
    assert!(!c.kubectl(&["get", "app", "web"]).status.success());
}

fn kubectl_discovery_and_explain(c: &Cluster) {
    let out = c.ok(&["api-resources", "--api-group=drover.dev"]);
    for r in ["apps", "tasks", "jobs", "nodes"] {
        assert!(out.contains(r), "missing {r} in {out}");
    }
    let out = c.ok(&["explain", "app.spec.healthChecks"]);
    assert!(out.contains("intervalSeconds"), "{out}");
}

fn older_and_newer_kubectl_apply_and_get(c: &Cluster) {
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

fn kubectl_get_watch_receives_a_change(c: &Cluster) {
    let file = c.write("web.yaml", WEB);
    c.ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    let mut watch = std::process::Command::new(kubectl_path(None))
        .args(["get", "apps", "-w", "--output-watch-events"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let header = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the header");
    assert!(
        header.starts_with("EVENT") && header.contains("INSTANCES"),
        "{header}"
    );
    let first = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the initial ADDED");
    assert!(
        first.starts_with("ADDED") && first.contains("web"),
        "{first}"
    );
    c.ok(&["scale", "app/web", "--replicas=7"]);
    let next = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the change");
    assert!(
        next.starts_with("MODIFIED") && next.contains("web"),
        "{next}"
    );
    c.ok(&["delete", "app", "web"]);
    let gone = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the delete");
    assert!(gone.starts_with("DELETED"), "{gone}");
    let _ = watch.kill();
    let _ = watch.wait();
}

fn kubectl_edit_through_kube_editor(c: &Cluster) {
    let file = c.write("web.yaml", WEB);
    c.ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    let editor = c.write(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/instances: 3/instances: 6/' \"$1\"\n",
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&editor)
        .status()
        .expect("chmod");
    let out = std::process::Command::new(kubectl_path(None))
        .args(["edit", "app", "web"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .env("KUBE_EDITOR", &editor)
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("app.drover.dev/web edited"));
    assert_eq!(
        c.ok(&["get", "app", "web", "-o", "jsonpath={.spec.instances}"]),
        "6"
    );
}

fn kubectl_wait_for_a_condition_set_through_status(c: &Cluster) {
    let file = c.write("web.yaml", WEB);
    c.ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    let status = r#"{"status":{"observedGeneration":1,"conditions":[{"type":"Available","status":"True","reason":"MinimumHealthy","message":"3/3 healthy","lastTransitionTime":"2026-11-24T00:00:00Z"}]}}"#;
    let waiter = std::process::Command::new(kubectl_path(None))
        .args([
            "wait",
            "app/web",
            "--for=condition=Available",
            "--timeout=30s",
        ])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl wait");
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.ok(&[
        "patch",
        "app",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
    let out = waiter.wait_with_output().expect("wait output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("condition met"));
    // The status write did not touch the spec or the generation.
    assert_eq!(
        c.ok(&["get", "app", "web", "-o", "jsonpath={.metadata.generation}"]),
        "1"
    );
}

fn kubectl_describe_shows_events(c: &Cluster) {
    let file = c.write("web.yaml", WEB);
    c.ok(&["apply", "-f", file.to_str().expect("utf-8")]);
    let uid = c.ok(&["get", "app", "web", "-o", "jsonpath={.metadata.uid}"]);
    let event = format!(
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: web.1\n  namespace: default\ninvolvedObject:\n  apiVersion: drover.dev/v1alpha1\n  kind: App\n  name: web\n  namespace: default\n  uid: {uid}\nreason: FailedScheduling\nmessage: \"0/3 nodes: 3 insufficient memMiB\"\ntype: Warning\ncount: 1\nfirstTimestamp: \"2026-11-24T00:00:00Z\"\nlastTimestamp: \"2026-11-24T00:00:00Z\"\nsource:\n  component: drover-scheduler\n"
    );
    let ev = c.write("event.yaml", &event);
    c.ok(&["create", "-f", ev.to_str().expect("utf-8")]);
    let out = c.ok(&["describe", "app", "web"]);
    assert!(out.contains("Events:"), "{out}");
    assert!(
        out.contains("FailedScheduling") && out.contains("insufficient memMiB"),
        "{out}"
    );
    let evs = c.ok(&["get", "events"]);
    assert!(evs.contains("FailedScheduling"), "{evs}");
}
