//! Scalar resources a task asks for (cpus, memMiB, diskMiB, gpus) and a quota counts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::{self, or_set};
use crate::validation::{Path, ValidationErrors};

/// Resources of one task (App/Job) or an amount of resources (Quota).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// CPU shares (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory in MiB.
    #[serde(rename = "memMiB", default, skip_serializing_if = "Option::is_none")]
    pub mem_mib: Option<i64>,
    /// Scratch disk in MiB.
    #[serde(rename = "diskMiB", default, skip_serializing_if = "Option::is_none")]
    pub disk_mib: Option<i64>,
    /// Whole GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<i32>,
}

impl Resources {
    /// Marathon's defaults for a task: 1 cpu, 128 MiB, no disk, no GPU.
    pub fn apply_task_defaults(&mut self) {
        or_set(&mut self.cpus, defaults::CPUS);
        or_set(&mut self.mem_mib, defaults::MEM_MIB);
        or_set(&mut self.disk_mib, defaults::DISK_MIB);
        or_set(&mut self.gpus, defaults::GPUS);
    }

    /// Checks the amounts at `path`; `cpus` must be > 0 when set (a task always needs
    /// some cpu), the others >= 0.
    pub fn validate_into(&self, path: &Path, errors: &mut ValidationErrors) {
        if let Some(cpus) = self.cpus {
            if !(cpus.is_finite() && cpus > 0.0) {
                errors.invalid(&path.child("cpus"), "must be > 0");
            }
        }
        self.validate_counts(path, errors);
    }

    /// Checks the amounts at `path` where zero cpus is allowed (quota, usage).
    pub fn validate_amounts_into(&self, path: &Path, errors: &mut ValidationErrors) {
        if let Some(cpus) = self.cpus {
            if !(cpus.is_finite() && cpus >= 0.0) {
                errors.invalid(&path.child("cpus"), "must be >= 0");
            }
        }
        self.validate_counts(path, errors);
    }

    fn validate_counts(&self, path: &Path, errors: &mut ValidationErrors) {
        if self.mem_mib.is_some_and(|m| m < 0) {
            errors.invalid(&path.child("memMiB"), "must be >= 0");
        }
        if self.disk_mib.is_some_and(|d| d < 0) {
            errors.invalid(&path.child("diskMiB"), "must be >= 0");
        }
        if self.gpus.is_some_and(|g| g < 0) {
            errors.invalid(&path.child("gpus"), "must be >= 0");
        }
    }
}
