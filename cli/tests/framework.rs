//! The external-framework API end to end (docs/frameworks.md): a real `drover up` with
//! its local agent plus a second real agent, and a scheduler client in the test that
//! subscribes over HTTP, reads the RecordIO event stream, declines, accepts, kills and
//! watches offers be rescinded when a node is cordoned.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::agents::{self, group_alive, task_field, wait_until, Proc};
use common::{drover, Cluster};
use serde_json::{json, Value};

const AGENT_TOKEN: &str = "agent-token-for-n2-in-framework-test";

/// `drover up` (scheduler API on by default) with a token for agent n2, and agent n2.
fn cluster() -> (Cluster, Proc, tempfile::TempDir) {
    let dir = agents::data_dir_with_tokens(
        "admin-token-for-framework-test",
        AGENT_TOKEN,
        "system:node:n2",
        "n2",
    );
    let c = Cluster::full_in(dir, &[]);
    let data = tempfile::tempdir().expect("agent dir");
    let child = agents::spawn_agent(
        &c,
        AGENT_TOKEN,
        "n2",
        data.path(),
        &["--heartbeat-seconds", "0.5"],
    );
    let agent = Proc::agent(child, data.path());
    wait_until(15, "node n2 Ready", || agents::node_ready(&c, "n2"));
    (c, agent, data)
}

/// A framework's connection: the event stream read on the runtime, calls made from the
/// test thread.
struct Scheduler {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    token: String,
    framework: String,
    stream_id: String,
    events: mpsc::Receiver<Value>,
    /// Every event received so far, in order.
    seen: Vec<Value>,
}

impl Scheduler {
    fn subscribe(c: &Cluster, framework: &str) -> Scheduler {
        Scheduler::subscribe_with(c, json!({"name": framework, "role": "test"}))
    }

    /// SUBSCRIBE with this `framework_info`.
    fn subscribe_with(c: &Cluster, info: Value) -> Scheduler {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Written just after the line `Cluster` waits for.
        wait_until(10, "drover up to write scheduler-url", || {
            c.dir.path().join("scheduler-url").exists()
        });
        let read = |f: &str| {
            std::fs::read_to_string(c.dir.path().join(f))
                .unwrap_or_else(|e| panic!("drover up wrote no {f}: {e}"))
        };
        Scheduler::subscribe_to(read("scheduler-url"), read("scheduler-token"), info)
    }

    fn subscribe_to(url: String, token: String, info: Value) -> Scheduler {
        let framework = info["name"].as_str().unwrap_or_default().to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::new();
        let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}});
        let response = rt
            .block_on(client.post(&url).bearer_auth(&token).json(&body).send())
            .expect("SUBSCRIBE answered");
        assert_eq!(response.status(), 200, "SUBSCRIBE");
        let stream_id = response
            .headers()
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .expect("a Mesos-Stream-Id header")
            .to_string();
        let (tx, events) = mpsc::channel();
        rt.spawn(async move {
            use futures::StreamExt;
            let mut decoder = drover_controller::framework::recordio::Decoder::default();
            let mut body = response.bytes_stream();
            while let Some(Ok(chunk)) = body.next().await {
                for record in decoder.push(&chunk).expect("RecordIO") {
                    let v: Value = serde_json::from_slice(&record).expect("a JSON event");
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Scheduler {
            rt,
            client,
            url,
            token,
            framework,
            stream_id,
            events,
            seen: Vec::new(),
        }
    }

    /// A call of this framework: its status and body.
    fn call(&self, mut body: Value) -> (u16, String) {
        body["framework_id"] = json!({"value": self.framework});
        let request = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("Mesos-Stream-Id", &self.stream_id)
            .json(&body);
        self.rt.block_on(async move {
            let r = request.send().await.expect("the call answered");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        })
    }

    /// The first event from now on for which `pick` returns something.
    fn wait<T>(&mut self, secs: u64, what: &str, mut pick: impl FnMut(&Value) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ev) => {
                    self.seen.push(ev.clone());
                    if let Some(t) = pick(&ev) {
                        return t;
                    }
                }
                Err(_) => panic!("no {what} within {secs} s; events so far: {:#?}", self.seen),
            }
        }
    }

    /// The first offer of node `node` received since event `since` (waiting for it).
    fn offer_since(&mut self, since: usize, secs: u64, node: &str) -> Value {
        let earlier = self.seen[since.min(self.seen.len())..]
            .iter()
            .flat_map(offers)
            .find(|o| o["agent_id"]["value"] == node);
        match earlier {
            Some(o) => o,
            None => self.offer_of(secs, node),
        }
    }

    /// The next offer of node `node`.
    fn offer_of(&mut self, secs: u64, node: &str) -> Value {
        self.wait(secs, &format!("offer of node {node}"), |ev| {
            offers(ev)
                .into_iter()
                .find(|o| o["agent_id"]["value"] == node)
        })
    }

    /// The next UPDATE of task `id` to `state`.
    fn update(&mut self, secs: u64, id: &str, state: &str) -> Value {
        self.wait(secs, &format!("UPDATE {id} {state}"), |ev| {
            let s = &ev["update"]["status"];
            (ev["type"] == "UPDATE" && s["task_id"]["value"] == id && s["state"] == state)
                .then(|| ev.clone())
        })
    }
}

