//! Runs the controllers of one process: the shared caches (Tasks, Nodes), the apps
//! controller, the nodes controller (heartbeat leases → Ready, Lost tasks) and garbage
//! collection by ownerReferences (`gc`) — while this process holds the leader lease.

use std::sync::Arc;

use drover_api::find_kind;
use drover_api::kinds::app::App;
use drover_api::kinds::node::Node;
use drover_api::kinds::task::Task;
use drover_store::Store;

use crate::controllers::apps::{self, AppsContext};
use crate::controllers::nodes::NodesConfig;
use crate::runtime::leader::LeaderElection;
use crate::runtime::reflector::{self, reflector};
use crate::runtime::watcher::Event;
use crate::runtime::Controller;

/// Runs until `shutdown` resolves. `identity` names this process in the leader lease.
pub async fn run(
    store: Arc<dyn Store>,
    identity: &str,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    run_with(store, identity, NodesConfig::default(), shutdown).await
}

/// [`run`] with the node lease and lost timeouts given (`--node-lease-seconds`,
/// `--node-lost-seconds`).
pub async fn run_with(
    store: Arc<dyn Store>,
    identity: &str,
    nodes_config: NodesConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    let election = LeaderElection::new(store.clone(), "controller-manager", identity, 10);
    tokio::pin!(shutdown);
    let leading = tokio::select! {
        _ = &mut shutdown => return,
        l = election.acquire() => l,
    };
    let mut leading = match leading {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "leader election failed; controllers not started");
            return;
        }
    };
    let (Some(app_info), Some(task_info), Some(node_info)) =
        (find_kind("App"), find_kind("Task"), find_kind("Node"))
    else {
        tracing::error!("the App, Task and Node kinds must be registered");
        return;
    };
    let (task_writer, tasks) = reflector::<Task>();
    let (constraints, constraint_cache) =
        reflector::spawn_cache::<drover_api::kinds::constraint::Constraint>(store.clone());
    let (node_writer, nodes) = reflector::<Node>();
    let controller = Controller::<App>::new(store.clone(), app_info).concurrency(8);
    let trigger = controller.trigger();
    // The external-framework API (if configured) gets this cache's events too.
    let (framework_tx, framework_events) = crate::framework::task_events_channel().unzip();
    let task_cache = tokio::spawn(reflector::run(
        store.clone(),
        task_info,
        task_writer,
        move |ev: &Event<Task>| {
            if let Some(tx) = &framework_tx {
                crate::framework::forward(tx, ev);
            }
            let owners: Vec<_> = match ev {
                Event::Restarted(all) => all.iter().filter_map(apps::owner_key).collect(),
                Event::Applied(t) | Event::Deleted(t) => apps::owner_key(t).into_iter().collect(),
            };
            for key in owners {
                let _ = trigger.send(key);
            }
        },
    ));
    // Node changes wake the nodes controller's maintenance-window pass.
    let node_changed = Arc::new(tokio::sync::Notify::new());
    let node_notify = node_changed.clone();
    let node_cache = tokio::spawn(reflector::run(
        store.clone(),
        node_info,
        node_writer,
        move |_: &Event<Node>| node_notify.notify_one(),
    ));
    tasks.wait_until_ready().await;
    nodes.wait_until_ready().await;
    // Garbage collection by ownerReferences (replaces `apps::collect_orphans`, which
    // went by name and so could not leave orphaned Tasks behind).
    // Apps come from the apps controller's cache (ready once the controller runs).
    let (jobs, jobs_cache) = reflector::spawn_cache::<drover_api::kinds::job::Job>(store.clone());
    let (job_runs, job_runs_cache) =
        reflector::spawn_cache::<drover_api::kinds::job_run::JobRun>(store.clone());
    let (frameworks, frameworks_cache) =
        reflector::spawn_cache::<drover_api::kinds::framework::Framework>(store.clone());
    let gc = tokio::spawn(crate::controllers::gc::run(
        store.clone(),
        tasks.clone(),
        crate::controllers::gc::Owners {
            apps: controller.reader(),
            jobs,
            job_runs,
            frameworks: frameworks.clone(),
        },
    ));
    let nodes_controller = tokio::spawn(crate::controllers::nodes::run(
        store.clone(),
        nodes.clone(),
        tasks.clone(),
        nodes_config,
        node_changed,
    ));
    // Quota: usage and held-back demand in status; its cache, with the App cache, feeds
    // the apps controller's fair share (level 1).
    let quota_controller = find_kind("Quota").map(|info| {
        Controller::<drover_api::kinds::quota::Quota>::new(store.clone(), info).concurrency(2)
    });
    let quotas = match &quota_controller {
        Some(c) => c.reader(),
        None => reflector::<drover_api::kinds::quota::Quota>().1,
    };
    // The external-framework API (offers), if this process was given one to serve;
    // Quota guarantees and limits bound what its roles are offered.
    let scheduler_api = crate::framework::spawn_if_configured(
        store.clone(),
        crate::framework::Caches {
            nodes: nodes.clone(),
            tasks: tasks.clone(),
            quotas: quotas.clone(),
            frameworks,
        },
        framework_events,
    );
    let quota_run = quota_controller.map(|c| {
        let ctx = Arc::new(crate::controllers::quota::QuotaContext {
            store: store.clone(),
            tasks: tasks.clone(),
            apps: controller.reader(),
        });
        tokio::spawn(c.run(
            crate::controllers::quota::reconcile,
            crate::controllers::quota::error_policy,
            ctx,
            std::future::pending::<()>(),
        ))
    });
    let ctx = Arc::new(AppsContext {
        store: store.clone(),
        tasks,
        nodes,
        expectations: Default::default(),
        constraints,
        apps: controller.reader(),
        quotas,
    });
    let lost = async move {
        let _ = leading.wait_for(|l| !*l).await;
    };
    tokio::select! {
        _ = &mut shutdown => {}
        _ = lost => tracing::warn!("leadership lost; controllers stopped"),
        _ = controller.run(apps::reconcile, apps::error_policy, ctx, std::future::pending::<()>()) => {}
    }
    task_cache.abort();
    node_cache.abort();
    let caches = [
        constraint_cache,
        jobs_cache,
        job_runs_cache,
        frameworks_cache,
    ];
    for c in caches.into_iter().flatten() {
        c.abort();
    }
    gc.abort();
    nodes_controller.abort();
    if let Some(s) = scheduler_api {
        s.abort();
    }
    if let Some(q) = quota_run {
        q.abort();
    }
}
