//! The default values of DESIGN.md §2 (Marathon / Chronos anchors) and the
//! `Defaulting` trait every kind implements in its own module.

/// Fills unset fields with their defaults. Idempotent: applying twice changes nothing.
pub trait Defaulting {
    /// Sets every unset defaultable field.
    fn apply_defaults(&mut self);
}

/// `App.spec.instances`.
pub const INSTANCES: i32 = 1;
/// Role used when none is given (Mesos' default role).
pub const ROLE: &str = "*";
/// `killGracePeriodSeconds`: SIGTERM, wait this long, then SIGKILL.
pub const KILL_GRACE_PERIOD_SECONDS: i64 = 30;

/// Health check `delaySeconds`.
pub const HEALTH_DELAY_SECONDS: i64 = 15;
/// Health check `intervalSeconds`.
pub const HEALTH_INTERVAL_SECONDS: i64 = 10;
/// Health check `timeoutSeconds`.
pub const HEALTH_TIMEOUT_SECONDS: i64 = 20;
/// Health check `gracePeriodSeconds`.
pub const HEALTH_GRACE_PERIOD_SECONDS: i64 = 10;
/// Health check `maxConsecutiveFailures` (0 = never kill).
pub const HEALTH_MAX_CONSECUTIVE_FAILURES: i32 = 3;
/// HTTP health check `path`.
pub const HEALTH_HTTP_PATH: &str = "/";

/// `upgradeStrategy.minimumHealthCapacity`.
pub const MINIMUM_HEALTH_CAPACITY: f64 = 1.0;
/// `upgradeStrategy.maximumOverCapacity`.
pub const MAXIMUM_OVER_CAPACITY: f64 = 1.0;
/// `upgradeStrategy.minimumHealthCapacity` for Apps with persistent volumes (Marathon's
/// resident default: a replacement needs the old instance's volume, so it cannot overlap).
pub const RESIDENT_MINIMUM_HEALTH_CAPACITY: f64 = 0.5;
/// `upgradeStrategy.maximumOverCapacity` for Apps with persistent volumes.
pub const RESIDENT_MAXIMUM_OVER_CAPACITY: f64 = 0.0;
/// `upgradeStrategy.progressDeadlineSeconds`.
pub const PROGRESS_DEADLINE_SECONDS: i64 = 600;
/// `upgradeStrategy.autoRollback`.
pub const AUTO_ROLLBACK: bool = true;

/// `backoff.seconds`.
pub const BACKOFF_SECONDS: f64 = 1.0;
/// `backoff.factor`.
pub const BACKOFF_FACTOR: f64 = 1.15;
/// `backoff.maxLaunchDelaySeconds`.
pub const BACKOFF_MAX_LAUNCH_DELAY_SECONDS: i64 = 300;

/// Marathon's default `cpus`.
pub const CPUS: f64 = 1.0;
/// Marathon's default `mem` (MiB).
pub const MEM_MIB: i64 = 128;
/// Default `diskMiB`.
pub const DISK_MIB: i64 = 0;
/// Default `gpus`.
pub const GPUS: i32 = 0;

/// `Job.spec.retries` (Chronos).
pub const JOB_RETRIES: i32 = 2;
/// `Job.spec.parallelism`.
pub const JOB_PARALLELISM: i32 = 1;
/// `Job.spec.completions`.
pub const JOB_COMPLETIONS: i32 = 1;
/// `Job.spec.successfulRunsHistoryLimit`.
pub const JOB_SUCCESSFUL_RUNS_HISTORY_LIMIT: i32 = 3;
/// `Job.spec.failedRunsHistoryLimit`.
pub const JOB_FAILED_RUNS_HISTORY_LIMIT: i32 = 1;
/// `Job.spec.timeZone` when a schedule is set without one.
pub const JOB_TIME_ZONE: &str = "UTC";

/// First port of a Node's default host port range.
pub const NODE_PORT_RANGE_BEGIN: i32 = 31000;
/// Last port (inclusive) of a Node's default host port range.
pub const NODE_PORT_RANGE_END: i32 = 32000;

/// `Framework.spec.weight`.
pub const FRAMEWORK_WEIGHT: f64 = 1.0;

/// Sets `slot` to `value` when unset.
pub(crate) fn or_set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}
