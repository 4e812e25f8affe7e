//! Keeps the Node's status fresh: rewrites it (lastHeartbeatTime, capacity, drivers;
//! not its conditions) every few seconds so the control plane can tell a live agent from a lost one.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;

use crate::config::AgentConfig;
use crate::register::{write_heartbeat, Capacity};

/// Heartbeats forever; failures are logged and retried at the next beat.
pub async fn heartbeat(client: Client, config: AgentConfig, capacity: Capacity, ready_since: Time) {
    let mut tick = tokio::time::interval(config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        match write_heartbeat(&client, &config, &capacity, &ready_since).await {
            Ok(()) => tracing::trace!(node = %config.node_name, "heartbeat"),
            Err(error) => tracing::warn!(node = %config.node_name, %error, "heartbeat failed"),
        }
    }
}
