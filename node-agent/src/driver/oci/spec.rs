//! The subset of the OCI runtime spec (`config.json`, version 1.0.2) the runc driver
//! writes: our own serde structs rather than a crate, because we need a few dozen fields
//! and want every default spelled out here (they mirror `runc spec`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The runtime-spec version we write.
pub const OCI_VERSION: &str = "1.0.2";

/// `PATH` inside a container whose image names none.
pub const CONTAINER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// `1.0.2`.
    pub oci_version: String,
    /// What runs.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// The UTS hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Mounts, in order.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Linux specifics.
    pub linux: Linux,
}

/// `process`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// No terminal: stdout/stderr go to the shim's log files.
    #[serde(default)]
    pub terminal: bool,
    /// uid/gid.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// `K=V`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Absolute working directory inside the container.
    pub cwd: String,
    /// Capabilities (runc's defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    /// Resource limits.
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    /// `PR_SET_NO_NEW_PRIVS`.
    #[serde(default)]
    pub no_new_privileges: bool,
}

/// `process.user`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// `process.capabilities`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// `process.rlimits[]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// `root`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// Relative to the bundle, or absolute.
    pub path: String,
    /// Mounted read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// `mounts[]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Where, inside the container.
    pub destination: String,
    /// Filesystem type (`bind` for bind mounts).
    #[serde(rename = "type")]
    pub kind: String,
    /// Device, filesystem name or host path.
    pub source: String,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// Cgroup limits.
    pub resources: Resources,
    /// The cgroup (`drover/<name>`, relative to runc's own).
    pub cgroups_path: String,
    /// Namespaces to create.
    pub namespaces: Vec<Namespace>,
    /// Paths hidden from the container.
    #[serde(default)]
    pub masked_paths: Vec<String>,
    /// Paths made read-only.
    #[serde(default)]
    pub readonly_paths: Vec<String>,
}

/// `linux.namespaces[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// `pid`, `ipc`, `uts`, `mount`, `network`, …
    #[serde(rename = "type")]
    pub kind: String,
}

/// `linux.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Device rules (deny all; runc adds its default allow list).
    #[serde(default)]
    pub devices: Vec<DeviceRule>,
    /// Memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
}

/// `linux.resources.devices[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Allow or deny.
    pub allow: bool,
    /// `rwm`.
    pub access: String,
}

/// `linux.resources.memory`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Bytes.
    pub limit: i64,
    /// Memory + swap in bytes (= limit: no swap, so the limit really OOM-kills).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<i64>,
}

/// `linux.resources.cpu`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// Relative weight (1024 per cpu, as Marathon/Mesos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    /// Microseconds per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    /// Period in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
}

/// A task's volume as the container sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    /// Host path.
    pub host_path: String,
    /// Path inside the container.
    pub mount_path: String,
    /// Read-only bind.
    pub read_only: bool,
}

impl VolumeMount {
    /// The task's volumes as bind mounts, each checked: a host path on this node that
    /// exists, an absolute mountPath. Errors name the volume by index and name.
    pub fn of_launch(
        launch: &crate::driver::Launch,
    ) -> Result<Vec<VolumeMount>, crate::driver::DriverError> {
        use crate::driver::oci::rootfs::runtime;
        let mut out = Vec::new();
        for (i, v) in launch.volumes.iter().enumerate() {
            let Some(host) = v.host_path.as_deref().filter(|h| !h.is_empty()) else {
                return Err(runtime(format!(
                    "volumes[{i}] ({}): no host path on this node",
                    v.name
                )));
            };
            if !std::path::Path::new(host).exists() {
                return Err(runtime(format!(
                    "volumes[{i}] ({}): host path {host} does not exist",
                    v.name
                )));
            }
            if !v.mount_path.starts_with('/') {
                return Err(runtime(format!(
                    "volumes[{i}] ({}): mountPath {:?} must be an absolute path",
                    v.name, v.mount_path
                )));
            }
            out.push(VolumeMount {
                host_path: host.to_string(),
                mount_path: v.mount_path.clone(),
                read_only: v.read_only.unwrap_or(false),
            });
        }
        Ok(out)
    }
}

/// What varies per task; everything else is the fixed default below.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpecInput {
    /// argv.
    pub args: Vec<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Working directory (default `/`).
    pub cwd: Option<String>,
    /// uid/gid.
    pub user: User,
    /// Root filesystem path (absolute, or relative to the bundle).
    pub root: String,
    /// Hostname.
    pub hostname: String,
    /// `linux.cgroupsPath`: `drover/<name>`, relative, so runc puts it under its own
    /// cgroup (see `cgroups.rs`).
    pub cgroup: String,
    /// Memory limit in MiB.
    pub mem_mib: Option<i64>,
    /// CPUs (fractions allowed).
    pub cpus: Option<f64>,
    /// Volumes.
    pub volumes: Vec<VolumeMount>,
}

/// The CFS period we use (100 ms, the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// runc's default capabilities (`runc spec`).
const DEFAULT_CAPS: &[&str] = &["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

/// runc's default masked paths.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// runc's default read-only paths.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.into(),
        kind: kind.into(),
        source: source.into(),
        options: options.iter().map(|s| s.to_string()).collect(),
    }
}

