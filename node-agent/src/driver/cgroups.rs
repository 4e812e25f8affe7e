//! Task cgroups, v1 and v2: create `drover/<name>` per task with its memory and cpu
//! limits, read its usage and OOM kills, remove it after the task.
//!
//! Where: under the agent's own cgroup of each hierarchy (`/proc/self/cgroup`), the way
//! runc resolves a *relative* `linux.cgroupsPath` under its own. So the runc driver
//! sets `linux.cgroupsPath` to [`relative_path`]`(&`[`cgroup_name`]`(launch))` — i.e.
//! `drover/<name>`, with no leading `/` — runs `runc run` through the shim with no
//! `cgroup_procs` (so runc starts in the agent's cgroups), and reads that cgroup with
//! `Layout::detect()?.task(&relative_path(&name))` → [`TaskCgroup::usage`],
//! [`TaskCgroup::oom_kills`]. The same reading code then serves both drivers.
//!
//! This machine is hybrid: v1 controllers under `/sys/fs/cgroup/<controller>` (cpu and
//! cpuacct may be one mount or two), v2 only when `/sys/fs/cgroup/cgroup.controllers`
//! exists. Where the host does not allow it (no cgroupfs, not root, read-only) the
//! task runs without limits: the caller warns once and says so in the Task's status.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use drover_api::resources::Resources;
use serde::{Deserialize, Serialize};

use super::Launch;

/// The CFS period drover uses (100 ms, the kernel's default).
pub const CFS_PERIOD_US: u64 = 100_000;

/// cgroup v1 (one hierarchy per controller) or v2 (one unified hierarchy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// Legacy / hybrid hierarchies.
    V1,
    /// Unified hierarchy.
    V2,
}

/// Why the host gives tasks no cgroups.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cgroup limits are not enforced: {0}")]
pub struct Unavailable(pub String);

/// Where this agent's task cgroups hang: the agent's own cgroup per controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// v1 or v2.
    pub version: Version,
    /// The agent's memory cgroup directory.
    pub memory: PathBuf,
    /// The agent's cpu cgroup directory.
    pub cpu: PathBuf,
    /// The agent's cpuacct cgroup directory (v2: the same as `cpu`).
    pub cpuacct: PathBuf,
}

/// Resource usage of a task, from its cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPU time used, user + system, in seconds.
    pub cpu_seconds: f64,
    /// Memory charged to it now, in bytes.
    pub memory_bytes: u64,
}

/// One task's cgroup: a directory per controller (v2: one for all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskCgroup {
    /// v1 or v2.
    pub version: Version,
    /// Memory controller directory.
    pub memory: PathBuf,
    /// cpu controller directory.
    pub cpu: PathBuf,
    /// cpuacct controller directory (v2: `cpu`).
    pub cpuacct: PathBuf,
}

/// The leaf name of a task's cgroup: its task id plus a stable hash of its sandbox, so
/// two agents on one machine (or two namespaces) running `web-0` never share one.
pub fn cgroup_name(launch: &Launch) -> String {
    let safe: String = launch
        .task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{safe}-{:08x}",
        fnv1a(launch.sandbox.as_os_str().as_encoded_bytes()) as u32
    )
}

/// `drover/<name>`: the cgroup path, relative to the agent's own cgroup (and runc's).
pub fn relative_path(name: &str) -> String {
    format!("drover/{name}")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Layout {
    /// The host's layout, detected once per process.
    pub fn detect() -> Result<Layout, Unavailable> {
        static LAYOUT: OnceLock<Result<Layout, Unavailable>> = OnceLock::new();
        LAYOUT
            .get_or_init(|| {
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| Unavailable(format!("reading /proc/self/mountinfo: {e}")))?;
                let own = std::fs::read_to_string("/proc/self/cgroup")
                    .map_err(|e| Unavailable(format!("reading /proc/self/cgroup: {e}")))?;
                let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").is_file();
                layout_from(&mountinfo, &own, unified)
            })
            .clone()
    }

    /// The cgroup at `relative` (e.g. `drover/web-0-1a2b3c4d`) under the agent's own.
    pub fn task(&self, relative: &str) -> TaskCgroup {
        let relative = relative.trim_start_matches('/');
        TaskCgroup {
            version: self.version,
            memory: self.memory.join(relative),
            cpu: self.cpu.join(relative),
            cpuacct: self.cpuacct.join(relative),
        }
    }
}

