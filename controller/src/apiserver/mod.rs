//! The Kubernetes-compatible API server (shared/K8S-API.md is the contract).
//!
//! `selector` parses label and field selectors, `table` renders `kubectl get` tables,
//! `openapi` builds the OpenAPI documents, `patch` applies merge / JSON / server-side
//! apply patches; `server` routes requests to `reads`, `writes` and `watch`, which keep
//! objects through `objects` and answer errors through `status`.
//! `watch_cache` keeps one store watch per kind for every API watch; `metrics` counts
//! requests and watches and serves `/metrics`.

pub mod auth;
pub mod core;
pub mod deletion;
pub mod discovery;
pub mod fieldpath;
pub mod logs;
pub mod metrics;
pub mod node_lease;
pub mod objects;
pub mod openapi;
pub mod openapi_v2;
pub mod patch;
pub mod pki;
pub mod reads;
pub mod request;
pub mod secure;
pub mod selector;
pub mod server;
pub mod status;
pub mod table;
pub mod tokenreview;
pub mod watch;
pub mod watch_cache;
pub mod writes;

pub use server::{router, serve, ApiState};
