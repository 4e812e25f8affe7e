//! The API client: `kubeconfig` finds the server and credentials, `http` talks to it,
//! `resources` maps kinds and names onto URLs.

pub mod http;
pub mod kubeconfig;
pub mod resources;

pub use http::{is_not_found, ApiError, Client};