/// The standard mounts (`runc spec`'s, minus the cgroup fs, plus a `/tmp` tmpfs), then
/// `/etc/resolv.conf` and `/etc/hosts` from the host when it has them (host networking:
/// the container resolves names like the host), then the task's volumes.
fn mounts(volumes: &[VolumeMount]) -> Vec<Mount> {
    let mut m = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"]),
    ];
    for file in ["/etc/resolv.conf", "/etc/hosts"] {
        if Path::new(file).is_file() {
            m.push(mount(file, "bind", file, &["rbind", "ro"]));
        }
    }
    for v in volumes {
        let mode = if v.read_only { "ro" } else { "rw" };
        m.push(mount(&v.mount_path, "bind", &v.host_path, &["rbind", mode]));
    }
    m
}

/// The resources of `memMiB` and `cpus`: memory limit (and memory+swap, so it cannot
/// swap instead of being OOM-killed); cpu shares 1024 per cpu and a CFS quota of `cpus`
/// per 100 ms period.
fn resources(mem_mib: Option<i64>, cpus: Option<f64>) -> Resources {
    let memory = mem_mib.filter(|m| *m > 0).map(|m| Memory {
        limit: m * 1024 * 1024,
        swap: Some(m * 1024 * 1024),
    });
    let cpu = cpus.filter(|c| *c > 0.0 && c.is_finite()).map(|c| Cpu {
        shares: Some(((c * 1024.0).round() as u64).max(2)),
        quota: Some(((c * CPU_PERIOD_US as f64).round() as i64).max(1000)),
        period: Some(CPU_PERIOD_US),
    });
    Resources {
        devices: vec![DeviceRule {
            allow: false,
            access: "rwm".into(),
        }],
        memory,
        cpu,
    }
}

impl Spec {
    /// The `config.json` for one task.
    pub fn build(input: &SpecInput) -> Spec {
        let caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        let mut env = input.env.clone();
        env.entry("PATH".into())
            .or_insert_with(|| CONTAINER_PATH.into());
        Spec {
            oci_version: OCI_VERSION.into(),
            process: Process {
                terminal: false,
                user: input.user,
                args: input.args.clone(),
                env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                cwd: input.cwd.clone().unwrap_or_else(|| "/".into()),
                capabilities: Some(Capabilities {
                    bounding: caps.clone(),
                    effective: caps.clone(),
                    permitted: caps.clone(),
                    ambient: caps,
                }),
                rlimits: vec![Rlimit {
                    kind: "RLIMIT_NOFILE".into(),
                    hard: 1024,
                    soft: 1024,
                }],
                no_new_privileges: true,
            },
            root: Root {
                path: input.root.clone(),
                readonly: false,
            },
            hostname: Some(input.hostname.clone()),
            mounts: mounts(&input.volumes),
            linux: Linux {
                resources: resources(input.mem_mib, input.cpus),
                cgroups_path: input.cgroup.clone(),
                // No network namespace: host networking, so a task's host port is
                // the port it listens on.
                namespaces: ["pid", "ipc", "uts", "mount"]
                    .iter()
                    .map(|k| Namespace {
                        kind: k.to_string(),
                    })
                    .collect(),
                masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_spec_has_limits_mounts_and_no_network_namespace() {
        let input = SpecInput {
            args: vec!["busybox".into(), "httpd".into()],
            env: BTreeMap::from([("PORT0".into(), "31000".into())]),
            root: "/images/x/rootfs".into(),
            hostname: "h1".into(),
            cgroup: "drover/web-1a2b3c4d".into(),
            mem_mib: Some(32),
            cpus: Some(0.5),
            volumes: vec![VolumeMount {
                host_path: "/srv/data".into(),
                mount_path: "/data".into(),
                read_only: true,
            }],
            ..Default::default()
        };
        let spec = Spec::build(&input);
        let json = serde_json::to_value(&spec).unwrap_or_default();
        assert_eq!(json["ociVersion"], "1.0.2");
        assert_eq!(json["root"]["readonly"], false);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["cwd"], "/");
        assert_eq!(json["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        assert_eq!(json["linux"]["cgroupsPath"], "drover/web-1a2b3c4d");
        assert_eq!(
            json["linux"]["resources"]["memory"]["limit"],
            32 * 1024 * 1024
        );
        assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["resources"]["cpu"]["period"], 100_000);
        let env = &spec.process.env;
        assert!(env.contains(&"PORT0=31000".to_string()), "{env:?}");
        assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
        let kinds: Vec<&str> = spec
            .linux
            .namespaces
            .iter()
            .map(|n| n.kind.as_str())
            .collect();
        assert_eq!(kinds, ["pid", "ipc", "uts", "mount"]);
        let data = spec.mounts.iter().find(|m| m.destination == "/data");
        assert_eq!(
            data.map(|m| (m.source.as_str(), m.options.clone())),
            Some(("/srv/data", vec!["rbind".to_string(), "ro".to_string()]))
        );
        let sys = spec.mounts.iter().find(|m| m.destination == "/sys");
        assert!(sys.is_some_and(|m| m.options.contains(&"ro".to_string())));
        // Round-trips through our own structs.
        let back: Spec = serde_json::from_value(json).unwrap_or_else(|_| spec.clone());
        assert_eq!(back, spec);
    }

    #[test]
    fn without_resources_there_are_no_limits() {
        let spec = Spec::build(&SpecInput::default());
        assert_eq!(spec.linux.resources.memory, None);
        assert_eq!(spec.linux.resources.cpu, None);
    }
}
