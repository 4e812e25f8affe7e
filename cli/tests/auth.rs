//! TLS and bearer tokens with roles, through the real kubectl: a bad token → 401, a
//! viewer's delete → 403, an agent sees only the Tasks bound to its node.

mod common;

use common::{Cluster, WEB};

const TOKENS: &str = "- {token: admin-token-0123456789, user: admin, role: admin}
- {token: viewer-token-0123456789, user: vera, role: viewer}
- {token: agent-token-0123456789, user: 'system:node:n1', role: agent, node: n1}
";

fn task(name: &str, node: &str) -> String {
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node}\n  owner: {{kind: App, name: web}}\n  instance: 0\n  container: {{cmd: \"sleep 1000\"}}\n"
    )
}

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("tokens.yaml"), TOKENS).expect("tokens");
    Cluster::up_in(dir)
}

fn as_user(c: &Cluster, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    c.kubectl(&all)
}

#[test]
fn the_server_speaks_tls_with_the_kubeconfig_ca() {
    let c = cluster();
    assert!(c.server.starts_with("https://127.0.0.1:"), "{}", c.server);
    let kubeconfig = std::fs::read_to_string(&c.kubeconfig).expect("kubeconfig");
    assert!(
        kubeconfig.contains("certificate-authority-data:"),
        "{kubeconfig}"
    );
    assert!(
        kubeconfig.contains("token: admin-token-0123456789"),
        "{kubeconfig}"
    );
    assert!(!kubeconfig.contains("insecure-skip-tls-verify"));
    c.ok(&["get", "apps"]);
}

#[test]
fn no_or_wrong_token_is_401() {
    let c = cluster();
    let out = as_user(&c, "not-a-token", &["get", "apps"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // kubectl's words for a 401.
    assert!(err.contains("You must be logged in to the server"), "{err}");
    // No token at all makes kubectl prompt for a password instead of asking the
    // server: that 401 is checked with a raw request in controller/tests/auth.rs.
}

#[test]
fn a_viewer_reads_but_cannot_delete() {
    let c = cluster();
    let web = c.write("web.yaml", WEB);
    c.ok(&["apply", "-f", web.to_str().expect("utf-8")]);
    let out = as_user(&c, "viewer-token-0123456789", &["get", "apps"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("web"));
    let out = as_user(&c, "viewer-token-0123456789", &["delete", "app", "web"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Forbidden") && err.contains("User \"vera\" cannot delete"),
        "{err}"
    );
    c.ok(&["get", "app", "web"]);
}

#[test]
fn an_agent_sees_only_its_tasks_and_writes_only_their_status() {
    let c = cluster();
    let mine = c.write("mine.yaml", &task("t-mine", "n1"));
    let other = c.write("other.yaml", &task("t-other", "n2"));
    c.ok(&["apply", "-f", mine.to_str().expect("utf-8")]);
    c.ok(&["apply", "-f", other.to_str().expect("utf-8")]);
    let agent = "agent-token-0123456789";

    let out = as_user(
        &c,
        agent,
        &[
            "get",
            "tasks",
            "--field-selector",
            "spec.nodeName=n1",
            "-o",
            "name",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(
        names.contains("t-mine") && !names.contains("t-other"),
        "{names}"
    );

    let out = as_user(&c, agent, &["get", "tasks"]);
    assert!(
        !out.status.success(),
        "listing every task must be forbidden"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));

    let status = r#"{"status":{"phase":"Running"}}"#;
    let out = as_user(
        &c,
        agent,
        &[
            "patch",
            "task",
            "t-mine",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_user(
        &c,
        agent,
        &[
            "patch",
            "task",
            "t-other",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );
    assert!(!out.status.success(), "another node's task");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Forbidden"));
    let out = as_user(
        &c,
        agent,
        &[
            "patch",
            "task",
            "t-mine",
            "--type=merge",
            "-p",
            r#"{"spec":{"nodeName":"n2"}}"#,
        ],
    );
    assert!(
        !out.status.success(),
        "the spec is not the agent's to change"
    );
    let out = as_user(&c, agent, &["get", "apps"]);
    assert!(!out.status.success());
    assert_eq!(
        c.ok(&["get", "task", "t-mine", "-o", "jsonpath={.status.phase}"]),
        "Running"
    );
}