/// A layout from `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub fn layout_from(mountinfo: &str, own: &str, unified: bool) -> Result<Layout, Unavailable> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(parse_mount).collect();
    if unified {
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2" && m.point == Path::new("/sys/fs/cgroup"))
            .ok_or_else(|| Unavailable("no cgroup2 mount at /sys/fs/cgroup".into()))?;
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| Unavailable("no unified entry in /proc/self/cgroup".into()))?;
        let dir = mount.dir_of(path);
        return Ok(Layout {
            version: Version::V2,
            memory: dir.clone(),
            cpu: dir.clone(),
            cpuacct: dir,
        });
    }
    let dir = |controller: &str| -> Result<PathBuf, Unavailable> {
        let mount = mounts
            .iter()
            .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == controller))
            .ok_or_else(|| Unavailable(format!("no cgroup v1 {controller} hierarchy mounted")))?;
        let path = own
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == controller)
                    .then_some(path)
            })
            .unwrap_or("/");
        Ok(mount.dir_of(path))
    };
    Ok(Layout {
        version: Version::V1,
        memory: dir("memory")?,
        cpu: dir("cpu")?,
        cpuacct: dir("cpuacct")?,
    })
}

struct Mount {
    root: PathBuf,
    point: PathBuf,
    fstype: String,
    options: String,
}

impl Mount {
    /// The directory of cgroup `path` (as `/proc/self/cgroup` names it) in this mount.
    fn dir_of(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        let inside = path.strip_prefix(&self.root).unwrap_or(path);
        let inside = inside.strip_prefix("/").unwrap_or(inside);
        self.point.join(inside)
    }
}

/// `36 35 0:30 / /sys/fs/cgroup/memory rw,… shared:1 - cgroup cgroup rw,memory`.
fn parse_mount(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split_whitespace().collect();
    let mut right = right.split_whitespace();
    Some(Mount {
        root: PathBuf::from(unescape(left.get(3)?)),
        point: PathBuf::from(unescape(left.get(4)?)),
        fstype: right.next()?.to_string(),
        options: right.nth(1).unwrap_or_default().to_string(),
    })
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of `key N` in a flat-keyed cgroup file (`memory.events`,
/// `memory.oom_control`, `cpu.stat`).
pub fn flat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// OOM kills recorded in the cgroup directory `dir` (v2 `memory.events`, v1
/// `memory.oom_control`); None when it has neither.
pub fn oom_kills_in(dir: &Path) -> Option<u64> {
    ["memory.events", "memory.oom_control"]
        .iter()
        .find_map(|f| flat_key(&std::fs::read_to_string(dir.join(f)).ok()?, "oom_kill"))
}

/// Usage from whichever of these cgroup directories hold the files (v1: cpuacct and
/// memory are separate directories; v2: one). For the shim, which knows only them.
pub fn usage_in(dirs: &[&Path]) -> Option<Usage> {
    let read = |file: &str| {
        dirs.iter()
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
    };
    let cpu_seconds = match read("cpuacct.usage") {
        Some(ns) => ns.trim().parse::<u64>().ok()? as f64 / 1e9,
        None => flat_key(&read("cpu.stat")?, "usage_usec")? as f64 / 1e6,
    };
    let memory_bytes = read("memory.usage_in_bytes")
        .or_else(|| read("memory.current"))?
        .trim()
        .parse()
        .ok()?;
    Some(Usage {
        cpu_seconds,
        memory_bytes,
    })
}

/// v1 `cpu.cfs_quota_us` for `cpus` (at least 1 ms per period).
pub fn cfs_quota_us(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

/// v1 `cpu.shares` for `cpus` (1024 per cpu, at least 2).
pub fn cpu_shares(cpus: f64) -> u64 {
    ((cpus * 1024.0).round() as u64).max(2)
}

/// v2 `cpu.weight` for `cpus`: the shares mapped onto 1–10000 as runc does.
pub fn cpu_weight(cpus: f64) -> u64 {
    let shares = cpu_shares(cpus).min(262_144);
    (1 + ((shares - 2) * 9999) / 262_142).clamp(1, 10_000)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), Unavailable> {
    let path = dir.join(file);
    std::fs::write(&path, value)
        .map_err(|e| Unavailable(format!("writing {value} to {}: {e}", path.display())))
}

impl TaskCgroup {
    /// The distinct directories (v1 cpu and cpuacct may be one mount).
    fn dirs(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = vec![&self.memory, &self.cpu, &self.cpuacct];
        dirs.dedup();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// The `cgroup.procs` files a process writes its pid into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Creates the directories (an empty leftover of the same name is recreated, so its
    /// counters start at zero) and sets the limits of `resources`.
    pub fn create(&self, resources: &Resources) -> Result<(), Unavailable> {
        for dir in self.dirs() {
            let _ = std::fs::remove_dir(dir);
            if let Some(parent) = dir.parent() {
                if self.version == Version::V2 {
                    enable_controllers(parent)?;
                }
            }
            std::fs::create_dir_all(dir)
                .map_err(|e| Unavailable(format!("creating {}: {e}", dir.display())))?;
        }
        if let Some(mib) = resources.mem_mib.filter(|m| *m > 0) {
            let bytes = (mib as u64 * 1024 * 1024).to_string();
            match self.version {
                Version::V1 => {
                    write(&self.memory, "memory.limit_in_bytes", &bytes)?;
                    if self.memory.join("memory.memsw.limit_in_bytes").exists() {
                        // No swapping past the limit either (best effort: swap
                        // accounting may be off).
                        let _ = write(&self.memory, "memory.memsw.limit_in_bytes", &bytes);
                    }
                }
                Version::V2 => {
                    write(&self.memory, "memory.max", &bytes)?;
                    if self.memory.join("memory.swap.max").exists() {
                        let _ = write(&self.memory, "memory.swap.max", "0");
                    }
                }
            }
        }
        if let Some(cpus) = resources.cpus.filter(|c| c.is_finite() && *c > 0.0) {
            match self.version {
                Version::V1 => {
                    write(&self.cpu, "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                    write(
                        &self.cpu,
                        "cpu.cfs_quota_us",
                        &cfs_quota_us(cpus).to_string(),
                    )?;
                    write(&self.cpu, "cpu.shares", &cpu_shares(cpus).to_string())?;
                }
                Version::V2 => {
                    let max = format!("{} {CFS_PERIOD_US}", cfs_quota_us(cpus));
                    write(&self.cpu, "cpu.max", &max)?;
                    write(&self.cpu, "cpu.weight", &cpu_weight(cpus).to_string())?;
                }
            }
        }
        Ok(())
    }

    /// CPU seconds and memory bytes now; None when the cgroup cannot be read.
    pub fn usage(&self) -> Option<Usage> {
        let read = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file)).ok();
        match self.version {
            Version::V1 => {
                let ns: u64 = read(&self.cpuacct, "cpuacct.usage")?.trim().parse().ok()?;
                let mem = read(&self.memory, "memory.usage_in_bytes")?
                    .trim()
                    .parse()
                    .ok()?;
                Some(Usage {
                    cpu_seconds: ns as f64 / 1e9,
                    memory_bytes: mem,
                })
            }
            Version::V2 => {
                let usec = flat_key(&read(&self.cpu, "cpu.stat")?, "usage_usec")?;
                let mem = read(&self.memory, "memory.current")?.trim().parse().ok()?;
                Some(Usage {
                    cpu_seconds: usec as f64 / 1e6,
                    memory_bytes: mem,
                })
            }
        }
    }

    /// OOM kills in this cgroup so far.
    pub fn oom_kills(&self) -> Option<u64> {
        oom_kills_in(&self.memory)
    }

    /// Removes the directories once their processes are gone (retrying briefly: the
    /// shim leaves a moment after its task).
    pub async fn remove(&self) {
        for dir in self.dirs() {
            for attempt in 0..40 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(error) if attempt == 39 => {
                        tracing::warn!(%error, dir = %dir.display(), "removing a task cgroup")
                    }
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                }
            }
        }
    }
}

