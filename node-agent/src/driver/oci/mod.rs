//! OCI pieces of the runc driver: `spec` writes a bundle's `config.json`, `image`
//! unpacks OCI image layouts, archives and (through `registry`) registry images into
//! the agent's image store, `rootfs` looks inside a root filesystem and mounts a task's
//! overlay of it.

pub mod image;
pub mod registry;
pub mod rootfs;
pub mod spec;