fn offers(ev: &Value) -> Vec<Value> {
    if ev["type"] != "OFFERS" {
        return Vec::new();
    }
    ev["offers"]["offers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn id_of(offer: &Value) -> String {
    offer["id"]["value"].as_str().expect("offer id").to_string()
}

fn scalar(offer: &Value, name: &str) -> f64 {
    offer["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .and_then(|r| r["scalar"]["value"].as_f64())
        .unwrap_or_else(|| panic!("no {name} in {offer}"))
}

fn launch(offer_id: &str, task_id: &str, cpus: f64, command: &str) -> Value {
    json!({
        "type": "ACCEPT",
        "accept": {
            "offer_ids": [{"value": offer_id}],
            "operations": [{"type": "LAUNCH", "launch": {"task_infos": [{
                "name": "sleeper",
                "task_id": {"value": task_id},
                "resources": {"cpus": cpus, "mem": 32},
                "command": command,
                "env": {"GREETING": "hi"},
            }]}}],
            "filters": {"refuse_seconds": 0},
        }
    })
}

fn task_exists(c: &Cluster, name: &str) -> bool {
    c.kubectl(&["get", "tasks.drover.dev", name])
        .status
        .success()
}

#[test]
fn a_framework_gets_offers_declines_launches_kills_and_sees_rescinds() {
    let (c, _agent2, _agent2_data) = cluster();
    let mut s = Scheduler::subscribe(&c, "fwtest");
    let subscribed = s.wait(5, "SUBSCRIBED", |ev| {
        (ev["type"] == "SUBSCRIBED").then(|| ev["subscribed"].clone())
    });
    assert_eq!(subscribed["framework_id"]["value"], "fwtest");
    assert!(!s.stream_id.is_empty());

    // Both nodes are offered; the local one is the node that is not n2.
    let mut first: std::collections::BTreeMap<String, Value> = Default::default();
    s.wait(10, "offers of both nodes", |ev| {
        for o in offers(ev) {
            let node = o["agent_id"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            first.insert(node, o);
        }
        (first.len() == 2).then_some(())
    });
    let n2 = first.remove("n2").expect("an offer of n2");
    let local = first
        .into_values()
        .next()
        .expect("an offer of the local node");
    let local_node = local["agent_id"]["value"]
        .as_str()
        .expect("node")
        .to_string();
    assert!(
        scalar(&local, "cpus") > 0.1 && scalar(&local, "mem") > 32.0,
        "{local}"
    );
    assert_eq!(
        c.ok(&[
            "get",
            "frameworks.drover.dev",
            "fwtest",
            "-o",
            "jsonpath={.status.connected} {.spec.role}"
        ]),
        "true test"
    );

    // n2 refused for 30 s: never offered again in this test. The local node, refused
    // for 1 s at a time, comes back each time.
    let (status, body) = s.call(json!({"type": "DECLINE", "decline": {
        "offer_ids": [{"value": id_of(&n2)}], "filters": {"refuse_seconds": 30}}}));
    assert_eq!(status, 202, "{body}");
    let declined_at = s.seen.len();
    let mut current = local;
    for round in 0..2 {
        let (status, body) = s.call(json!({"type": "DECLINE", "decline": {
            "offer_ids": [{"value": id_of(&current)}], "filters": {"refuseSeconds": 1}}}));
        assert_eq!(status, 202, "decline round {round}: {body}");
        let next = s.offer_of(6, &local_node);
        assert_ne!(id_of(&next), id_of(&current), "a new offer after a decline");
        current = next;
    }

    // Bad accepts: 400 naming the field, nothing created, the offer still usable.
    let (status, body) = s.call(launch(&id_of(&current), "too-big", 1000.0, "sleep 3600"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("accept.operations[0].launch.task_infos[0].resources.cpus"),
        "{body}"
    );
    let (status, body) = s.call(launch("no-such-offer", "unknown-offer", 0.1, "sleep 3600"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("accept.offer_ids[0]"), "{body}");
    let mut no_command = launch(&id_of(&current), "no-command", 0.1, "");
    no_command["accept"]["operations"][0]["launch"]["task_infos"][0]
        .as_object_mut()
        .expect("task_info")
        .remove("command");
    let (status, body) = s.call(no_command);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("task_infos[0].command"), "{body}");
    let unauthorized = s.rt.block_on(
        s.client
            .post(&s.url)
            .bearer_auth("wrong")
            .json(&launch(&id_of(&current), "x", 0.1, "true"))
            .send(),
    );
    assert_eq!(unauthorized.expect("answered").status(), 401);
    for name in ["too-big", "unknown-offer", "no-command", "x"] {
        assert!(
            !task_exists(&c, name),
            "a refused ACCEPT created Task {name}"
        );
    }

    // A good accept: the Task is bound to the node, the agent runs it, UPDATEs come.
    let offered_cpus = scalar(&current, "cpus");
    let accepted_at = s.seen.len();
    let (status, body) = s.call(launch(&id_of(&current), "sleeper", 0.1, "sleep 3600"));
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        task_field(
            &c,
            "sleeper",
            "{.spec.nodeName} {.spec.owner.kind} {.spec.role}"
        ),
        format!("{local_node} Framework test")
    );
    s.update(15, "sleeper", "TASK_RUNNING");
    let pid: i32 = task_field(&c, "sleeper", "{.status.pid}")
        .parse()
        .expect("a running task has a pid");
    let _task_guard = Proc {
        child: None,
        tasks: None,
        groups: vec![pid],
    };
    assert!(group_alive(pid), "the task's process runs");
    // The rest of the node is offered again, without what the task holds.
    let rest = s.offer_since(accepted_at, 5, &local_node);
    assert!(
        (scalar(&rest, "cpus") + 0.1 - offered_cpus).abs() < 1e-6,
        "offered {offered_cpus} cpus before the launch, {rest} after"
    );

    // KILL: TASK_KILLED, and the process is gone.
    let (status, body) = s.call(json!({"type": "KILL", "kill": {"task_id": {"value": "sleeper"}}}));
    assert_eq!(status, 202, "{body}");
    s.update(10, "sleeper", "TASK_KILLED");
    wait_until(15, "the killed task's process to exit", || {
        !group_alive(pid)
    });
    let (status, body) = s.call(json!({"type": "KILL", "kill": {"task_id": {"value": "sleeper"}}}));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("kill.task_id"), "{body}");

    // Cordoning the node of the outstanding offer rescinds it.
    let out = drover(&c, &["node", "cordon", &local_node]);
    assert!(
        out.status.success(),
        "cordon: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rest_id = id_of(&rest);
    s.wait(10, "RESCIND of the cordoned node's offer", |ev| {
        (ev["type"] == "RESCIND" && ev["rescind"]["offer_id"]["value"] == rest_id).then_some(())
    });

    // Nothing of n2 since its 30 s decline.
    let again: Vec<&Value> = s.seen[declined_at..]
        .iter()
        .filter(|ev| offers(ev).iter().any(|o| o["agent_id"]["value"] == "n2"))
        .collect();
    assert!(
        again.is_empty(),
        "n2 was offered within its refuse time: {again:?}"
    );
}

#[test]
fn reconcile_failover_and_teardown() {
    let c = Cluster::full();
    let mut s = Scheduler::subscribe(&c, "fw-b");
    let offer = s.wait(10, "an offer", |ev| offers(ev).into_iter().next());

    // Calls must name a subscribed framework and carry its stream id.
    let no_stream = s.rt.block_on(
        s.client
            .post(&s.url)
            .bearer_auth(&s.token)
            .json(&json!({"type": "RECONCILE", "framework_id": {"value": "fw-b"}}))
            .send(),
    );
    let no_stream = no_stream.expect("answered");
    assert_eq!(no_stream.status(), 400);
    let text = s.rt.block_on(no_stream.text()).unwrap_or_default();
    assert!(text.starts_with("Mesos-Stream-Id:"), "{text}");
    let (status, body) = s.call(json!({"type": "PAUSE"}));
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("type:"), "{body}");
    let (status, body) = s.call(
        json!({"type": "DECLINE", "decline": {"offer_ids": [], "filters": {"refuse_seconds": -1}}}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("decline.offer_ids:"), "{body}");

    let node = offer["agent_id"]["value"]
        .as_str()
        .expect("node")
        .to_string();
    let accepted_at = s.seen.len();
    let (status, body) = s.call(launch(&id_of(&offer), "recon-1", 0.1, "sleep 3600"));
    assert_eq!(status, 202, "{body}");
    s.update(15, "recon-1", "TASK_RUNNING");
    // The same task id again: refused, naming the field.
    let rest = s.offer_since(accepted_at, 5, &node);
    let (status, body) = s.call(launch(&id_of(&rest), "recon-1", 0.1, "sleep 1"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("task_infos[0].task_id") && body.contains("already exists"),
        "{body}"
    );
    let pid: i32 = task_field(&c, "recon-1", "{.status.pid}")
        .parse()
        .expect("a running task has a pid");
    let _task_guard = Proc {
        child: None,
        tasks: None,
        groups: vec![pid],
    };

    // RECONCILE: the state of each task named, TASK_UNKNOWN for one it does not have.
    let (status, body) = s.call(json!({"type": "RECONCILE", "reconcile": {"tasks": [
        {"task_id": {"value": "recon-1"}}, {"task_id": {"value": "ghost"}}]}}));
    assert_eq!(status, 202, "{body}");
    s.update(5, "recon-1", "TASK_RUNNING");
    s.update(5, "ghost", "TASK_UNKNOWN");

    // A second SUBSCRIBE of the same name takes over: the old stream gets an ERROR and
    // ends, its stream id is refused.
    let mut s2 = Scheduler::subscribe(&c, "fw-b");
    s.wait(5, "ERROR on the replaced stream", |ev| {
        (ev["type"] == "ERROR").then_some(())
    });
    let (status, body) = s.call(json!({"type": "RECONCILE"}));
    assert_eq!(status, 400, "{body}");
    assert!(body.starts_with("Mesos-Stream-Id:"), "{body}");
    s2.wait(5, "SUBSCRIBED", |ev| {
        (ev["type"] == "SUBSCRIBED").then_some(())
    });
    let (status, body) = s2.call(json!({"type": "RECONCILE", "reconcile": {"tasks": []}}));
    assert_eq!(status, 202, "{body}");
    s2.update(5, "recon-1", "TASK_RUNNING");

    // TEARDOWN: its tasks are killed, the stream ends, the Framework is disconnected.
    let (status, body) = s2.call(json!({"type": "TEARDOWN"}));
    assert_eq!(status, 202, "{body}");
    wait_until(15, "the torn-down framework's task to exit", || {
        !group_alive(pid)
    });
    assert!(!task_exists(&c, "recon-1"));
    wait_until(5, "Framework fw-b disconnected", || {
        c.ok(&[
            "get",
            "frameworks.drover.dev",
            "fw-b",
            "-o",
            "jsonpath={.status.connected}",
        ]) == "false"
    });
}

/// A framework that stays away longer than its failover timeout loses its tasks (as
/// under a Mesos master); one without a timeout keeps them.
#[test]
fn tasks_of_a_framework_gone_past_its_failover_timeout_are_killed() {
    let c = Cluster::full();
    let mut brief = Scheduler::subscribe_with(
        &c,
        json!({"name": "fw-brief", "role": "test", "failover_timeout": 2}),
    );
    let offer = brief.wait(10, "an offer", |ev| offers(ev).into_iter().next());
    let node = offer["agent_id"]["value"]
        .as_str()
        .expect("node")
        .to_string();
    let accepted_at = brief.seen.len();
    let (status, body) = brief.call(launch(&id_of(&offer), "brief-1", 0.1, "sleep 3600"));
    assert_eq!(status, 202, "{body}");
    brief.update(15, "brief-1", "TASK_RUNNING");
    // The rest of the node comes back to fw-brief; declined, it goes to the next one.
    let rest = brief.offer_since(accepted_at, 10, &node);
    let (status, body) = brief.call(json!({"type": "DECLINE", "decline": {
        "offer_ids": [{"value": id_of(&rest)}], "filters": {"refuse_seconds": 60}}}));
    assert_eq!(status, 202, "{body}");
    let brief_pid: i32 = task_field(&c, "brief-1", "{.status.pid}")
        .parse()
        .expect("a running task has a pid");
    assert_eq!(
        c.ok(&[
            "get",
            "frameworks.drover.dev",
            "fw-brief",
            "-o",
            "jsonpath={.spec.failoverTimeoutSeconds}"
        ]),
        "2"
    );

    let mut steady = Scheduler::subscribe_with(&c, json!({"name": "fw-steady", "role": "other"}));
    let offer = steady.wait(10, "an offer", |ev| offers(ev).into_iter().next());
    let (status, body) = steady.call(launch(&id_of(&offer), "steady-1", 0.1, "sleep 3600"));
    assert_eq!(status, 202, "{body}");
    steady.update(15, "steady-1", "TASK_RUNNING");
    let steady_pid: i32 = task_field(&c, "steady-1", "{.status.pid}")
        .parse()
        .expect("a running task has a pid");
    let _guard = Proc {
        child: None,
        tasks: None,
        groups: vec![brief_pid, steady_pid],
    };

    // Both go away; within 2 s fw-brief's task still runs, after it is killed.
    let gone = Instant::now();
    drop(brief);
    drop(steady);
    wait_until(
        20,
        "fw-brief's task killed after its failover timeout",
        || !task_exists(&c, "brief-1"),
    );
    assert!(
        gone.elapsed() >= Duration::from_secs(2),
        "killed after {:?}, before the 2 s failover timeout",
        gone.elapsed()
    );
    wait_until(15, "fw-brief's process to exit", || !group_alive(brief_pid));
    let condition = c.ok(&[
        "get",
        "frameworks.drover.dev",
        "fw-brief",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"FailoverTimeout\")].message}",
    ]);
    assert!(condition.contains("1 task(s) killed"), "{condition}");
    // No timeout: its task outlives the disconnection.
    assert!(task_exists(&c, "steady-1"));
    assert!(group_alive(steady_pid));

    // A bad failover_timeout is refused, naming the field.
    let url = std::fs::read_to_string(c.dir.path().join("scheduler-url")).expect("url");
    let token = std::fs::read_to_string(c.dir.path().join("scheduler-token")).expect("token");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (code, text) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&token)
            .json(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "fw-bad", "failover_timeout": -1}}}))
            .send()
            .await
            .expect("answered");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    assert_eq!(code, 400, "{text}");
    assert!(
        text.starts_with("subscribe.framework_info.failover_timeout"),
        "{text}"
    );
}

