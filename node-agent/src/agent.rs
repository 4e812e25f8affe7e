//! The agent: registers the Node, heartbeats, watches the Tasks bound to it and keeps
//! one runner per task; kills what is deleted or no longer bound, re-adopts what an
//! earlier agent left running.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use drover_api::kinds::task::TaskPhase;
use drover_api::Task;
use futures::StreamExt;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::all_tasks;
use crate::config::AgentConfig;
use crate::driver::{Driver, Launch};
use crate::error::Error;
use crate::lifecycle::{Checkpoints, TaskState};
use crate::ports::resolve_ports;
use crate::register::{detect_capacity, register};
use crate::status::StatusReporter;
use crate::supervisor::{run_task, Mode, TaskContext};
use crate::tasks::{watch_tasks, TaskEvent};

struct Supervised {
    uid: Option<String>,
    ports: Vec<u16>,
    kill: watch::Sender<bool>,
    done: JoinHandle<()>,
}

/// One agent.
pub struct Agent {
    config: AgentConfig,
    client: Client,
    ctx: Arc<TaskContext>,
    tasks: HashMap<String, Supervised>,
    listed_once: bool,
    /// Where to serve task logs, and who may read them.
    logs: Option<(std::net::SocketAddr, crate::logserver::LogAuth)>,
}

impl Agent {
    /// An agent for `config`, talking through `client`, running tasks with `driver`.
    pub fn new(config: AgentConfig, client: Client, driver: Arc<dyn Driver>) -> Self {
        let ctx = Arc::new(TaskContext {
            driver,
            checkpoints: Checkpoints::new(config.tasks_dir()),
            reporter: StatusReporter::new(client.clone(), config.hostname.clone()),
            events: crate::events::EventRecorder::new(client.clone(), config.hostname.clone()),
        });
        Agent {
            config,
            client,
            ctx,
            tasks: HashMap::new(),
            listed_once: false,
            logs: None,
        }
    }

    /// Also serve task logs on `listen` (port 0 picks one), advertised in the Node's
    /// `status.daemonEndpoint` for the API server to proxy.
    pub fn serve_logs(
        mut self,
        listen: std::net::SocketAddr,
        auth: crate::logserver::LogAuth,
    ) -> Self {
        self.logs = Some((listen, auth));
        self
    }

