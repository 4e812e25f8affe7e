//! `POST /api/v1/scheduler`: the calls of the Mesos v1 scheduler API. SUBSCRIBE answers
//! with a stream of RecordIO-framed events; every other call answers 202 Accepted, or
//! 400 with a message that starts with the field at fault (`accept.offer_ids[0]: …`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use drover_api::kinds::framework::Framework;
use drover_api::kinds::task::Task;
use drover_api::validation::{check_label, check_subdomain, Path, Validate, ValidationErrors};
use drover_store::StoreError;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::messages::{self, Call, Filters};
use super::recordio::frame_json;
use super::{framework_of, update_framework_status, Shared, Subscription};
use crate::allocator::offers::{ClusterView, LaunchAsk, DEFAULT_REFUSE};
use crate::allocator::Amounts;
use crate::apiserver::objects::{key, new_uid, now_rfc3339, stamp_created, to_stored};
use crate::runtime::object::ObjectKey;

pub const STREAM_ID_HEADER: &str = "Mesos-Stream-Id";
/// Label on every Task a framework launched: the framework's name.
pub const FRAMEWORK_LABEL: &str = "drover.dev/framework";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/scheduler", post(call))
        .with_state(shared)
}

/// A refused call: its status and the message (field first).
struct CallError(StatusCode, String);

impl IntoResponse for CallError {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

fn bad(message: impl Into<String>) -> CallError {
    CallError(StatusCode::BAD_REQUEST, message.into())
}

fn internal(what: &str, e: impl std::fmt::Display) -> CallError {
    tracing::error!(error = %e, "scheduler API: {what}");
    CallError(StatusCode::SERVICE_UNAVAILABLE, format!("{what}: {e}"))
}

/// Who is calling: the subscribed framework the call names.
struct Caller {
    name: String,
    uid: String,
    role: String,
    namespace: String,
}

#[tracing::instrument(skip_all)]
async fn call(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(shared.config.token.as_str()) {
        return CallError(
            StatusCode::UNAUTHORIZED,
            "Authorization: a valid bearer token is required (the scheduler token)".into(),
        )
        .into_response();
    }
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let call: Call = match serde_path_to_error::deserialize(de) {
        Ok(c) => c,
        Err(e) => {
            let path = e.path().to_string();
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            return bad(format!("{field}: {}", e.inner())).into_response();
        }
    };
    let kind = call.type_.clone();
    let result = match kind.as_str() {
        "SUBSCRIBE" => {
            return subscribe(shared, call)
                .await
                .unwrap_or_else(|e| e.into_response())
        }
        "ACCEPT" | "DECLINE" | "KILL" | "RECONCILE" | "TEARDOWN" => {
            match caller(&shared, &headers, &call) {
                Err(e) => Err(e),
                Ok(who) => match kind.as_str() {
                    "ACCEPT" => accept(&shared, &who, call).await,
                    "DECLINE" => decline(&shared, &who, call),
                    "KILL" => kill(&shared, &who, call).await,
                    "RECONCILE" => reconcile(&shared, &who, call),
                    _ => teardown(&shared, &who).await,
                },
            }
        }
        "" => Err(bad(
            "type: missing (SUBSCRIBE, ACCEPT, DECLINE, KILL, RECONCILE or TEARDOWN)",
        )),
        other => Err(bad(format!(
            "type: unknown call {other:?} (SUBSCRIBE, ACCEPT, DECLINE, KILL, RECONCILE or TEARDOWN)"
        ))),
    };
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            tracing::info!(call = %kind, status = %e.0, message = %e.1, "scheduler call refused");
            e.into_response()
        }
    }
}