/// A Quota's limit bounds what its role is offered: the first offer holds at most the
/// limit's cpus; with a task holding all of it, the role gets no more offers; once the
/// Quota is deleted the rest of the node is offered.
#[test]
fn a_quota_limit_caps_what_a_role_is_offered() {
    let c = Cluster::full();
    let quota = "apiVersion: drover.dev/v1alpha1\nkind: Quota\nmetadata: {name: capped}\nspec: {role: capped, limit: {cpus: 0.5}}\n";
    c.ok(&[
        "apply",
        "-f",
        c.write("quota.yaml", quota).to_str().expect("utf-8"),
    ]);
    let mut fw = Scheduler::subscribe_with(&c, json!({"name": "fw-capped", "role": "capped"}));
    let offer = fw.wait(10, "an offer", |ev| offers(ev).into_iter().next());
    let cpus = scalar(&offer, "cpus");
    assert!(
        (cpus - 0.5).abs() < 1e-9,
        "offered {cpus} cpus under a 0.5 limit: {offer}"
    );
    let node = offer["agent_id"]["value"]
        .as_str()
        .expect("node")
        .to_string();
    let accepted_at = fw.seen.len();
    let (status, body) = fw.call(launch(&id_of(&offer), "capped-1", 0.5, "sleep 3600"));
    assert_eq!(status, 202, "{body}");
    fw.update(15, "capped-1", "TASK_RUNNING");
    let pid: i32 = task_field(&c, "capped-1", "{.status.pid}")
        .parse()
        .expect("a running task has a pid");
    let _guard = Proc {
        child: None,
        tasks: None,
        groups: vec![pid],
    };
    // At its limit: the rest of the node (more than a cpu here) is not offered to it.
    std::thread::sleep(Duration::from_secs(3));
    while let Ok(ev) = fw.events.try_recv() {
        fw.seen.push(ev);
    }
    let more: Vec<Value> = fw.seen[accepted_at..].iter().flat_map(offers).collect();
    assert!(more.is_empty(), "offers past the limit: {more:#?}");
    // No Quota, no limit: the rest comes.
    c.ok(&["delete", "quotas.drover.dev", "capped"]);
    let rest = fw.offer_of(15, &node);
    assert!(scalar(&rest, "cpus") > 0.5, "{rest}");
}

