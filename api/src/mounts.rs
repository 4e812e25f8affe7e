//! Volumes an App or Job mounts: persistent local volumes, host paths or scratch space.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validation::{check_label, Path, ValidationErrors};

/// A persistent local volume (Mesos persistent volume): one `Volume` object per instance,
/// and the instance is always placed where its volume lives.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PersistentSource {
    /// Size in MiB reserved on the node's disk.
    #[serde(rename = "sizeMiB")]
    pub size_mib: i64,
}

/// One volume mounted into the task.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// Name (DNS-1123 label), unique within the App/Job.
    pub name: String,
    /// Where the volume appears inside the task (absolute path).
    pub mount_path: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// A persistent local volume of this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<PersistentSource>,
    /// A directory of the node (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
}

impl VolumeMount {
    /// True for a persistent local volume.
    pub fn is_persistent(&self) -> bool {
        self.persistent.is_some()
    }
}

/// Checks the mounts at `path`: unique names and mount paths, absolute paths, one source.
pub fn validate_mounts(mounts: &[VolumeMount], path: &Path, errors: &mut ValidationErrors) {
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let p = path.index(i);
        if m.name.is_empty() {
            errors.required(&p.child("name"), "");
        } else {
            check_label(errors, &p.child("name"), &m.name);
            if !names.insert(m.name.as_str()) {
                errors.duplicate(&p.child("name"), &m.name);
            }
        }
        if !m.mount_path.starts_with('/') {
            errors.invalid(&p.child("mountPath"), "must be an absolute path");
        } else if !paths.insert(m.mount_path.as_str()) {
            errors.duplicate(&p.child("mountPath"), &m.mount_path);
        }
        if m.persistent.is_some() && m.host_path.is_some() {
            errors.forbidden(
                &p.child("hostPath"),
                "persistent and hostPath are mutually exclusive",
            );
        }
        if let Some(src) = &m.persistent {
            if src.size_mib <= 0 {
                errors.invalid(&p.child("persistent").child("sizeMiB"), "must be > 0");
            }
        }
        if let Some(hp) = &m.host_path {
            if !hp.starts_with('/') {
                errors.invalid(&p.child("hostPath"), "must be an absolute path");
            }
        }
    }
}
