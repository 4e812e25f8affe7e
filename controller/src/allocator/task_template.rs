//! Task objects for placed instances, as the apps controller writes them (its
//! `task_for`, then the server stamps: uid, creationTimestamp, generation) — but
//! rendered from a per-App template serialized once, with the per-task parts (name,
//! uid, instance, node, host ports) spliced in. At a million tasks, building and
//! serializing a `serde_json::Value` per task would cost more than placing it.

use drover_api::kinds::app::App;
use serde_json::{json, Value};

use crate::controllers::apps::APP_LABEL;

/// Marks a slot in the serialized template: serde_json writes U+0001 as `\u0001`,
/// which no real field value serializes to.
const MARK: &str = "\u{1}";

#[derive(Clone, Debug)]
enum Piece {
    Lit(String),
    Name,
    Uid,
    Node,
    Instance,
    Ports,
}

/// One App's Task template.
#[derive(Clone, Debug)]
pub struct TaskTemplate {
    app_name: String,
    key_prefix: String,
    pieces: Vec<Piece>,
    /// Each port's JSON around its hostPort.
    port_pieces: Vec<(String, String)>,
    /// The bytes of every literal piece: with the slots, what one Task takes.
    literal_len: usize,
}

/// A short hash of the task template: tasks of an older version get replaced on
/// upgrade (the same hash the apps controller writes).
pub fn template_version(app: &App) -> String {
    // One definition (it includes the `drover.dev/restartedAt` annotation).
    crate::controllers::deploy::version_of(&crate::controllers::deploy::template_of(app))
}

/// The Task object for one instance, as a JSON value (the reference the template is
/// cut from; `host_ports` as JSON values so the template can put marks in them).
#[allow(clippy::too_many_arguments)]
fn task_value(
    app: &App,
    namespace: &str,
    task_name: Value,
    uid: Value,
    instance: Value,
    node: Value,
    ports: Value,
    version: &str,
    now: &str,
) -> Value {
    let name = app.metadata.name.clone().unwrap_or_default();
    let mut labels = app.spec.labels.clone();
    labels.insert(APP_LABEL.into(), name.clone());
    let mut task = json!({
        "apiVersion": "drover.dev/v1alpha1",
        "kind": "Task",
        "metadata": {
            "name": task_name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "drover.dev/v1alpha1",
                "kind": "App",
                "name": name,
                "uid": app.metadata.uid.clone().unwrap_or_default(),
                "controller": true,
                "blockOwnerDeletion": true,
            }],
            "uid": uid,
            "creationTimestamp": now,
            "generation": 1,
        },
        "spec": {
            "nodeName": node,
            "owner": {"kind": "App", "name": name, "uid": app.metadata.uid},
            "instance": instance,
            "version": version,
            "container": app.spec.container,
            "resources": app.spec.resources,
            "ports": ports,
            "healthChecks": app.spec.health_checks,
            "readinessChecks": app.spec.readiness_checks,
            "killGracePeriodSeconds": app.spec.kill_grace_period_seconds,
            "role": app.spec.role,
        },
        "status": {"phase": "Scheduled"},
    });
    if let Some(spec) = task["spec"].as_object_mut() {
        spec.retain(|_, v| !v.is_null() && v != &json!([]));
    }
    task
}

fn port_value(p: &drover_api::ports::PortSpec, host_port: Value) -> Value {
    let mut v = json!({ "hostPort": host_port });
    if let Some(n) = &p.name {
        v["name"] = json!(n);
    }
    if let Some(cp) = p.container_port {
        v["containerPort"] = json!(cp);
    }
    v
}

/// The reference rendering of one Task, for tests and for checking the template.
#[allow(clippy::too_many_arguments)]
pub fn task_json(
    app: &App,
    namespace: &str,
    task_name: &str,
    uid: &str,
    instance: i32,
    node: &str,
    host_ports: &[u16],
    now: &str,
) -> Value {
    let version = template_version(app);
    task_object(
        app, namespace, task_name, uid, instance, node, host_ports, &version, now,
    )
}

/// The Task object for one placed instance of `app`, as the apps controller creates it
/// (`version`: the App's [`template_version`], computed once by the caller).
#[allow(clippy::too_many_arguments)]
pub fn task_object(
    app: &App,
    namespace: &str,
    task_name: &str,
    uid: &str,
    instance: i32,
    node: &str,
    host_ports: &[u16],
    version: &str,
    now: &str,
) -> Value {
    let ports: Vec<Value> = app
        .spec
        .ports
        .iter()
        .zip(host_ports)
        .map(|(p, hp)| port_value(p, json!(hp)))
        .collect();
    task_value(
        app,
        namespace,
        json!(task_name),
        json!(uid),
        json!(instance),
        json!(node),
        json!(ports),
        version,
        now,
    )
}

fn mark(tag: &str) -> Value {
    json!(format!("{MARK}{tag}"))
}

