//! Task logs end to end: a real `drover up` (API server, controllers, local agent with
//! its log server), real task processes, the real `drover logs` and `kubectl`.
//! `--tail`, `-f`, `kubectl get --raw …/log`, a viewer reading logs, the agent's own
//! endpoint refusing tokens that are not the API server's, an unbound task's 400,
//! `drover logs app/NAME` prefixing lines, the agent's Started event in `describe`, and
//! a smoke run of `drover bench agent`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::agents::{self, Proc};
use common::{drover, wait_for, Cluster};

/// Prints `line N` every 100 ms, forever.
const TICKER: &str = "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn task(name: &str, node: &str, cmd: &str) -> String {
    let node = if node.is_empty() {
        String::new()
    } else {
        format!("  nodeName: {node}\n")
    };
    format!(
        "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n{node}  container:\n    cmd: {cmd:?}\n  resources: {{cpus: 0.1, memMiB: 16}}\n"
    )
}

fn first_node(c: &Cluster) -> String {
    let mut node = String::new();
    wait_for(
        || {
            let out = c.kubectl(&[
                "get",
                "nodes.drover.dev",
                "-o",
                "jsonpath={.items[0].metadata.name} {.items[0].status.daemonEndpoint}",
            ]);
            let text = stdout(&out);
            let mut words = text.split_whitespace();
            match (words.next(), words.next()) {
                (Some(n), Some(_endpoint)) => {
                    node = n.to_string();
                    true
                }
                _ => false,
            }
        },
        "the local agent's node and its log endpoint",
    );
    node
}

fn wait_running(c: &Cluster, name: &str) {
    wait_for(
        || {
            let out = c.kubectl(&[
                "get",
                "tasks.drover.dev",
                name,
                "-o",
                "jsonpath={.status.phase}",
            ]);
            stdout(&out) == "Running"
        },
        &format!("task {name} to be Running"),
    );
}

