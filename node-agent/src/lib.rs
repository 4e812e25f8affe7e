//! The Drover node agent: registers its Node, watches the Tasks bound to it and runs
//! them (drivers), checks their health and reports their status through the API.
//!
//! `health` runs HTTP / TCP / exec checks with Marathon's semantics.

pub mod health;