impl TaskTemplate {
    /// The template of `app`'s Tasks in `namespace`, created at `now` (RFC 3339).
    pub fn new(app: &App, namespace: &str, now: &str) -> Self {
        let ports = if app.spec.ports.is_empty() {
            json!([])
        } else {
            mark("ports")
        };
        let value = task_value(
            app,
            namespace,
            mark("name"),
            mark("uid"),
            mark("instance"),
            mark("node"),
            ports,
            &template_version(app),
            now,
        );
        let text = serde_json::to_string(&value).unwrap_or_default();
        let mut pieces = Vec::new();
        let mut rest = text.as_str();
        let quoted = "\"\\u0001";
        while let Some(at) = rest.find(quoted) {
            pieces.push(Piece::Lit(rest[..at].to_string()));
            let after = &rest[at + quoted.len()..];
            let end = after.find('"').unwrap_or(after.len());
            pieces.push(match &after[..end] {
                "name" => Piece::Name,
                "uid" => Piece::Uid,
                "node" => Piece::Node,
                "instance" => Piece::Instance,
                _ => Piece::Ports,
            });
            rest = &after[(end + 1).min(after.len())..];
        }
        pieces.push(Piece::Lit(rest.to_string()));
        let port_pieces: Vec<(String, String)> = app
            .spec
            .ports
            .iter()
            .map(|p| {
                let s = serde_json::to_string(&port_value(p, mark("hp"))).unwrap_or_default();
                let token = "\"\\u0001hp\"";
                match s.find(token) {
                    Some(at) => (s[..at].to_string(), s[at + token.len()..].to_string()),
                    None => (s, String::new()),
                }
            })
            .collect();
        let task_info = drover_api::find_kind("Task");
        let key_prefix = match task_info {
            Some(info) => crate::apiserver::objects::key(info, Some(namespace), ""),
            None => String::new(),
        };
        let literal_len = pieces
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => s.len(),
                _ => 0,
            })
            .sum::<usize>()
            + port_pieces
                .iter()
                .map(|(a, b)| a.len() + b.len() + 1)
                .sum::<usize>();
        TaskTemplate {
            app_name: app.metadata.name.clone().unwrap_or_default(),
            key_prefix,
            pieces,
            port_pieces,
            literal_len,
        }
    }

    /// The store key and stored bytes of one instance's Task.
    pub fn render(
        &self,
        instance: i32,
        node: &str,
        host_ports: &[u16],
        random: u128,
    ) -> (String, Vec<u8>) {
        use std::fmt::Write as _;
        let uid = uuid::Builder::from_random_bytes(random.to_le_bytes())
            .into_uuid()
            .to_string();
        let mut name = String::with_capacity(self.app_name.len() + 16);
        let _ = write!(name, "{}-{instance}-{}", self.app_name, &uid[..5]);
        // Sized for this Task (the store keeps every value as allocated): the literal
        // parts, the slots (name, uid, instance, node, host ports), a little for escapes.
        let mut out = Vec::with_capacity(
            self.literal_len + 2 * name.len() + uid.len() + node.len() + 6 * host_ports.len() + 32,
        );
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.extend_from_slice(s.as_bytes()),
                Piece::Name => push_str(&mut out, &name),
                Piece::Uid => push_str(&mut out, &uid),
                Piece::Node => push_str(&mut out, node),
                Piece::Instance => out.extend_from_slice(instance.to_string().as_bytes()),
                Piece::Ports => {
                    out.push(b'[');
                    for (k, ((before, after), hp)) in
                        self.port_pieces.iter().zip(host_ports).enumerate()
                    {
                        if k > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(before.as_bytes());
                        out.extend_from_slice(hp.to_string().as_bytes());
                        out.extend_from_slice(after.as_bytes());
                    }
                    out.push(b']');
                }
            }
        }
        if out.capacity() - out.len() > 64 {
            out.shrink_to_fit();
        }
        (format!("{}{name}", self.key_prefix), out)
    }
}

/// A JSON string; plain names are copied, anything else goes through serde_json.
fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(serde_json::to_string(s).unwrap_or_default().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::kinds::task::Task;
    use drover_api::ports::PortSpec;

    #[test]
    fn rendered_tasks_equal_the_reference_and_parse_as_tasks() {
        let mut app = App::default();
        app.metadata.name = Some("web".into());
        app.metadata.uid = Some("u-1".into());
        app.spec.labels = [("team".to_string(), "a\"b".to_string())].into();
        app.spec.resources.cpus = Some(0.25);
        app.spec.ports = vec![
            PortSpec {
                name: Some("http".into()),
                container_port: Some(80),
                ..Default::default()
            },
            PortSpec {
                host_port: Some(9000),
                ..Default::default()
            },
        ];
        let now = "2026-12-01T00:00:00Z";
        let t = TaskTemplate::new(&app, "prod", now);
        let (key, bytes) = t.render(7, "node-1", &[31005, 9000], 0xdead_beef);
        let got: Value = serde_json::from_slice(&bytes).expect("JSON");
        let name = got["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uid = got["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(name.starts_with("web-7-") && name.len() == 11, "{name}");
        assert!(key.ends_with(&format!("/tasks/prod/{name}")), "{key}");
        let want = task_json(&app, "prod", &name, &uid, 7, "node-1", &[31005, 9000], now);
        assert_eq!(got, want);
        let task: Task = serde_json::from_slice(&bytes).expect("a Task");
        assert_eq!(task.spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(task.spec.ports[1].host_port, 9000);

        // No ports: the field is left out, as the controller does.
        app.spec.ports.clear();
        let t = TaskTemplate::new(&app, "prod", now);
        let (_, bytes) = t.render(0, "n", &[], 1);
        let got: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert!(got["spec"].get("ports").is_none());
    }
}