/// The framework a non-SUBSCRIBE call comes from: `framework_id` must name a subscribed
/// framework and `Mesos-Stream-Id` its current subscription.
fn caller(shared: &Shared, headers: &HeaderMap, call: &Call) -> Result<Caller, CallError> {
    let Some(id) = &call.framework_id else {
        return Err(bad("framework_id: missing (the id SUBSCRIBED gave)"));
    };
    let subs = shared.subs.lock().unwrap_or_else(|p| p.into_inner());
    let Some(sub) = subs.get(id.as_str()) else {
        return Err(bad(format!(
            "framework_id: framework {:?} is not subscribed",
            id.as_str()
        )));
    };
    let stream = headers.get(STREAM_ID_HEADER).and_then(|v| v.to_str().ok());
    match stream {
        None => Err(bad(format!("{STREAM_ID_HEADER}: header missing"))),
        Some(s) if s != sub.stream_id => Err(bad(format!(
            "{STREAM_ID_HEADER}: {s:?} is not framework {:?}'s current subscription",
            id.as_str()
        ))),
        Some(_) => Ok(Caller {
            name: id.as_str().to_string(),
            uid: sub.uid.clone(),
            role: sub.role.clone(),
            namespace: sub.namespace.clone(),
        }),
    }
}

fn first_error(errors: ValidationErrors) -> Result<(), CallError> {
    match errors.into_result() {
        Ok(()) => Ok(()),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Creates or updates the Framework object of a subscription; returns it.
async fn upsert_framework(
    shared: &Shared,
    name: &str,
    role: Option<&str>,
    failover_timeout: Option<i64>,
) -> Result<Framework, CallError> {
    let Some(info) = drover_api::find_kind("Framework") else {
        return Err(internal("Framework kind", "not registered"));
    };
    let k = key(info, None, name);
    let now = now_rfc3339();
    for _ in 0..5 {
        let existing = shared
            .store
            .get(&k)
            .await
            .map_err(|e| internal("reading the Framework", e))?;
        let (mut obj, revision) = match existing {
            Some(kv) => {
                let v: Value = serde_json::from_slice(&kv.value)
                    .map_err(|e| internal("reading the Framework", e))?;
                (v, Some(kv.mod_revision))
            }
            None => {
                let mut v = json!({
                    "apiVersion": "drover.dev/v1alpha1",
                    "kind": "Framework",
                    "metadata": {"name": name},
                    "spec": {"role": drover_api::defaults::ROLE, "weight": 1.0},
                });
                stamp_created(&mut v, &now);
                (v, None)
            }
        };
        if let Some(role) = role {
            obj["spec"]["role"] = json!(role);
        }
        if let Some(seconds) = failover_timeout {
            obj["spec"]["failoverTimeoutSeconds"] = json!(seconds);
        }
        let mut status = obj.get("status").cloned().unwrap_or(json!({}));
        if !status.is_object() {
            status = json!({});
        }
        status["connected"] = json!(true);
        status["lastSubscribedTime"] = json!(now);
        status["outstandingOffers"] = json!(0);
        obj["status"] = status;
        let fw: Framework = serde_json::from_value(obj.clone())
            .map_err(|e| internal("decoding the Framework", e))?;
        if let Err(e) = fw.validate() {
            return Err(bad(format!(
                "subscribe.framework_info: Framework {name:?} would be invalid: {e}"
            )));
        }
        let written = match revision {
            Some(rev) => shared.store.update(&k, to_stored(&obj), rev, 0).await,
            None => shared.store.create(&k, to_stored(&obj), 0).await,
        };
        match written {
            Ok(_) => return Ok(fw),
            Err(e) if e.is_conflict() || matches!(e, StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(internal("writing the Framework", e)),
        }
    }
    Err(CallError(
        StatusCode::CONFLICT,
        format!("Framework {name:?}: changed by someone else five times running; retry"),
    ))
}

async fn subscribe(shared: Arc<Shared>, call: Call) -> Result<Response, CallError> {
    let Some(sub) = call.subscribe else {
        return Err(bad("subscribe: missing"));
    };
    let info = sub.framework_info;
    let mut errors = ValidationErrors::new();
    let path = Path::root("subscribe").child("framework_info");
    if info.name.is_empty() {
        errors.invalid(&path.child("name"), "missing (the Framework object's name)");
    } else {
        check_label(&mut errors, &path.child("name"), &info.name);
    }
    if info.role.as_deref().is_some_and(str::is_empty) {
        errors.invalid(&path.child("role"), "must not be empty");
    }
    let failover = match info.failover_timeout {
        None => None,
        Some(t) if t.is_finite() && (0.0..=31_536_000.0).contains(&t) => Some(t.ceil() as i64),
        Some(t) => {
            errors.invalid(
                &path.child("failover_timeout"),
                format!("{t} is not a number of seconds between 0 and a year"),
            );
            None
        }
    };
    first_error(errors)?;
    let fw = upsert_framework(&shared, &info.name, info.role.as_deref(), failover).await?;
    let name = info.name.clone();
    let role = fw
        .spec
        .role
        .clone()
        .unwrap_or_else(|| drover_api::defaults::ROLE.into());
    let weight = fw.spec.weight.unwrap_or(1.0);
    let namespace = fw
        .spec
        .task_namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let stream_id = uuid::Uuid::new_v4().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    {
        let mut subs = shared.subs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = subs.get(&name) {
            let _ = old.tx.send(messages::error_event(
                "framework failed over to a new subscription",
            ));
        }
        shared
            .disconnected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name);
        subs.insert(
            name.clone(),
            Subscription {
                stream_id: stream_id.clone(),
                tx,
                uid: fw.metadata.uid.clone().unwrap_or_default(),
                role: role.clone(),
                namespace,
            },
        );
        // Offers made to the old subscription are void.
        let mut book = shared.book.lock().unwrap_or_else(|p| p.into_inner());
        book.unsubscribe(&name);
        book.subscribe(&name, &role, weight);
    }
    shared.wake.notify_one();
    tracing::info!(framework = %name, %role, weight, stream = %stream_id, "framework subscribed");
    let heartbeat = shared.config.heartbeat;
    let subscribed = json!({
        "type": "SUBSCRIBED",
        "subscribed": {
            "framework_id": {"value": name},
            "heartbeat_interval_seconds": heartbeat.as_secs_f64(),
        }
    });
    let state = StreamState {
        first: Some(frame_json(&subscribed)),
        rx,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat),
        stopped: shared.stopped.clone(),
        _guard: Unsubscribe {
            shared: shared.clone(),
            name,
            stream_id: stream_id.clone(),
        },
    };
    let stream = futures::stream::unfold(state, next_record);
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&stream_id) {
        headers.insert(STREAM_ID_HEADER, v);
    }
    Ok(response)
}