    /// Registers, then serves until `shutdown` resolves. Tasks keep running when the
    /// agent stops: the next agent re-adopts them.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let dir = self.config.tasks_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let capacity = detect_capacity(&self.config.data_dir);
        let logs = match self.logs.take() {
            Some((listen, auth)) => {
                let server = crate::logserver::LogServer::bind(
                    listen,
                    dir.clone(),
                    &self.config.node_name,
                    auth,
                )
                .await
                .map_err(|e| Error::io("listening for log requests on", listen.to_string(), e))?;
                let endpoint = server.endpoint(&self.config.hostname);
                self.config.daemon_endpoint = Some(
                    endpoint
                        .map_err(|e| Error::io("reading the address of", listen.to_string(), e))?,
                );
                Some(tokio::spawn(server.serve(std::future::pending())))
            }
            None => None,
        };
        let ready_since = register(&self.client, &self.config, &capacity).await?;
        let beat = tokio::spawn(crate::heartbeat::heartbeat(
            self.client.clone(),
            self.config.clone(),
            capacity,
            ready_since,
        ));
        let events = watch_tasks(
            all_tasks(&self.client),
            &self.config.node_name,
            Duration::from_secs(2),
        );
        let mut events = std::pin::pin!(events);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                event = events.next() => match event {
                    Some(Ok(event)) => self.handle(event),
                    Some(Err(error)) => tracing::warn!(%error, "watching tasks; retrying"),
                    None => break,
                },
            }
        }
        beat.abort();
        if let Some(logs) = logs {
            logs.abort();
        }
        // The runners stop watching with the agent (the tasks run on, for the next agent
        // to adopt): a runner left behind in this process would see a task killed after
        // the agent stopped (e.g. by whoever stopped it) and misreport it as ended while
        // nobody watched.
        for (_, s) in self.tasks.drain() {
            s.done.abort();
        }
        tracing::info!(node = %self.config.node_name, "agent stopping; tasks keep running");
        Ok(())
    }

    fn handle(&mut self, event: TaskEvent) {
        self.tasks.retain(|_, s| !s.done.is_finished());
        match event {
            TaskEvent::Applied(task) => self.on_task(&task),
            TaskEvent::Deleted(task) => {
                let key = key(&task);
                if self
                    .tasks
                    .get(&key)
                    .is_some_and(|s| s.uid == task.metadata.uid)
                {
                    tracing::info!(task = %key, "task deleted: killing it");
                    self.kill(&key);
                }
            }
            TaskEvent::Listed(tasks) => {
                let keys: BTreeSet<String> = tasks.iter().map(key).collect();
                for task in &tasks {
                    self.on_task(task);
                }
                let gone: Vec<String> = self
                    .tasks
                    .keys()
                    .filter(|k| !keys.contains(*k))
                    .cloned()
                    .collect();
                for k in gone {
                    tracing::info!(task = %k, "task no longer bound here: killing it");
                    self.kill(&k);
                }
                if !self.listed_once {
                    self.listed_once = true;
                    self.kill_orphans(&keys);
                }
            }
        }
    }

    fn kill(&mut self, key: &str) {
        if let Some(s) = self.tasks.get(key) {
            let _ = s.kill.send(true);
        }
    }

    /// Checkpointed tasks that the server no longer binds here but whose processes
    /// live on (started by an earlier agent): kill them.
    fn kill_orphans(&mut self, bound: &BTreeSet<String>) {
        for state in self.ctx.checkpoints.load_all() {
            let key = state.key();
            if bound.contains(&key) || state.phase.is_terminal() {
                continue;
            }
            let Some(pid) = state.pid else { continue };
            tracing::info!(task = %key, pid, "orphan from an earlier agent: killing it");
            let launch = self.launch_for(&state, &[], "");
            self.spawn(state, launch, Mode::Adopt(pid), true);
        }
    }

    fn on_task(&mut self, task: &Task) {
        let key = key(task);
        if task.spec.node_name.as_deref() != Some(self.config.node_name.as_str()) {
            return;
        }
        if task.metadata.deletion_timestamp.is_some() {
            self.kill(&key);
            return;
        }
        // Given up as Lost while this node could not heartbeat (the nodes controller):
        // its replacement runs elsewhere, so what still runs of it here must go.
        let lost = task
            .status
            .as_ref()
            .is_some_and(|s| s.phase == TaskPhase::Lost);
        if lost && self.tasks.contains_key(&key) {
            tracing::info!(task = %key, "task was given up as Lost: killing it");
            self.kill(&key);
            return;
        }
        if let Some(s) = self.tasks.get(&key) {
            if s.uid == task.metadata.uid {
                return;
            }
            // Same name, new uid: the old Task was replaced.
            self.kill(&key);
            return;
        }
        let api_phase = task.status.as_ref().map(|s| s.phase).unwrap_or_default();
        let saved = match self.ctx.checkpoints.load(&ns(task), &name(task)) {
            Ok(saved) => saved.filter(|s| s.uid == task.metadata.uid),
            Err(error) => {
                tracing::warn!(task = %key, %error, "ignoring an unreadable checkpoint");
                None
            }
        };
        match saved {
            Some(state) if state.phase.is_terminal() => {
                if api_phase != state.phase {
                    // Ended while the agent could not report it.
                    let reporter = self.ctx.reporter.clone();
                    tokio::spawn(async move { reporter.report_with_retries(&state).await });
                }
            }
            Some(state) if state.pid.is_some() && lost => {
                let pid = state.pid.unwrap_or_default();
                tracing::info!(task = %key, pid, "task was given up as Lost: killing it");
                let launch = self.launch_for(&state, &[], "");
                self.spawn(state, launch, Mode::Adopt(pid), true);
            }
            Some(state) if state.pid.is_some() => {
                let pid = state.pid.unwrap_or_default();
                let app = app_id(task);
                let launch = self.launch_for(&state, &task.spec.container_ports(), &app);
                let launch = with_task(launch, task);
                self.spawn(state, launch, Mode::Adopt(pid), false);
            }
            _ if api_phase.is_terminal() => {}
            _ => self.start(task),
        }
    }

    fn start(&mut self, task: &Task) {
        let mut state = TaskState::new(task);
        let in_use: BTreeSet<u16> = self
            .tasks
            .values()
            .flat_map(|s| s.ports.iter().copied())
            .collect();
        let ports = match resolve_ports(&task.spec.ports, self.config.port_range, &in_use) {
            Ok(p) => p,
            Err(error) => {
                let ctx = self.ctx.clone();
                tokio::spawn(async move {
                    let _ = state.finish(TaskPhase::Failed, "NoFreePort", error.to_string());
                    ctx.reporter.report_with_retries(&state).await;
                });
                return;
            }
        };
        state.host_ports = ports;
        let launch = self.launch_for(&state, &task.spec.container_ports(), &app_id(task));
        let launch = with_task(launch, task);
        self.spawn(state, launch, Mode::Start, false);
    }

    fn launch_for(&self, state: &TaskState, names: &[Option<String>], app: &str) -> Launch {
        Launch {
            task_id: state.name.clone(),
            app_id: app.to_string(),
            host: self.config.hostname.clone(),
            sandbox: self.ctx.checkpoints.sandbox(&state.namespace, &state.name),
            container: Default::default(),
            health_checks: Vec::new(),
            readiness_checks: Vec::new(),
            resources: Default::default(),
            volumes: Vec::new(),
            ports: state
                .host_ports
                .iter()
                .enumerate()
                .map(|(i, p)| (names.get(i).cloned().flatten(), *p))
                .collect(),
        }
    }

    fn spawn(&mut self, state: TaskState, launch: Launch, mode: Mode, kill_now: bool) {
        let key = state.key();
        let (kill, kill_rx) = watch::channel(kill_now);
        let ports = state.host_ports.clone();
        let uid = state.uid.clone();
        let done = tokio::spawn(run_task(self.ctx.clone(), state, launch, mode, kill_rx));
        self.tasks.insert(
            key,
            Supervised {
                uid,
                ports,
                kill,
                done,
            },
        );
    }
}

/// A launch with what the Task says to run and to check.
fn with_task(launch: Launch, task: &Task) -> Launch {
    Launch {
        container: task.spec.container.clone(),
        health_checks: task.spec.health_checks.clone(),
        readiness_checks: task.spec.readiness_checks.clone(),
        resources: task.spec.resources.clone(),
        volumes: task.spec.volumes.clone(),
        ..launch
    }
}

/// The names of a Task's ports, in order.
trait PortNames {
    fn container_ports(&self) -> Vec<Option<String>>;
}

impl PortNames for drover_api::kinds::task::TaskSpec {
    fn container_ports(&self) -> Vec<Option<String>> {
        self.ports.iter().map(|p| p.name.clone()).collect()
    }
}

fn ns(task: &Task) -> String {
    task.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into())
}

fn name(task: &Task) -> String {
    task.metadata.name.clone().unwrap_or_default()
}

fn key(task: &Task) -> String {
    format!("{}/{}", ns(task), name(task))
}

fn app_id(task: &Task) -> String {
    task.spec
        .owner
        .as_ref()
        .map(|o| o.name.clone())
        .unwrap_or_default()
}
