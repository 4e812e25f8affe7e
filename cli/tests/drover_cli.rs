//! The `drover` kubectl-like verbs against a `drover up` started by the test, through
//! the kubeconfig it writes (TLS and a bearer token when the server serves them).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{wait_for, Cluster, WEB};

fn drover_command(c: &Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_drover"));
    cmd.args(args)
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", c.dir.path())
        .env("DROVER_LOG", "warn")
        .env_remove("KUBE_EDITOR")
        .env_remove("EDITOR");
    cmd
}

fn drover(c: &Cluster, args: &[&str]) -> Output {
    drover_command(c, args)
        .output()
        .unwrap_or_else(|e| panic!("running drover {}: {e}", args.join(" ")))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// drover that must succeed; returns its stdout.
fn ok(c: &Cluster, args: &[&str]) -> String {
    let out = drover(c, args);
    assert!(
        out.status.success(),
        "drover {} failed:\n{}\n{}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// drover that must fail with exit code 1; returns its stderr.
fn fails(c: &Cluster, args: &[&str]) -> String {
    let out = drover(c, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "drover {} should fail:\n{}\n{}",
        args.join(" "),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn instances(c: &Cluster, name: &str) -> i64 {
    let json: serde_json::Value =
        serde_json::from_str(&ok(c, &["get", "app", name, "-o", "json"])).expect("JSON");
    json["spec"]["instances"].as_i64().unwrap_or(-1)
}

/// Lines a long-running drover prints, as they come.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(c: &Cluster, args: &[&str]) -> Running {
        let mut child = drover_command(c, args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn drover");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// The next line that satisfies `want`, within 10 s; the lines skipped are returned.
    fn line(&self, want: impl Fn(&str) -> bool, what: &str) -> String {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no line with {what}; saw {seen:?}"),
            }
        }
    }

    fn finish(mut self) -> std::process::ExitStatus {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("drover did not exit");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn apply_created_unchanged_then_configured_after_editing_the_file() {
    let c = Cluster::up();
    let file = c.write("web.yaml", WEB);
    let out = ok(&c, &["apply", "-f", path(&file)]);
    assert_eq!(out, "app.drover.dev/web created\n");
    let out = ok(&c, &["apply", "-f", path(&file)]);
    assert_eq!(out, "app.drover.dev/web unchanged\n");

    std::fs::write(&file, WEB.replace("instances: 3", "instances: 4")).expect("edit file");
    let out = ok(&c, &["apply", "-f", path(&file)]);
    assert_eq!(out, "app.drover.dev/web configured\n");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&c, &["get", "app", "web", "-o", "json"])).expect("JSON");
    assert_eq!(json["spec"]["instances"], 4);
    assert_eq!(json["metadata"]["generation"], 2);
    assert!(
        json["metadata"].get("managedFields").is_none(),
        "managedFields are hidden: {json}"
    );
}

#[test]
fn apply_reports_field_manager_conflicts_unless_forced() {
    let c = Cluster::up();
    let file = c.write("web.yaml", WEB);
    // kubectl's server-side apply makes "kubectl" the manager of spec.instances.
    c.ok(&["apply", "--server-side", "-f", path(&file)]);
    std::fs::write(&file, WEB.replace("instances: 3", "instances: 4")).expect("edit file");
    let err = fails(&c, &["apply", "-f", path(&file)]);
    assert!(
        err.contains("web.yaml: document 1:") && err.contains("spec.instances"),
        "{err}"
    );
    assert!(err.contains("--force-conflicts"), "{err}");
    assert_eq!(instances(&c, "web"), 3);
    let out = ok(&c, &["apply", "-f", path(&file), "--force-conflicts"]);
    assert_eq!(out, "app.drover.dev/web configured\n");
    assert_eq!(instances(&c, "web"), 4);
}

#[test]
fn apply_multi_document_files_directories_and_stdin() {
    let c = Cluster::up();
    let two = format!(
        "{WEB}---\n# a comment-only document is skipped\n---\napiVersion: drover.dev/v1alpha1\nkind: Node\nmetadata:\n  name: node-1\n"
    );
    let file = c.write("two.yaml", &two);
    let out = ok(&c, &["apply", "-f", path(&file)]);
    assert_eq!(
        out,
        "app.drover.dev/web created\nnode.drover.dev/node-1 created\n"
    );

    let dir = c.dir.path().join("manifests");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::write(dir.join("a.yaml"), WEB.replace("name: web", "name: api")).expect("a");
    std::fs::write(dir.join("b.yml"), WEB.replace("name: web", "name: db")).expect("b");
    std::fs::write(dir.join("notes.txt"), "not a manifest").expect("txt");
    let out = ok(&c, &["apply", "-f", path(&dir)]);
    assert_eq!(
        out,
        "app.drover.dev/api created\napp.drover.dev/db created\n"
    );

    let mut child = drover_command(&c, &["apply", "-f", "-", "-n", "team-a"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), WEB.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("apply from stdin");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "app.drover.dev/web created\n");
    assert_eq!(
        ok(&c, &["get", "apps", "-n", "team-a", "-o", "name"]),
        "app.drover.dev/web\n"
    );
}

#[test]
fn a_bad_manifest_names_file_document_line_and_field_and_stores_nothing() {
    let c = Cluster::up();
    let bad = format!(
        "{}---\n{}",
        WEB.replace("name: web", "name: good-neighbour"),
        WEB.replace("instances: 3", "instances: -1")
    );
    let bad_file = c.write("bad.yaml", &bad);
    let other = c.write("other.yaml", &WEB.replace("name: web", "name: other"));
    let err = fails(&c, &["apply", "-f", path(&bad_file), "-f", path(&other)]);
    assert!(
        err.contains("bad.yaml: document 2: spec.instances: must be >= 0 (line 31)"),
        "{err}"
    );
    // Nothing of the bad file is stored; the valid file is applied, as kubectl does.
    assert_eq!(
        ok(&c, &["get", "apps", "-o", "name"]),
        "app.drover.dev/other\n"
    );

    let typo = c.write(
        "typo.yaml",
        &WEB.replace("instances: 3", "instances: three"),
    );
    let err = fails(&c, &["apply", "-f", path(&typo)]);
    assert!(
        err.contains("typo.yaml: document 1: spec.instances: invalid type")
            && err.contains("line 8"),
        "{err}"
    );

    let unknown = c.write(
        "unknown.yaml",
        &WEB.replace("instances: 3", "instances: 3\n  replicas: 3"),
    );
    let err = fails(&c, &["apply", "-f", path(&unknown)]);
    assert!(
        err.contains("unknown.yaml: document 1: spec.replicas: unknown field (line 9)"),
        "{err}"
    );
    let err = fails(&c, &["apply", "-f", "/nonexistent/web.yaml"]);
    assert!(
        err.contains("/nonexistent/web.yaml: the path does not exist"),
        "{err}"
    );
}

#[test]
fn get_tables_yaml_names_selectors_and_all_namespaces() {
    let c = Cluster::up();
    let web = c.write("web.yaml", WEB);
    ok(&c, &["apply", "-f", path(&web)]);
    let api = c.write(
        "api.yaml",
        &WEB.replace("name: web", "name: api-server")
            .replace("tier: frontend", "tier: backend"),
    );
    ok(&c, &["apply", "-f", path(&api), "-n", "team-a"]);

    let table = ok(&c, &["get", "apps"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header.first(), Some(&"NAME"), "{table}");
    assert!(
        header.contains(&"INSTANCES") && header.last() == Some(&"AGE"),
        "{table}"
    );
    let row = lines.next().unwrap_or_default();
    assert!(row.starts_with("web "), "{table}");
    assert!(row.contains(" 3 ") && row.contains("<none>"), "{table}");
    // Columns line up: every row's second column starts where the header's does.
    let at = table.find("INSTANCES").unwrap_or(0);
    assert_eq!(row.find('3'), Some(at), "{table}");

    let wide = ok(&c, &["get", "apps", "-o", "wide"]);
    let wide_header = wide.lines().next().unwrap_or_default();
    assert!(
        wide_header.split_whitespace().count() > header.len(),
        "-o wide adds the priority columns:\n{wide}"
    );

    let all = ok(&c, &["get", "apps", "-A"]);
    let all_header = all.lines().next().unwrap_or_default();
    assert!(all_header.starts_with("NAMESPACE   NAME "), "{all}");
    assert!(
        all.lines()
            .any(|l| l.starts_with("team-a      api-server ")),
        "{all}"
    );
    assert!(
        all.lines().any(|l| l.starts_with("default     web ")),
        "{all}"
    );

    let yaml = ok(&c, &["get", "app", "web", "-o", "yaml"]);
    assert!(
        yaml.starts_with("apiVersion: drover.dev/v1alpha1\nkind: App\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("instances: 3") && yaml.contains("uid:") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let list = ok(&c, &["get", "apps", "-A", "-o", "yaml"]);
    assert!(
        list.contains("kind: List") && list.contains("name: api-server"),
        "{list}"
    );

    assert_eq!(
        ok(&c, &["get", "app/web", "-o", "name"]),
        "app.drover.dev/web\n"
    );
    assert_eq!(
        ok(
            &c,
            &["get", "apps", "-A", "-l", "tier=backend", "-o", "name"]
        ),
        "app.drover.dev/api-server\n"
    );
    assert_eq!(
        ok(&c, &["get", "apps", "-l", "tier!=frontend", "-o", "name"]),
        ""
    );
    assert_eq!(
        ok(
            &c,
            &[
                "get",
                "App",
                "-A",
                "--field-selector",
                "metadata.namespace=team-a",
                "-o",
                "name"
            ]
        ),
        "app.drover.dev/api-server\n"
    );
    let named = ok(&c, &["get", "app", "web"]);
    assert!(
        named.lines().nth(1).unwrap_or_default().starts_with("web "),
        "{named}"
    );

    let out = drover(&c, &["get", "apps", "-n", "empty"]);
    assert!(out.status.success());
    assert!(text(&out.stderr).contains("No resources found in empty namespace."));

    let err = fails(&c, &["get", "app", "nope"]);
    assert!(err.contains("\"nope\" not found"), "{err}");
    let err = fails(&c, &["get", "pods"]);
    assert!(
        err.contains("doesn't have a resource type \"pods\""),
        "{err}"
    );
    let err = drover(&c, &["get", "apps", "-o", "bogus"]);
    assert!(!err.status.success());
    assert!(text(&err.stderr).contains("unknown output format"));
}

#[test]
fn get_watch_sees_a_change_made_by_another_command() {
    let c = Cluster::up();
    let web = c.write("web.yaml", WEB);
    ok(&c, &["apply", "-f", path(&web)]);
    let watch = Running::start(&c, &["get", "apps", "-w"]);
    let header = watch.line(|l| l.starts_with("NAME"), "the header");
    assert!(header.contains("INSTANCES"), "{header}");
    watch.line(
        |l| l.starts_with("web ") && l.contains(" 3 "),
        "the first row",
    );

    ok(&c, &["scale", "app/web", "--replicas=5"]);
    let changed = watch.line(|l| l.starts_with("web "), "the changed row");
    assert!(changed.contains(" 5 "), "{changed}");
    let at = header.find("INSTANCES").unwrap_or(0);
    assert_eq!(
        changed.find('5'),
        Some(at),
        "rows keep the header's columns"
    );

    ok(
        &c,
        &[
            "apply",
            "-f",
            path(&c.write("api.yaml", &WEB.replace("name: web", "name: api"))),
        ],
    );
    watch.line(|l| l.starts_with("api "), "a new object's row");
    drop(watch);

    // -o name with a single object watches just that one.
    let named = Running::start(&c, &["get", "app", "web", "-w", "-o", "name"]);
    named.line(|l| l == "app.drover.dev/web", "the initial name");
    ok(&c, &["scale", "app/api", "--replicas=2"]);
    ok(&c, &["scale", "app/web", "--replicas=1"]);
    let next = named.line(|_| true, "the change");
    assert_eq!(next, "app.drover.dev/web");
}

#[test]
fn describe_shows_the_object_and_its_events() {
    let c = Cluster::up();
    ok(&c, &["apply", "-f", path(&c.write("web.yaml", WEB))]);
    let out = ok(&c, &["describe", "app", "web"]);
    assert!(
        out.starts_with(
            "Name:         web\nNamespace:    default\nLabels:       tier=frontend\nAnnotations:  <none>\nAPI Version:  drover.dev/v1alpha1\nKind:         App\n"
        ),
        "{out}"
    );
    assert!(out.contains("\nSpec:\n"), "{out}");
    assert!(out.contains("  instances:  3\n"), "{out}");
    assert!(
        out.contains("    cmd:  busybox httpd -f -p $PORT0\n"),
        "{out}"
    );
    assert!(out.contains("  ports:\n    - name:  http\n"), "{out}");
    assert!(out.contains("uid:"), "{out}");
    assert!(!out.contains("managedFields"), "{out}");
    assert!(out.ends_with("Events:       <none>\n"), "{out}");

    let event = c.write(
        "event.yaml",
        "apiVersion: drover.dev/v1alpha1\nkind: Event\nmetadata: {name: web.1}\n\
         involvedObject: {kind: App, name: web, namespace: default}\nreason: FailedScheduling\n\
         message: '0/1 nodes: 1 insufficient memMiB'\ntype: Warning\ncount: 1\n\
         lastTimestamp: '2026-01-01T00:00:00Z'\nsource: {component: drover-scheduler}\n",
    );
    ok(&c, &["apply", "-f", path(&event)]);
    let out = ok(&c, &["describe", "app/web"]);
    let events = &out[out.find("\nEvents:\n").unwrap_or(0)..];
    assert!(
        events.contains("  Type      Reason             Age")
            && events.contains("  Warning   FailedScheduling   ")
            && events.contains("   drover-scheduler   0/1 nodes: 1 insufficient memMiB\n"),
        "{out}"
    );
    let err = fails(&c, &["describe", "app", "nope"]);
    assert!(err.contains("\"nope\" not found"), "{err}");
}

#[test]
fn scale_sets_instances_through_the_scale_subresource() {
    let c = Cluster::up();
    ok(&c, &["apply", "-f", path(&c.write("web.yaml", WEB))]);
    assert_eq!(
        ok(&c, &["scale", "app/web", "--replicas=5"]),
        "app.drover.dev/web scaled\n"
    );
    assert_eq!(instances(&c, "web"), 5);
    assert_eq!(
        ok(&c, &["scale", "apps", "web", "--replicas", "0"]),
        "app.drover.dev/web scaled\n"
    );
    assert_eq!(instances(&c, "web"), 0);
    let err = fails(&c, &["scale", "app/nope", "--replicas=1"]);
    assert!(err.contains("\"nope\" not found"), "{err}");
    let out = drover(&c, &["scale", "node/n1", "--replicas=1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nodes cannot be scaled"));
}

#[test]
fn edit_with_kube_editor_saves_retries_after_errors_and_cancels_when_unchanged() {
    let c = Cluster::up();
    ok(&c, &["apply", "-f", path(&c.write("web.yaml", WEB))]);
    let script = |name: &str, body: &str| {
        let p = c.write(name, &format!("#!/bin/sh\nset -e\n{body}\n"));
        let mut perms = std::fs::metadata(&p).expect("script").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&p, perms).expect("chmod");
        p
    };
    let edit = |editor: &std::path::Path| {
        drover_command(&c, &["edit", "app", "web"])
            .env("KUBE_EDITOR", editor)
            .output()
            .expect("drover edit")
    };

    let four = script("four.sh", "sed -i 's/instances: 3/instances: 4/' \"$1\"");
    let out = edit(&four);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "app.drover.dev/web edited\n");
    assert_eq!(instances(&c, "web"), 4);

    let same = script("same.sh", "true");
    let out = edit(&same);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "Edit cancelled, no changes made.\n");

    // First save is invalid; the editor sees the server's error on top and fixes it.
    let retry = script(
        "retry.sh",
        "if head -1 \"$1\" | grep -q 'spec.instances'; then sed -i 's/instances: -1/instances: 6/' \"$1\"; \
         else sed -i 's/instances: 4/instances: -1/' \"$1\"; fi",
    );
    let out = edit(&retry);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("spec.instances"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "app.drover.dev/web edited\n");
    assert_eq!(instances(&c, "web"), 6);

    // EDITOR is the fallback.
    let seven = script("seven.sh", "sed -i 's/instances: 6/instances: 7/' \"$1\"");
    let out = drover_command(&c, &["edit", "app/web"])
        .env("EDITOR", &seven)
        .output()
        .expect("drover edit");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(instances(&c, "web"), 7);
}

#[test]
fn wait_for_a_condition_of_the_current_generation_and_for_deletion() {
    let c = Cluster::up();
    ok(&c, &["apply", "-f", path(&c.write("web.yaml", WEB))]);
    let set_status = |observed: i64| {
        let patch = format!(
            r#"{{"status":{{"conditions":[{{"type":"Available","status":"True","reason":"Test","observedGeneration":{observed}}}]}}}}"#
        );
        c.ok(&[
            "patch",
            "app",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    };

    let waiting = Running::start(
        &c,
        &[
            "wait",
            "app/web",
            "--for=condition=Available",
            "--timeout=20s",
        ],
    );
    // A condition about an older generation does not count.
    set_status(0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.lines.try_recv().is_err(),
        "wait must not accept a stale condition"
    );
    set_status(1);
    let met = waiting.line(|_| true, "condition met");
    assert_eq!(met, "app.drover.dev/web condition met");
    assert!(waiting.finish().success());

    // Already true: returns at once. Another status: times out with exit code 1.
    assert_eq!(
        ok(
            &c,
            &["wait", "app", "web", "--for=condition=available=true"]
        ),
        "app.drover.dev/web condition met\n"
    );
    let err = fails(
        &c,
        &[
            "wait",
            "app/web",
            "--for=condition=Available=False",
            "--timeout=1s",
        ],
    );
    assert!(
        err.contains("timed out waiting for the condition on apps/web"),
        "{err}"
    );
    // A spec change makes the condition stale again.
    ok(&c, &["scale", "app/web", "--replicas=4"]);
    fails(
        &c,
        &[
            "wait",
            "app/web",
            "--for=condition=Available",
            "--timeout=1s",
        ],
    );

    let deleting = Running::start(&c, &["wait", "app/web", "--for=delete", "--timeout=20s"]);
    std::thread::sleep(Duration::from_millis(300));
    ok(&c, &["delete", "app", "web"]);
    assert_eq!(
        deleting.line(|_| true, "deleted"),
        "app.drover.dev/web condition met"
    );
    assert!(deleting.finish().success());
    let err = fails(
        &c,
        &[
            "wait",
            "app/web",
            "--for=condition=Available",
            "--timeout=1s",
        ],
    );
    assert!(err.contains("\"web\" not found"), "{err}");
}

#[test]
fn delete_waits_until_gone_and_reports_missing_objects() {
    let c = Cluster::up();
    ok(&c, &["apply", "-f", path(&c.write("web.yaml", WEB))]);
    ok(
        &c,
        &[
            "apply",
            "-f",
            path(&c.write("api.yaml", &WEB.replace("name: web", "name: api"))),
        ],
    );
    assert_eq!(
        ok(&c, &["delete", "app", "web", "api"]),
        "app.drover.dev \"web\" deleted\napp.drover.dev \"api\" deleted\n"
    );
    let err = fails(&c, &["get", "app", "web"]);
    assert!(err.contains("not found"), "{err}");
    let err = fails(&c, &["delete", "app/web"]);
    assert!(err.contains("apps.drover.dev \"web\" not found"), "{err}");
    assert_eq!(ok(&c, &["delete", "app/web", "--ignore-not-found"]), "");
    ok(&c, &["apply", "-f", path(&c.write("web.yaml", WEB))]);
    assert_eq!(
        ok(&c, &["delete", "app/web", "--wait=false"]),
        "app.drover.dev \"web\" deleted\n"
    );
    wait_for(
        || !drover(&c, &["get", "app", "web"]).status.success(),
        "web to be gone",
    );
}

#[test]
fn api_resources_lists_every_kind_from_discovery() {
    let c = Cluster::up();
    let out = ok(&c, &["api-resources"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    );
    let apps: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("apps "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        apps.get(2..),
        Some(&["drover.dev/v1alpha1", "true", "App"][..]),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("nodes ") && l.contains(" false ")),
        "{out}"
    );
    assert!(!out.contains("/scale") && !out.contains("/status"), "{out}");
    assert_eq!(out.lines().count(), 1 + drover_api::KINDS.len(), "{out}");
}

#[test]
fn version_prints_the_client_and_the_server() {
    let c = Cluster::up();
    let out = ok(&c, &["version"]);
    assert!(
        out.starts_with(&format!(
            "Client Version: drover {}\n",
            env!("CARGO_PKG_VERSION")
        )),
        "{out}"
    );
    assert!(out.contains("Server Version: v1.30.0-drover"), "{out}");
    assert!(out.contains(&c.server), "{out}");
    let out = ok(&c, &["version", "--client"]);
    assert!(!out.contains("Server Version"), "{out}");
}

#[test]
fn kubeconfig_comes_from_the_flag_or_a_merged_kubeconfig_list() {
    let c = Cluster::up();
    ok(&c, &["apply", "-f", path(&c.write("web.yaml", WEB))]);
    // KUBECONFIG lists files; missing ones are skipped, the first to set a name wins.
    let decoy = c.write(
        "decoy",
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster: {server: 'http://127.0.0.1:1'}\ncontexts:\n- name: other\n  context: {cluster: other}\n",
    );
    let list = format!(
        "/nonexistent/config:{}:{}",
        path(&decoy),
        path(&c.kubeconfig)
    );
    let out = drover_command(&c, &["get", "apps", "-o", "name"])
        .env("KUBECONFIG", &list)
        .output()
        .expect("drover");
    assert_eq!(
        text(&out.stdout),
        "app.drover.dev/web\n",
        "{}",
        text(&out.stderr)
    );
    // --context picks the decoy's cluster, which does not answer.
    let out = drover_command(&c, &["get", "apps", "--context", "other"])
        .env("KUBECONFIG", &list)
        .output()
        .expect("drover");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot reach the API server at http://127.0.0.1:1"));
    // --kubeconfig wins over KUBECONFIG.
    let out = drover_command(
        &c,
        &[
            "get",
            "apps",
            "-o",
            "name",
            "--kubeconfig",
            path(&c.kubeconfig),
        ],
    )
    .env("KUBECONFIG", path(&decoy))
    .output()
    .expect("drover");
    assert_eq!(
        text(&out.stdout),
        "app.drover.dev/web\n",
        "{}",
        text(&out.stderr)
    );
    let out = drover_command(&c, &["get", "apps", "--context", "missing"])
        .output()
        .expect("drover");
    assert!(text(&out.stderr).contains("context \"missing\" is not in kubeconfig"));
}
