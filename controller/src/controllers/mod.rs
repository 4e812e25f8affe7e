//! The controllers that turn desired state into placements. `apps`: an App's instances
//! as Tasks bound to nodes; `manager` runs them (with leader election) in `drover up`;
//! `quota` feeds level 1's fair share and keeps Quota usage current.

pub mod apps;
pub mod deploy;
pub mod drain;
pub mod events;
pub mod gc;
pub mod manager;
pub mod nodes;
pub mod quota;
pub mod writes;
