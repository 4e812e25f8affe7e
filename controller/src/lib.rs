//! Drover's control plane: the Kubernetes-compatible API server, the controller runtime,
//! the controllers and the two-level allocator. Built on `drover-store`.

pub mod allocator;
pub mod apiserver;
pub mod bench;
pub mod controllers;
pub mod fingerprint;
pub mod framework;
pub mod runtime;