/// One subscription's stream: SUBSCRIBED, then its events and heartbeats until the
/// client goes, another subscription replaces it, or the server stops.
struct StreamState {
    first: Option<Bytes>,
    rx: mpsc::UnboundedReceiver<Value>,
    heartbeat: tokio::time::Interval,
    stopped: watch::Receiver<bool>,
    _guard: Unsubscribe,
}

enum Next {
    Event(Value),
    Heartbeat,
    End,
}

async fn next_record(mut st: StreamState) -> Option<(Result<Bytes, Infallible>, StreamState)> {
    if let Some(first) = st.first.take() {
        return Some((Ok(first), st));
    }
    let next = tokio::select! {
        ev = st.rx.recv() => ev.map(Next::Event).unwrap_or(Next::End),
        _ = st.heartbeat.tick() => Next::Heartbeat,
        _ = st.stopped.wait_for(|s| *s) => Next::End,
    };
    match next {
        Next::Event(v) => Some((Ok(frame_json(&v)), st)),
        Next::Heartbeat => Some((Ok(frame_json(&json!({"type": "HEARTBEAT"}))), st)),
        Next::End => None,
    }
}

/// Dropped with the stream (the client went): the framework is disconnected, its
/// offers return — unless a newer subscription replaced this one.
struct Unsubscribe {
    shared: Arc<Shared>,
    name: String,
    stream_id: String,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let current = {
            let mut subs = self.shared.subs.lock().unwrap_or_else(|p| p.into_inner());
            if subs
                .get(&self.name)
                .is_some_and(|s| s.stream_id == self.stream_id)
            {
                subs.remove(&self.name);
                true
            } else {
                false
            }
        };
        if !current {
            return;
        }
        let returned = self
            .shared
            .book
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unsubscribe(&self.name);
        tracing::info!(framework = %self.name, offers = returned.len(), "framework disconnected");
        self.shared
            .disconnected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.name.clone(), std::time::Instant::now());
        let store = self.shared.store.clone();
        let name = self.name.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = update_framework_status(&store, &name, |s| {
                    s["connected"] = json!(false);
                    s["outstandingOffers"] = json!(0);
                })
                .await;
            });
        }
    }
}