/// The numbers of `line N` lines, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("line "))
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn task_logs_tail_follow_raw_and_the_agents_events() {
    let c = Cluster::full();
    let node = first_node(&c);
    c.ok(&[
        "apply",
        "-f",
        c.write("x.yaml", &task("x", &node, TICKER))
            .to_str()
            .unwrap_or_default(),
    ]);
    wait_running(&c, "x");
    // Wait for a few lines, so a tail of 3 has more to choose from.
    wait_for(
        || numbers(&stdout(&drover(&c, &["logs", "task/x"]))).len() >= 5,
        "task x to print 5 lines",
    );

    // --tail 3: exactly the last three lines, consecutive.
    let out = drover(&c, &["logs", "task/x", "--tail", "3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout)
        .unwrap_or_default()
        .lines()
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let n = numbers(&stdout(&out));
    assert_eq!(n.len(), 3, "{lines:?}");
    assert!(n[1] == n[0] + 1 && n[2] == n[1] + 1, "{n:?}");
    let all = numbers(&stdout(&drover(&c, &["logs", "x"])));
    assert!(all.len() >= n[2] as usize, "all lines: {all:?}");

    // -f: a line printed after it started arrives.
    let mut follow = Proc::new(
        Command::new(env!("CARGO_BIN_EXE_drover"))
            .args(["logs", "task/x", "-f", "--tail", "1", "--kubeconfig"])
            .arg(&c.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn drover logs -f"),
    );
    let (tx, rx) = mpsc::channel();
    let pipe = follow.child().stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the tail line");
    let first = numbers(&first)[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut newer = None;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            if let Some(&k) = numbers(&line).first() {
                if k > first + 2 {
                    newer = Some(k);
                    break;
                }
            }
        }
    }
    assert!(newer.is_some(), "no line after {first} arrived through -f");
    drop(follow);

    // The raw API, as kubectl asks for it.
    let raw = c.ok(&[
        "get",
        "--raw",
        "/apis/drover.dev/v1alpha1/namespaces/default/tasks/x/log?tailLines=2",
    ]);
    assert_eq!(numbers(&raw).len(), 2, "{raw:?}");

    // -f of a task that ends: everything it printed, then the stream ends by itself.
    c.ok(&[
        "apply",
        "-f",
        c.write(
            "short.yaml",
            &task(
                "short",
                &node,
                "echo line 1; echo line 2; sleep 1; echo line 3",
            ),
        )
        .to_str()
        .unwrap_or_default(),
    ]);
    let started = Instant::now();
    let out = drover(&c, &["logs", "task/short", "-f"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(numbers(&stdout(&out)), [1, 2, 3], "{}", stdout(&out));
    assert!(started.elapsed() < Duration::from_secs(15));

    // A task that fails: a Failed event with its exit code.
    let bad = c.write("bad.yaml", &task("bad", &node, "exit 3"));
    c.ok(&["apply", "-f", bad.to_str().unwrap_or_default()]);
    wait_for(
        || {
            let d = c.ok(&["describe", "tasks.drover.dev", "bad"]);
            d.contains("Failed") && d.contains("code 3")
        },
        "a Failed event naming exit code 3 in kubectl describe task/bad",
    );

    // The agent's Started event, in describe.
    wait_for(
        || {
            let d = c.ok(&["describe", "tasks.drover.dev", "x"]);
            d.contains("Started") && d.contains("drover-agent")
        },
        "a Started event from the agent in kubectl describe task/x",
    );
}

#[test]
fn app_logs_prefix_every_line_with_its_task() {
    let c = Cluster::full();
    first_node(&c);
    let app = format!(
        "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata:\n  name: ticker\nspec:\n  instances: 2\n  container:\n    cmd: {TICKER:?}\n  resources: {{cpus: 0.1, memMiB: 16}}\n"
    );
    c.ok(&[
        "apply",
        "-f",
        c.write("ticker.yaml", &app).to_str().unwrap_or_default(),
    ]);
    let mut tasks: Vec<String> = Vec::new();
    wait_for(
        || {
            let out = c.kubectl(&[
                "get",
                "tasks.drover.dev",
                "-l",
                "drover.dev/app=ticker",
                "-o",
                "jsonpath={range .items[?(@.status.phase==\"Running\")]}{.metadata.name}{\"\\n\"}{end}",
            ]);
            tasks = stdout(&out).lines().map(str::to_string).collect();
            tasks.len() == 2
        },
        "two Running tasks of app ticker",
    );
    let mut out = String::new();
    wait_for(
        || {
            let o = drover(&c, &["logs", "app/ticker", "--tail", "2"]);
            out = stdout(&o);
            tasks.iter().all(|t| {
                out.lines()
                    .filter(|l| l.starts_with(&format!("[{t}] line ")))
                    .count()
                    == 2
            })
        },
        "two prefixed lines of each task",
    );
    assert_eq!(out.lines().count(), 4, "{out}");

    let missing = drover(&c, &["logs", "app/nope"]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("nope"), "{}", stderr(&missing));
}

const ADMIN_TOKEN: &str = "admin-token-for-logs-test";
const VIEWER_TOKEN: &str = "viewer-token-for-logs-test";
const AGENT_TOKEN: &str = "agent-token-for-logs-n1";

/// One HTTP/1.0 GET to `url` (`http://host:port/path`); the status code and the body.
fn http_get(url: &str, token: Option<&str>) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n{auth}\r\n").expect("send");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn viewers_read_logs_and_the_agent_accepts_only_the_api_servers_token() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("tokens.yaml"),
        format!(
            "- {{token: {ADMIN_TOKEN}, user: admin, role: admin}}\n- {{token: {VIEWER_TOKEN}, user: vera, role: viewer}}\n- {{token: {AGENT_TOKEN}, user: 'system:node:n1', role: agent, node: n1}}\n"
        ),
    )
    .expect("tokens");
    let c = Cluster::up_in(dir);
    let agent_dir = tempfile::tempdir().expect("agent dir");
    let mut agent = Proc::agent(
        agents::spawn_agent(
            &c,
            AGENT_TOKEN,
            "n1",
            agent_dir.path(),
            &["--listen", "127.0.0.1:0"],
        ),
        agent_dir.path(),
    );
    let mut endpoint = String::new();
    wait_for(
        || {
            let out = c.kubectl(&[
                "get",
                "nodes.drover.dev",
                "n1",
                "-o",
                "jsonpath={.status.daemonEndpoint}",
            ]);
            endpoint = stdout(&out);
            endpoint.starts_with("http://127.0.0.1:")
        },
        "node n1 to advertise its log endpoint",
    );
    c.ok(&[
        "apply",
        "-f",
        c.write("x.yaml", &task("x", "n1", "echo hello from x; sleep 600"))
            .to_str()
            .unwrap_or_default(),
    ]);
    wait_running(&c, "x");
    let log = "/apis/drover.dev/v1alpha1/namespaces/default/tasks/x/log";
    let mut text = String::new();
    wait_for(
        || {
            let out = c.kubectl(&["--token", VIEWER_TOKEN, "get", "--raw", log]);
            text = stdout(&out);
            out.status.success() && text.contains("hello from x")
        },
        "a viewer to read task x's log",
    );

    // Straight to the agent: no token, a wrong one, or a real one that is not the API
    // server's, are all refused.
    let direct = format!("{endpoint}/logs/default/x");
    let (code, body) = http_get(&direct, Some("not-a-token"));
    assert_eq!(code, 401, "{body}");
    let (code, body) = http_get(&direct, None);
    assert_eq!(code, 401, "{body}");
    let (code, body) = http_get(&direct, Some(ADMIN_TOKEN));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("system:apiserver"), "{body}");

    // Only admins and agents may review tokens.
    let review = c.write(
        "review.json",
        &format!(r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{VIEWER_TOKEN}"}}}}"#),
    );
    let review = review.to_str().unwrap_or_default();
    let path = "/apis/authentication.k8s.io/v1/tokenreviews";
    let out = c.kubectl(&[
        "--token",
        VIEWER_TOKEN,
        "create",
        "--raw",
        path,
        "-f",
        review,
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let out = c.kubectl(&[
        "--token",
        AGENT_TOKEN,
        "create",
        "--raw",
        path,
        "-f",
        review,
    ]);
    assert!(
        stdout(&out).contains(r#""username":"vera""#),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    // An agent may not read logs through the API either.
    let out = c.kubectl(&["--token", AGENT_TOKEN, "get", "--raw", log]);
    assert!(!out.status.success(), "{}", stdout(&out));

    // A task not bound to a node yet: 400, naming it.
    c.ok(&[
        "apply",
        "-f",
        c.write("u.yaml", &task("unbound", "", "sleep 1"))
            .to_str()
            .unwrap_or_default(),
    ]);
    let out = drover(&c, &["logs", "task/unbound"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("task unbound is not bound to a node yet"),
        "{}",
        stderr(&out)
    );
    let out = c.kubectl(&[
        "get",
        "--raw",
        "/apis/drover.dev/v1alpha1/namespaces/default/tasks/unbound/log",
    ]);
    assert!(
        stderr(&out).contains("not bound to a node yet"),
        "{}",
        stderr(&out)
    );

    // A task that does not exist: 404.
    let out = drover(&c, &["logs", "task/ghost"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ghost"), "{}", stderr(&out));

    // The agent gone: 502, naming the node and the address.
    agent.kill();
    let out = drover(&c, &["logs", "task/x"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach the agent of node n1 at {endpoint}")),
        "{err}"
    );
}

#[test]
fn bench_agent_runs_and_prints_its_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["bench", "agent", "--tasks", "5"])
        .env("DROVER_LOG", "warn")
        .output()
        .expect("run drover bench agent");
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    for needle in ["process", "p50", "p99", "max", "create→watch"] {
        assert!(text.contains(needle), "{needle:?} missing in:\n{text}");
    }
}
