//! From `kubectl apply` of an App to healthy instances on `drover up`'s own agent: the
//! apps controller places Tasks, the agent runs them and checks their health, scaling
//! follows, an unplaceable instance says why in status and in an Event, and deleting
//! the App removes its Tasks.

mod common;

use common::{wait_for, Cluster};

const APP: &str = r#"apiVersion: drover.dev/v1alpha1
kind: App
metadata:
  name: web
spec:
  instances: 2
  container:
    cmd: "mkdir -p www && echo hello > www/index.html && exec busybox httpd -f -p $PORT_HTTP -h www"
  resources: {cpus: 0.1, memMiB: 16}
  ports:
    - name: http
  healthChecks:
    - http: {portName: http, path: /index.html}
      delaySeconds: 0
      intervalSeconds: 1
      gracePeriodSeconds: 5
  constraints:
    - [hostname, UNIQUE]
"#;

fn field(c: &Cluster, kind: &str, name: &str, path: &str) -> String {
    let out = c.kubectl(&["get", kind, name, "-o", &format!("jsonpath={path}")]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_app_becomes_healthy_instances_and_follows_scale_and_delete() {
    let c = Cluster::full();
    let f = c.write(
        "web.yaml",
        APP.replace("[hostname, UNIQUE]", "[hostname, LIKE, \".*\"]")
            .as_str(),
    );
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_for(
        || field(&c, "app", "web", "{.status.healthy}") == "2",
        "2 healthy instances",
    );
    assert_eq!(field(&c, "app", "web", "{.status.running}"), "2");
    // Each instance answers on its host port.
    let ports = c.ok(&[
        "get",
        "tasks",
        "-l",
        "drover.dev/app=web",
        "-o",
        "jsonpath={.items[*].spec.ports[0].hostPort}",
    ]);
    let ports: Vec<&str> = ports.split_whitespace().collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    for p in ports {
        let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{p}")).expect("connect");
        use std::io::{Read, Write};
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .expect("request");
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.1 200") && reply.contains("hello"),
            "{reply}"
        );
    }
    c.ok(&["scale", "app/web", "--replicas=1"]);
    wait_for(
        || {
            c.ok(&["get", "tasks", "-l", "drover.dev/app=web", "-o", "name"])
                .lines()
                .count()
                == 1
        },
        "scale down to 1",
    );
    c.ok(&["delete", "app", "web"]);
    wait_for(
        || c.ok(&["get", "tasks", "-o", "name"]).trim().is_empty(),
        "the App's tasks to go",
    );
}

#[test]
fn an_unplaceable_instance_says_why_in_status_and_events() {
    let c = Cluster::full();
    let f = c.write("web.yaml", APP);
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    // One node and hostname:UNIQUE: the second instance cannot be placed.
    wait_for(
        || {
            field(
                &c,
                "app",
                "web",
                "{.status.conditions[?(@.type==\"Scheduled\")].status}",
            ) == "False"
        },
        "Scheduled=False",
    );
    let message = field(
        &c,
        "app",
        "web",
        "{.status.conditions[?(@.type==\"Scheduled\")].message}",
    );
    assert_eq!(message, "0/1 nodes: 1 constraint hostname:UNIQUE");
    wait_for(
        || field(&c, "app", "web", "{.status.running}") == "1",
        "the first instance to run",
    );
    let described = c.ok(&["describe", "app", "web"]);
    assert!(
        described.contains("FailedScheduling")
            && described.contains("0/1 nodes: 1 constraint hostname:UNIQUE"),
        "{described}"
    );
    // More memory than the node has: said in the same words.
    let big = c.write(
        "big.yaml",
        &APP.replace("name: web", "name: big")
            .replace("memMiB: 16", "memMiB: 99999999"),
    );
    c.ok(&["apply", "-f", big.to_str().expect("utf-8")]);
    wait_for(
        || {
            field(
                &c,
                "app",
                "big",
                "{.status.conditions[?(@.type==\"Scheduled\")].message}",
            ) == "0/1 nodes: 1 insufficient memMiB"
        },
        "the memory shortfall in status",
    );
    c.ok(&["delete", "app", "web", "big"]);
    wait_for(
        || c.ok(&["get", "tasks", "-o", "name"]).trim().is_empty(),
        "the tasks to go",
    );
}

/// A fixed `hostPort` is bound exactly (the task answers on it), and a second App asking
/// for the same port on the one node is told the port is in use.
#[test]
fn a_fixed_host_port_is_bound_exactly_and_a_second_claim_says_it_is_in_use() {
    let c = Cluster::full();
    // A free port outside the agent's dynamic range.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let fixed = APP.replace("instances: 2", "instances: 1").replace(
        "    - name: http\n",
        &format!("    - name: http\n      hostPort: {port}\n"),
    );
    let f = c.write("fixed.yaml", &fixed);
    c.ok(&["apply", "-f", f.to_str().expect("utf-8")]);
    wait_for(
        || field(&c, "app", "web", "{.status.healthy}") == "1",
        "the instance on the fixed port to be healthy",
    );
    let bound = c.kubectl(&[
        "get",
        "tasks",
        "-o",
        "jsonpath={.items[*].spec.ports[0].hostPort}",
    ]);
    assert_eq!(String::from_utf8_lossy(&bound.stdout), port.to_string());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    use std::io::{Read, Write};
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
        .expect("send");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.contains("hello"), "{reply}");
    // The same port again, and no hostname rule: only the port stands in the way.
    let again = c.write(
        "again.yaml",
        &fixed
            .replace("name: web", "name: again")
            .replace("  constraints:\n    - [hostname, UNIQUE]\n", ""),
    );
    c.ok(&["apply", "-f", again.to_str().expect("utf-8")]);
    wait_for(
        || {
            field(
                &c,
                "app",
                "again",
                "{.status.conditions[?(@.type==\"Scheduled\")].message}",
            ) == format!("0/1 nodes: 1 port {port} in use")
        },
        "the port conflict in status",
    );
}