fn refuse_of(filters: Option<&Filters>, field: &str) -> Result<Duration, CallError> {
    match filters.and_then(|f| f.refuse_seconds) {
        None => Ok(DEFAULT_REFUSE),
        Some(s) if s.is_finite() && (0.0..=31_536_000.0).contains(&s) => {
            Ok(Duration::from_secs_f64(s))
        }
        Some(s) => Err(bad(format!(
            "{field}: {s} is not a number of seconds between 0 and a year"
        ))),
    }
}

fn offer_ids(ids: &[messages::Id]) -> Vec<String> {
    ids.iter().map(|i| i.as_str().to_string()).collect()
}

/// Checks one task_info and renders its Task (without the node, filled in later).
fn task_for(
    who: &Caller,
    ti: &messages::TaskInfo,
    field: &Path,
    errors: &mut ValidationErrors,
) -> Option<(LaunchAsk, Value)> {
    let before = errors.len();
    let id = ti.task_id.as_ref().map(|i| i.as_str()).unwrap_or_default();
    if id.is_empty() {
        errors.invalid(
            &field.child("task_id"),
            "missing (it becomes the Task's name)",
        );
    } else {
        check_subdomain(errors, &field.child("task_id"), id);
    }
    let command = ti.command.as_deref().unwrap_or_default();
    if command.trim().is_empty() {
        errors.invalid(&field.child("command"), "missing (a shell command line)");
    }
    let res = field.child("resources");
    let cpus = ti.resources.cpus.unwrap_or(0.0);
    if !(cpus.is_finite() && cpus > 0.0) {
        errors.invalid(&res.child("cpus"), "must be a number > 0");
    }
    let mem = ti.resources.mem.unwrap_or(0.0);
    if !(mem.is_finite() && mem >= 1.0) {
        errors.invalid(&res.child("mem"), "must be a number of MiB >= 1");
    }
    let disk = ti.resources.disk.unwrap_or(0.0);
    if !(disk.is_finite() && disk >= 0.0) {
        errors.invalid(&res.child("disk"), "must be a number of MiB >= 0");
    }
    if ti.kill_grace_period_seconds.is_some_and(|s| s < 0) {
        errors.invalid(&field.child("kill_grace_period_seconds"), "must be >= 0");
    }
    for (i, p) in ti.ports.iter().enumerate() {
        if *p == 0 {
            errors.invalid(
                &field.child("ports").index(i),
                "must be a port from the offer",
            );
        }
    }
    if errors.len() > before {
        return None;
    }
    let amounts = Amounts {
        cpus,
        mem_mib: mem.ceil() as i64,
        disk_mib: disk.ceil() as i64,
        gpus: 0,
    };
    let mut meta = json!({
        "name": id,
        "namespace": who.namespace,
        "labels": {FRAMEWORK_LABEL: who.name},
        "ownerReferences": [{
            "apiVersion": "drover.dev/v1alpha1",
            "kind": "Framework",
            "name": who.name,
            "uid": who.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }],
        "uid": new_uid(),
        "creationTimestamp": now_rfc3339(),
        "generation": 1,
    });
    if let Some(n) = &ti.name {
        meta["annotations"] = json!({"drover.dev/task-name": n});
    }
    let mut spec = json!({
        "owner": {"kind": "Framework", "name": who.name, "uid": who.uid},
        "container": {"driver": "process", "cmd": command, "env": ti.env},
        "resources": {"cpus": cpus, "memMiB": amounts.mem_mib, "diskMiB": amounts.disk_mib},
        "role": who.role,
    });
    if !ti.ports.is_empty() {
        spec["ports"] = json!(ti
            .ports
            .iter()
            .map(|p| json!({"hostPort": p}))
            .collect::<Vec<_>>());
    }
    if let Some(g) = ti.kill_grace_period_seconds {
        spec["killGracePeriodSeconds"] = json!(g);
    }
    let task = json!({
        "apiVersion": "drover.dev/v1alpha1",
        "kind": "Task",
        "metadata": meta,
        "spec": spec,
        "status": {"phase": "Scheduled"},
    });
    let ask = LaunchAsk {
        key: format!("{}/{id}", who.namespace),
        field: field.to_string(),
        amounts,
        ports: ti.ports.clone(),
    };
    Some((ask, task))
}