#[test]
fn drover_controller_serves_the_api_only_on_loopback_while_leading() {
    let c = Cluster::on_etcd();
    let endpoint = c.etcd_endpoint().expect("an etcd endpoint");
    let data = tempfile::tempdir().expect("data dir");
    let controller = |listen: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_drover"));
        cmd.args([
            "controller",
            "--store",
            "etcd",
            "--etcd-endpoints",
            &endpoint,
        ])
        .args(["--scheduler-listen", listen, "--scheduler-token", "tok-123"])
        .arg("--data-dir")
        .arg(data.path());
        cmd
    };
    let out = controller("0.0.0.0:0")
        .output()
        .expect("run drover controller");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--scheduler-listen 0.0.0.0:0: must be a loopback address"),
        "{stderr}"
    );

    let port = agents::free_port();
    let child = controller(&format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn drover controller");
    let _controller = Proc::new(child);
    let token_file = data.path().join("scheduler-token");
    wait_until(10, "the scheduler token file", || token_file.exists());
    assert_eq!(
        std::fs::read_to_string(&token_file).expect("token"),
        "tok-123"
    );
    let mut s = Scheduler::subscribe_to(
        format!("http://127.0.0.1:{port}/api/v1/scheduler"),
        "tok-123".into(),
        json!({"name": "fw-etcd", "role": "test"}),
    );
    s.wait(10, "SUBSCRIBED", |ev| {
        (ev["type"] == "SUBSCRIBED").then_some(())
    });
    wait_until(5, "Framework fw-etcd connected", || {
        c.ok(&[
            "get",
            "frameworks.drover.dev",
            "fw-etcd",
            "-o",
            "jsonpath={.status.connected}",
        ]) == "true"
    });
}
