//! Health and readiness checks run on the agent with Marathon's semantics: a check
//! (`http`, `tcp`, `exec`) is resolved against the task's ports and sandbox, run on a
//! schedule, and its results folded into one `HealthState` per task.
//!
//! - `target`: the task's host address and ports (`port` / `portName` / PORT0).
//! - `http`, `tcp`, `exec`: one way each of probing a task once.
//! - `probe`: a resolved check and the `Prober` trait the monitor drives.
//! - `checker`: the per-check state machine (delay, interval, grace, kill threshold).
//! - `state`: what the monitor reports (`HealthState`).
//! - `monitor`: runs every check of a task and publishes its `HealthState`.
//! - `error`: why a check cannot be set up.

mod checker;
mod error;
mod exec;
mod http;
mod monitor;
mod probe;
mod state;
mod target;
mod tcp;
#[cfg(test)]
mod test_server;

pub use checker::{CheckPolicy, Checker, Verdict};
pub use error::HealthError;
pub use exec::{ExecContext, ExecProbe, InContainer};
pub use http::HttpProbe;
pub use monitor::{HealthMonitor, MonitorHandle, MonitoredCheck};
pub use probe::{Outcome, Probe, Prober};
pub use state::HealthState;
pub use target::TaskTarget;
pub use tcp::TcpProbe;