async fn accept(shared: &Shared, who: &Caller, call: Call) -> Result<(), CallError> {
    let Some(a) = call.accept else {
        return Err(bad("accept: missing"));
    };
    let Some(task_info) = drover_api::find_kind("Task") else {
        return Err(internal("Task kind", "not registered"));
    };
    let ids = offer_ids(&a.offer_ids);
    let refuse = refuse_of(a.filters.as_ref(), "accept.filters.refuse_seconds")?;
    let mut errors = ValidationErrors::new();
    let mut launches: Vec<(LaunchAsk, Value)> = Vec::new();
    let ops = Path::root("accept").child("operations");
    for (j, op) in a.operations.iter().enumerate() {
        let path = ops.index(j);
        if op.type_ != "LAUNCH" {
            errors.invalid(
                &path.child("type"),
                format!("{:?} is not supported (only LAUNCH)", op.type_),
            );
            continue;
        }
        let Some(launch) = &op.launch else {
            errors.invalid(&path.child("launch"), "missing");
            continue;
        };
        for (k, ti) in launch.task_infos.iter().enumerate() {
            let field = path.child("launch").child("task_infos").index(k);
            if let Some((ask, task)) = task_for(who, ti, &field, &mut errors) {
                let name = task["metadata"]["name"].as_str().unwrap_or_default();
                if launches.iter().any(|(l, _)| l.key == ask.key) {
                    errors.invalid(
                        &field.child("task_id"),
                        format!("{name:?} is launched twice in this call"),
                    );
                } else if shared
                    .tasks
                    .get(&crate::runtime::object::ObjectKey {
                        namespace: Some(who.namespace.clone()),
                        name: name.to_string(),
                    })
                    .is_some()
                {
                    errors.invalid(
                        &field.child("task_id"),
                        format!(
                            "a Task named {name:?} already exists in namespace {:?}",
                            who.namespace
                        ),
                    );
                }
                launches.push((ask, task));
            }
        }
    }
    first_error(errors)?;
    let asks: Vec<LaunchAsk> = launches.iter().map(|(a, _)| a.clone()).collect();
    // Checked before any write: a refused accept changes nothing.
    let (inventory, maintenance, role_usage, known, policies) = super::cluster_view(shared);
    let view = ClusterView {
        inventory: &inventory,
        maintenance: &maintenance,
        role_usage: &role_usage,
        known_tasks: &known,
        role_policies: &policies,
    };
    let node = {
        let mut book = shared.book.lock().unwrap_or_else(|p| p.into_inner());
        let node = book
            .check_accept(&who.name, &ids, &asks)
            .map_err(|e| bad(e.to_string()))?;
        if let Some(dim) = book.short_now(&view, &node, &ids, &asks) {
            // Taken since the offer was made (the built-in schedulers do not use offers):
            // the offers are void.
            let gone = book.rescind(&ids);
            drop(book);
            for o in gone {
                shared.send(&who.name, messages::rescind_event(&o.id));
            }
            shared.wake.notify_one();
            return Err(CallError(
                StatusCode::CONFLICT,
                format!("accept.offer_ids: node {node:?} no longer has the {dim} these offers held (bound to other tasks since); the offers are rescinded, nothing was created"),
            ));
        }
        book.accept(&who.name, &ids, &asks, refuse, Instant::now())
            .map_err(|e| bad(e.to_string()))?
    };
    let mut objects = Vec::new();
    for (ask, mut task) in launches {
        task["spec"]["nodeName"] = json!(node);
        let parsed: Result<Task, _> = serde_json::from_value(task.clone());
        if let Err(e) = parsed
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|t| t.validate().map_err(|e| e.to_string()))
        {
            shared
                .book
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forget_launched(&asks.iter().map(|a| a.key.clone()).collect::<Vec<_>>());
            return Err(bad(format!(
                "{}: the Task would be invalid: {e}",
                ask.field
            )));
        }
        let name = task["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        objects.push((key(task_info, Some(&who.namespace), &name), task));
    }
    let created = crate::controllers::writes::create_all(&shared.store, objects).await;
    shared.wake.notify_one();
    match created {
        Ok(true) => {
            tracing::info!(framework = %who.name, %node, tasks = asks.len(), "offers accepted");
            Ok(())
        }
        other => {
            shared
                .book
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .forget_launched(&asks.iter().map(|a| a.key.clone()).collect::<Vec<_>>());
            match other {
                Err(e) => Err(internal("creating the Tasks", e)),
                _ => Err(CallError(
                    StatusCode::CONFLICT,
                    "accept.operations: a Task of the same name was created meanwhile; nothing was created (the offers are used up)".into(),
                )),
            }
        }
    }
}

