//! The Kubernetes-compatible API server (shared/K8S-API.md is the contract).
//!
//! `selector` parses label and field selectors, `table` renders `kubectl get` tables,
//! `openapi` builds the OpenAPI documents, `patch` applies merge / JSON / server-side
//! apply patches.

pub mod openapi;
pub mod patch;
pub mod selector;
pub mod table;
