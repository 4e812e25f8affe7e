//! What a task runs: the container (driver, image or rootfs, command, env).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{Path, ValidationErrors};

/// How the agent runs a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// A plain process in its own process group and sandbox directory.
    Process,
    /// An OCI container run by runc (rootfs directory or OCI image).
    Runc,
    /// A container run by a reachable Docker daemon.
    Docker,
}

impl Driver {
    /// The wire name (`process`, `runc`, `docker`).
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Process => "process",
            Driver::Runc => "runc",
            Driver::Docker => "docker",
        }
    }
}

/// The container of an App, Job template or Task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec {
    /// `process`, `runc` or `docker`; defaults to `process` without image/rootfs, else `runc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<Driver>,
    /// OCI image reference (registry, local OCI layout or tarball).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Root filesystem directory on the node (runc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// A shell command line, run with `/bin/sh -c` (Marathon's `cmd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// Executable and arguments, run without a shell (overrides the image entrypoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Arguments appended to `command` or the image entrypoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Environment variables added to `PORT0..n`, `PORT_<NAME>`, `HOST`, `TASK_ID`, `APP_ID`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory (default: the sandbox, or the image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ContainerSpec {
    /// True when the container brings its own filesystem (image or rootfs).
    pub fn has_filesystem(&self) -> bool {
        self.image.is_some() || self.rootfs.is_some()
    }

    /// The driver default: `process` without image/rootfs, else `runc`.
    pub fn apply_defaults(&mut self) {
        if self.driver.is_none() {
            self.driver = Some(if self.has_filesystem() {
                Driver::Runc
            } else {
                Driver::Process
            });
        }
    }

    /// Checks the container at `path`.
    pub fn validate_into(&self, path: &Path, errors: &mut ValidationErrors) {
        let has_command = !self.command.is_empty() || self.cmd.is_some();
        if !has_command && self.image.is_none() {
            errors.required(
                &path.child("command"),
                "a container needs a command (cmd or command) or an image",
            );
        }
        if self.cmd.is_some() && !self.command.is_empty() {
            errors.forbidden(&path.child("cmd"), "cmd and command are mutually exclusive");
        }
        if let Some(cmd) = &self.cmd {
            if cmd.trim().is_empty() {
                errors.invalid(&path.child("cmd"), "must not be empty");
            }
        }
        if self.command.first().is_some_and(|c| c.is_empty()) {
            errors.invalid(&path.child("command").index(0), "must not be empty");
        }
        if self.image.as_deref().is_some_and(str::is_empty) {
            errors.invalid(&path.child("image"), "must not be empty");
        }
        if self.rootfs.as_deref().is_some_and(str::is_empty) {
            errors.invalid(&path.child("rootfs"), "must not be empty");
        }
        if self.image.is_some() && self.rootfs.is_some() {
            errors.forbidden(
                &path.child("rootfs"),
                "image and rootfs are mutually exclusive",
            );
        }
        match self.driver {
            Some(Driver::Runc) if !self.has_filesystem() => errors.required(
                &path.child("image"),
                "driver runc needs an image or a rootfs",
            ),
            Some(Driver::Docker) if self.image.is_none() => {
                errors.required(&path.child("image"), "driver docker needs an image")
            }
            Some(Driver::Docker) if self.rootfs.is_some() => errors.forbidden(
                &path.child("rootfs"),
                "driver docker runs images, not a rootfs",
            ),
            Some(Driver::Process) if self.has_filesystem() => errors.forbidden(
                &path.child("driver"),
                "driver process cannot run an image or rootfs: use runc or docker",
            ),
            _ => {}
        }
        for name in self.env.keys() {
            if !is_env_name(name) {
                errors.invalid(
                    &path.child("env").key(name),
                    "a valid environment variable name must consist of alphabetic characters, \
                     digits, '_', '-', or '.', and must not start with a digit",
                );
            }
        }
        if let Some(dir) = &self.working_dir {
            if !dir.starts_with('/') {
                errors.invalid(&path.child("workingDir"), "must be an absolute path");
            }
        }
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == '-' || c == '.' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_defaults_to_process_without_filesystem_and_runc_with_one() {
        let mut c = ContainerSpec {
            cmd: Some("sleep 1".into()),
            ..Default::default()
        };
        c.apply_defaults();
        assert_eq!(c.driver, Some(Driver::Process));
        let mut c = ContainerSpec {
            image: Some("busybox".into()),
            ..Default::default()
        };
        c.apply_defaults();
        assert_eq!(c.driver, Some(Driver::Runc));
        let mut c = ContainerSpec {
            rootfs: Some("/srv/rootfs".into()),
            command: vec!["/bin/true".into()],
            ..Default::default()
        };
        c.apply_defaults();
        assert_eq!(c.driver, Some(Driver::Runc));
    }

    #[test]
    fn runc_without_image_or_rootfs_is_reported() {
        let c = ContainerSpec {
            driver: Some(Driver::Runc),
            cmd: Some("true".into()),
            ..Default::default()
        };
        let mut e = ValidationErrors::new();
        c.validate_into(&Path::root("spec").child("container"), &mut e);
        assert_eq!(
            e.to_string(),
            "spec.container.image: Required value: driver runc needs an image or a rootfs"
        );
    }
}