fn decline(shared: &Shared, who: &Caller, call: Call) -> Result<(), CallError> {
    let Some(d) = call.decline else {
        return Err(bad("decline: missing"));
    };
    if d.offer_ids.is_empty() {
        return Err(bad("decline.offer_ids: must name at least one offer"));
    }
    let refuse = refuse_of(d.filters.as_ref(), "decline.filters.refuse_seconds")?;
    shared
        .book
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .decline(&who.name, &offer_ids(&d.offer_ids), refuse, Instant::now());
    shared.wake.notify_one();
    Ok(())
}

/// The framework's Tasks, from the cache.
fn tasks_of(shared: &Shared, who: &Caller) -> Vec<Arc<Task>> {
    tasks_of_framework(shared, &who.name)
}

fn tasks_of_framework(shared: &Shared, name: &str) -> Vec<Arc<Task>> {
    shared
        .tasks
        .list()
        .into_iter()
        .filter(|t| framework_of(t).as_deref() == Some(name))
        .collect()
}

/// Kills the tasks of Frameworks disconnected for longer than their
/// `spec.failoverTimeoutSeconds` (unset: never), as a Mesos master does after a
/// scheduler's failover timeout; the Framework's `FailoverTimeout` condition says so.
pub(crate) async fn failover_loop(shared: Arc<Shared>) {
    let Some(info) = drover_api::find_kind("Framework") else {
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let waiting: Vec<(String, std::time::Instant)> = shared
            .disconnected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        for (name, since) in waiting {
            // From the Framework cache; the store is asked only when the cache does not
            // hold it (just created, or gone).
            let cached = shared.frameworks.get(&ObjectKey {
                namespace: None,
                name: name.clone(),
            });
            let timeout = match cached {
                Some(f) => f.spec.failover_timeout_seconds,
                None => match shared.store.get(&key(info, None, &name)).await {
                    Ok(Some(kv)) => serde_json::from_slice::<Framework>(&kv.value)
                        .ok()
                        .and_then(|f| f.spec.failover_timeout_seconds),
                    Ok(None) => {
                        // The Framework is gone (its tasks go with it, by ownerReference).
                        forget(&shared, &name, since);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(framework = %name, error = %e, "failover: reading the Framework");
                        continue;
                    }
                },
            };
            let Some(seconds) = timeout else { continue };
            if since.elapsed() < Duration::from_secs(seconds.max(0) as u64) {
                continue;
            }
            let tasks = tasks_of_framework(&shared, &name);
            let mut killed = 0;
            for t in &tasks {
                match delete_task(&shared, t).await {
                    Ok(()) => killed += 1,
                    Err(CallError(code, message)) => {
                        tracing::warn!(framework = %name, %code, %message, "failover: deleting a task")
                    }
                }
            }
            if killed < tasks.len() {
                continue; // try again on the next turn
            }
            forget(&shared, &name, since);
            tracing::warn!(framework = %name, killed, seconds, "framework did not come back within its failover timeout; its tasks were killed");
            let message = format!(
                "disconnected for more than failoverTimeoutSeconds ({seconds} s): {killed} task(s) killed"
            );
            let now = now_rfc3339();
            let _ = update_framework_status(&shared.store, &name, |s| {
                let mut conditions: Vec<Value> = s["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c["type"] != "FailoverTimeout")
                    .collect();
                conditions.push(json!({
                    "type": "FailoverTimeout",
                    "status": "True",
                    "reason": "TasksKilled",
                    "message": message,
                    "lastTransitionTime": now,
                }));
                s["conditions"] = json!(conditions);
            })
            .await;
        }
    }
}

/// Stops the failover clock of `name` unless it restarted since `since`.
fn forget(shared: &Shared, name: &str, since: std::time::Instant) {
    let mut d = shared
        .disconnected
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if d.get(name) == Some(&since) {
        d.remove(name);
    }
}

async fn delete_task(shared: &Shared, t: &Task) -> Result<(), CallError> {
    let Some(info) = drover_api::find_kind("Task") else {
        return Err(internal("Task kind", "not registered"));
    };
    let k = key(
        info,
        t.metadata.namespace.as_deref(),
        t.metadata.name.as_deref().unwrap_or_default(),
    );
    match shared.store.delete(&k, None).await {
        Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(internal("deleting the Task", e)),
    }
}

async fn kill(shared: &Shared, who: &Caller, call: Call) -> Result<(), CallError> {
    let id = call
        .kill
        .as_ref()
        .and_then(|k| k.task_id.as_ref())
        .map(|i| i.as_str().to_string())
        .unwrap_or_default();
    if id.is_empty() {
        return Err(bad("kill.task_id: missing"));
    }
    let Some(t) = tasks_of(shared, who)
        .into_iter()
        .find(|t| t.metadata.name.as_deref() == Some(id.as_str()))
    else {
        return Err(bad(format!(
            "kill.task_id: framework {:?} has no task {id:?}",
            who.name
        )));
    };
    tracing::info!(framework = %who.name, task = %id, "killing task");
    // The agent kills a deleted Task's process; the UPDATE says TASK_KILLED.
    delete_task(shared, &t).await
}

fn reconcile(shared: &Shared, who: &Caller, call: Call) -> Result<(), CallError> {
    let asked = call.reconcile.map(|r| r.tasks).unwrap_or_default();
    let tasks = tasks_of(shared, who);
    if asked.is_empty() {
        for t in &tasks {
            shared.send(&who.name, messages::update_event(t, None));
        }
        return Ok(());
    }
    for (i, r) in asked.iter().enumerate() {
        let Some(id) = r.task_id.as_ref().map(|i| i.as_str()) else {
            return Err(bad(format!("reconcile.tasks[{i}].task_id: missing")));
        };
        match tasks
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(id))
        {
            Some(t) => shared.send(&who.name, messages::update_event(t, None)),
            None => shared.send(&who.name, messages::unknown_task_update(id)),
        }
    }
    Ok(())
}

async fn teardown(shared: &Shared, who: &Caller) -> Result<(), CallError> {
    for t in tasks_of(shared, who) {
        delete_task(shared, &t).await?;
    }
    // Dropping the subscription ends its stream; the stream's guard finds it gone.
    shared
        .subs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&who.name);
    shared
        .book
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .unsubscribe(&who.name);
    let _ = update_framework_status(&shared.store, &who.name, |s| {
        s["connected"] = json!(false);
        s["outstandingOffers"] = json!(0);
    })
    .await;
    tracing::info!(framework = %who.name, "framework torn down");
    Ok(())
}