/// v2: a cgroup's children get memory and cpu only if it delegates them.
fn enable_controllers(dir: &Path) -> Result<(), Unavailable> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Unavailable(format!("creating {}: {e}", dir.display())))?;
    // The agent's own cgroup delegates to `drover`, which delegates to each task.
    for d in [dir.parent(), Some(dir)].into_iter().flatten() {
        let control = d.join("cgroup.subtree_control");
        if !control.is_file() {
            continue;
        }
        let enabled = std::fs::read_to_string(&control).unwrap_or_default();
        if ["memory", "cpu"]
            .iter()
            .all(|c| enabled.split_whitespace().any(|e| e == *c))
        {
            continue;
        }
        std::fs::write(&control, "+memory +cpu").map_err(|e| {
            Unavailable(format!(
                "enabling memory and cpu in {}: {e}",
                control.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
24 1 253:0 / / rw,relatime - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host_uses_v1_under_the_agents_own_cgroups() {
        let own = "4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let layout = layout_from(HYBRID_MOUNTINFO, own, false);
        assert_eq!(
            layout,
            Ok(Layout {
                version: Version::V1,
                memory: "/sys/fs/cgroup/memory/process_api/abc".into(),
                cpu: "/sys/fs/cgroup/cpu".into(),
                cpuacct: "/sys/fs/cgroup/cpuacct".into(),
            })
        );
        let task = layout.map(|l| l.task("drover/web-0-1")).ok();
        assert_eq!(
            task.as_ref().map(|t| t.procs_files()),
            Some(vec![
                PathBuf::from("/sys/fs/cgroup/cpu/drover/web-0-1/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/cpuacct/drover/web-0-1/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/drover/web-0-1/cgroup.procs"),
            ])
        );
    }

    #[test]
    fn combined_cpu_cpuacct_and_unified_hosts() {
        let mi = "31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  33 30 0:29 /docker/x /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let own = "5:cpu,cpuacct:/a\n4:memory:/docker/x/b\n";
        let l = layout_from(mi, own, false).ok();
        assert_eq!(
            l.as_ref().map(|l| l.cpu.clone()),
            Some("/sys/fs/cgroup/cpu,cpuacct/a".into())
        );
        assert_eq!(
            l.as_ref().map(|l| l.cpuacct.clone()),
            Some("/sys/fs/cgroup/cpu,cpuacct/a".into())
        );
        assert_eq!(l.map(|l| l.memory), Some("/sys/fs/cgroup/memory/b".into()));
        let v2 = "40 24 0:31 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = layout_from(v2, "0::/user.slice/agent\n", true).ok();
        assert_eq!(l.as_ref().map(|l| l.version), Some(Version::V2));
        assert_eq!(
            l.map(|l| l.memory),
            Some("/sys/fs/cgroup/user.slice/agent".into())
        );
        assert_eq!(
            layout_from("24 1 253:0 / / rw - ext4 /dev/vda rw\n", "", false),
            Err(Unavailable("no cgroup v1 memory hierarchy mounted".into()))
        );
    }

    #[test]
    fn cgroup_files_are_parsed() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(flat_key(oom_control, "oom_kill"), Some(2));
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(flat_key(events, "oom_kill"), Some(1));
        assert_eq!(flat_key(events, "oom"), Some(1));
        let stat = "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n";
        assert_eq!(flat_key(stat, "usage_usec"), Some(1_500_000));
        assert_eq!(flat_key(stat, "nr_periods"), None);
        assert_eq!(unescape("/a\\040b"), "/a b");
    }

    #[test]
    fn cpu_limits_follow_the_cpus() {
        assert_eq!(cfs_quota_us(0.5), 50_000);
        assert_eq!(cfs_quota_us(2.0), 200_000);
        assert_eq!(cfs_quota_us(0.001), 1000);
        assert_eq!(cpu_shares(1.0), 1024);
        assert_eq!(cpu_shares(0.001), 2);
        assert_eq!(cpu_weight(1.0), 39);
        assert_eq!(cpu_weight(0.001), 1);
    }

    #[test]
    fn names_are_unique_per_sandbox() {
        let a = Launch {
            task_id: "web-0".into(),
            sandbox: "/a/tasks/default_web-0/sandbox".into(),
            ..Default::default()
        };
        let b = Launch {
            sandbox: "/b/tasks/default_web-0/sandbox".into(),
            ..a.clone()
        };
        assert!(cgroup_name(&a).starts_with("web-0-"));
        assert_ne!(cgroup_name(&a), cgroup_name(&b));
        assert_eq!(cgroup_name(&a), cgroup_name(&a.clone()));
        assert_eq!(relative_path("x"), "drover/x");
    }

    #[test]
    fn usage_is_read_from_either_version() -> std::io::Result<()> {
        let (cpuacct, memory, v2) = (
            tempfile::tempdir()?,
            tempfile::tempdir()?,
            tempfile::tempdir()?,
        );
        std::fs::write(cpuacct.path().join("cpuacct.usage"), "2500000000\n")?;
        std::fs::write(memory.path().join("memory.usage_in_bytes"), "4096\n")?;
        let usage = usage_in(&[cpuacct.path(), memory.path()]);
        assert_eq!(
            usage,
            Some(Usage {
                cpu_seconds: 2.5,
                memory_bytes: 4096
            })
        );
        std::fs::write(
            v2.path().join("cpu.stat"),
            "usage_usec 1500000\nuser_usec 1\n",
        )?;
        std::fs::write(v2.path().join("memory.current"), "8192\n")?;
        assert_eq!(
            usage_in(&[v2.path()]),
            Some(Usage {
                cpu_seconds: 1.5,
                memory_bytes: 8192
            })
        );
        let task = TaskCgroup {
            version: Version::V2,
            memory: v2.path().into(),
            cpu: v2.path().into(),
            cpuacct: v2.path().into(),
        };
        assert_eq!(
            task.usage(),
            Some(Usage {
                cpu_seconds: 1.5,
                memory_bytes: 8192
            })
        );
        assert_eq!(usage_in(&[memory.path()]), None);
        Ok(())
    }

    #[test]
    fn oom_kills_are_read_from_either_version() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(oom_kills_in(dir.path()), None);
        std::fs::write(
            dir.path().join("memory.oom_control"),
            "oom_kill_disable 0\noom_kill 3\n",
        )?;
        assert_eq!(oom_kills_in(dir.path()), Some(3));
        std::fs::write(dir.path().join("memory.events"), "oom 1\noom_kill 1\n")?;
        assert_eq!(oom_kills_in(dir.path()), Some(1));
        Ok(())
    }
}
