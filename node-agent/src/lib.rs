//! The Drover node agent: registers its Node, watches the Tasks bound to it and runs
//! them (drivers), checks their health and reports their status through the API.
//!
//! `agent` ties it together: `register` + `heartbeat` for the Node, `tasks` (the watch),
//! `supervisor` (one runner per task over the `lifecycle` state machine), `driver`
//! (process), `ports`, `status` (reports). `health` runs HTTP / TCP / exec checks with
//! Marathon's semantics.

pub mod agent;
pub mod client;
pub mod config;
pub mod driver;
pub mod error;
pub mod events;
pub mod health;
pub mod heartbeat;
pub mod lifecycle;
pub mod logserver;
pub mod ports;
pub mod register;
pub mod status;
pub mod supervisor;
pub mod tasks;

pub use agent::Agent;
pub use config::AgentConfig;
pub use error::Error;
