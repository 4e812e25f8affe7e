//! The runc driver: each task is an OCI container run by `runc run` in the foreground
//! under the task shim (runc stays the parent of the container's init, forwards
//! signals and exits with its status), so containers outlive the agent.
//!
//! The bundle lives in the task's sandbox (`bundle/config.json`, `bundle/rootfs`). The
//! root filesystem — a `container.rootfs` directory or an image unpacked by the image
//! store — is never written to: it is the read-only lower layer of an **overlay** mount
//! at `bundle/rootfs` whose upper layer is in the sandbox (so every task has its own
//! writes and shares the image's files). Where overlayfs is not available the rootfs is
//! **copied** instead (slower, but works on any filesystem). The mount is undone after
//! `runc delete`.
//!
//! The container id is `drover-<cgroup name>` (task id plus a hash of its sandbox, see
//! `cgroups::cgroup_name`), its cgroup `drover/<cgroup name>` relative to runc's own.
//! runc removes that cgroup the moment the container exits, so an OOM kill cannot be
//! read afterwards: on cgroup v1 the driver creates the memory cgroup itself and
//! subscribes to its OOM eventfd *before* runc starts the process; elsewhere (or if
//! that fails) it watches `runc events` and the cgroup's counter while it runs.
//!
//! Command lookup, users and the overlay are in `oci::rootfs`, `config.json` in
//! `oci::spec`, images in `oci::image`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drover_api::container::Driver as DriverKind;
use tokio::io::AsyncBufReadExt;
use tokio::task::JoinHandle;

use super::cgroups::{self, Layout, TaskCgroup};
use super::log_rotation::DEFAULT_LIMIT;
use super::oci::image::{Image, ImageConfig, ImageStore};
use super::oci::rootfs::{
    check_command, is_executable, mount_rootfs, parse_user, runtime, sandbox_err, unmount_rootfs,
};
use super::oci::spec::{Spec, SpecInput, VolumeMount, CONTAINER_PATH};
use super::process_group::{process_alive, signal_group};
use super::shim::{self, ShimHandle, ShimSpec};
use super::{Checkpointed, Driver, DriverError, Exit, Launch, Running};

const POLL: Duration = Duration::from_millis(50);
/// How long `runc run` may take to create the container.
const CREATE_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a start looks for runc's pid file.
const CREATE_POLL: Duration = Duration::from_millis(5);

/// `runc` on `PATH`, if any.
pub fn find_runc() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("runc"))
        .find(|p| is_executable(p))
}

/// True when this agent can run containers: `runc` on `PATH` and running as root.
pub fn available() -> bool {
    nix::unistd::geteuid().is_root() && find_runc().is_some()
}

/// runc's version (`1.1.5+ds1`), from `runc --version`.
pub fn version() -> Option<String> {
    let out = std::process::Command::new(find_runc()?)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next()?;
    first
        .strip_prefix("runc version ")
        .map(|v| v.trim().to_string())
}

/// Runs tasks as runc containers.
#[derive(Clone, Debug)]
pub struct RuncDriver {
    runc: PathBuf,
    /// `runc --root`: the agent's own state dir, so its containers are its own.
    root: PathBuf,
    images: ImageStore,
    /// `drover` (for `drover shim`); None runs runc as the agent's child.
    shim_exe: Option<PathBuf>,
}

impl RuncDriver {
    /// A driver keeping runc state in `<data_dir>/runc` and images in
    /// `<data_dir>/images`, using the `runc` found on `PATH` (or `/usr/sbin/runc`).
    pub fn new(data_dir: &Path) -> Self {
        RuncDriver {
            runc: find_runc().unwrap_or_else(|| PathBuf::from("/usr/sbin/runc")),
            root: data_dir.join("runc"),
            images: ImageStore::new(data_dir.join("images")),
            shim_exe: None,
        }
    }

    /// Runs `runc run` under `drover shim` (`exe` is the drover binary), so containers
    /// outlive the agent and their exit status is kept.
    pub fn with_shim(mut self, exe: PathBuf) -> Self {
        self.shim_exe = Some(exe);
        self
    }

    fn runc_cmd(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.runc);
        c.arg("--root").arg(&self.root);
        c
    }

    /// `runc state <id>`: (status, pid), None when runc does not know the container.
    fn state(&self, id: &str) -> Option<(String, i32)> {
        let out = self.runc_cmd().arg("state").arg(id).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let status = v.get("status")?.as_str()?.to_string();
        let pid = v.get("pid").and_then(|p| p.as_i64()).unwrap_or(0);
        Some((status, i32::try_from(pid).unwrap_or(0)))
    }

    fn ctx(&self, launch: &Launch) -> Ctx {
        let name = cgroups::cgroup_name(launch);
        Ctx {
            runc: self.runc.clone(),
            root: self.root.clone(),
            id: format!("drover-{name}"),
            cgroup: cgroups::relative_path(&name),
            bundle: launch.sandbox.join("bundle"),
        }
    }
}

/// What a running container's handle needs to manage it.
#[derive(Clone, Debug)]
struct Ctx {
    runc: PathBuf,
    root: PathBuf,
    id: String,
    cgroup: String,
    bundle: PathBuf,
}

impl Ctx {
    fn runc(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.runc);
        c.arg("--root")
            .arg(&self.root)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        c
    }

    fn task_cgroup(&self) -> Option<TaskCgroup> {
        Layout::detect().ok().map(|l| l.task(&self.cgroup))
    }

    /// `runc kill <id> <signal>`; false when runc refused (e.g. the container is gone).
    async fn kill(&self, signal: &str) -> bool {
        let out = self
            .runc()
            .args(["kill", "--all", &self.id, signal])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                let msg = String::from_utf8_lossy(&o.stderr);
                tracing::debug!(id = %self.id, signal, error = %msg.trim(), "runc kill");
                false
            }
            Err(error) => {
                tracing::warn!(id = %self.id, %error, "running runc kill");
                false
            }
        }
    }

    /// `runc delete --force`, then unmount the rootfs overlay.
    async fn cleanup(&self) {
        let out = self
            .runc()
            .args(["delete", "--force", &self.id])
            .output()
            .await;
        if let Ok(o) = out {
            if !o.status.success() {
                let msg = String::from_utf8_lossy(&o.stderr);
                if !msg.contains("does not exist") {
                    tracing::debug!(id = %self.id, error = %msg.trim(), "runc delete");
                }
            }
        }
        unmount_rootfs(&self.bundle.join("rootfs"));
        if let Some(cg) = self.task_cgroup() {
            cg.remove().await;
        }
    }
}

/// cgroup v1: registers an eventfd for OOM notifications of the task's memory cgroup
/// (`cgroup.event_control`), creating the cgroup first when `create` (runc then joins
/// it); a thread sets `oom` when the kernel reports one. The eventfd is also signalled
/// once when the cgroup is removed: a wake-up that finds the cgroup gone and counts 1 is
/// that, not an OOM. False when not v1 or not possible (then `runc events` and the
/// counter are watched instead).
fn subscribe_oom(cg: &TaskCgroup, create: bool, oom: Arc<AtomicBool>) -> bool {
    use std::os::fd::AsRawFd;
    if cg.version != cgroups::Version::V1 {
        return false;
    }
    let dir = cg.memory.clone();
    if create {
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::debug!(%error, dir = %dir.display(), "pre-creating a memory cgroup");
            return false;
        }
    }
    let subscribe = || -> std::io::Result<(nix::sys::eventfd::EventFd, std::fs::File)> {
        let control = std::fs::File::open(dir.join("memory.oom_control"))?;
        let efd = nix::sys::eventfd::EventFd::new().map_err(std::io::Error::from)?;
        let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
        std::fs::write(dir.join("cgroup.event_control"), line)?;
        Ok((efd, control))
    };
    let (efd, control) = match subscribe() {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, dir = %dir.display(), "subscribing to OOM notifications");
            return false;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("oom-watch".into())
        .spawn(move || {
            let _control = control;
            loop {
                match efd.read() {
                    Ok(n) if n > 1 || dir.exists() => {
                        oom.store(true, Ordering::SeqCst);
                        if !dir.exists() {
                            return;
                        }
                    }
                    _ => return,
                }
            }
        });
    spawned.is_ok()
}

/// The argv: `cmd` through `/bin/sh -c`; else `command` + `args`; else the image's
/// Entrypoint + (`args`, or the image's Cmd).
fn argv(launch: &Launch, image: &ImageConfig) -> Result<Vec<String>, DriverError> {
    let c = &launch.container;
    let argv: Vec<String> = match (&c.cmd, c.command.is_empty()) {
        (Some(cmd), _) => vec!["/bin/sh".into(), "-c".into(), cmd.clone()],
        (None, false) => c.command.iter().chain(c.args.iter()).cloned().collect(),
        (None, true) => {
            let entry = image.entrypoint.clone().unwrap_or_default();
            let rest = if c.args.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                c.args.clone()
            };
            entry.into_iter().chain(rest).collect()
        }
    };
    match argv.first() {
        Some(first) if !first.is_empty() => Ok(argv),
        _ => Err(DriverError::NoCommand),
    }
}

/// Everything done before `runc run`, blocking (image unpack, mounts, files). Returns
/// the CFS quota to set once the container runs (see `apply_cpu_quota`).
fn prepare(
    ctx: &Ctx,
    images: &ImageStore,
    runc_root: &Path,
    launch: &Launch,
) -> Result<Option<i64>, DriverError> {
    let c = &launch.container;
    let (lower, image): (PathBuf, Option<Image>) = match (&c.image, &c.rootfs) {
        (Some(reference), _) => {
            let image = images.pull(reference).map_err(|e| runtime(e.to_string()))?;
            (image.rootfs.clone(), Some(image))
        }
        (None, Some(rootfs)) => {
            let p = PathBuf::from(rootfs);
            if !p.is_absolute() {
                return Err(runtime(format!(
                    "container.rootfs {rootfs:?} must be an absolute path"
                )));
            }
            if !p.is_dir() {
                return Err(runtime(format!(
                    "container.rootfs {rootfs} does not exist (or is not a directory) on this node"
                )));
            }
            (p, None)
        }
        (None, None) => return Err(runtime("runc needs container.rootfs or container.image")),
    };
    let config = image.map(|i| i.config).unwrap_or_default();
    let args = argv(launch, &config)?;
    // The environment: the image's, then the task's (ours win).
    let mut env: BTreeMap<String, String> = config
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.extend(launch.environment());
    let path_var = env
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| CONTAINER_PATH.to_string());
    check_command(&lower, &args[0], &path_var)?;
    let user = parse_user(&lower, c.user.as_deref().or(config.user.as_deref()))?;
    let cwd = c
        .working_dir
        .clone()
        .or(config.working_dir.clone())
        .filter(|d| !d.is_empty());
    if let Some(dir) = &cwd {
        if !dir.starts_with('/') {
            return Err(runtime(format!(
                "container.workingDir {dir:?} must be an absolute path"
            )));
        }
    }
    let volumes = VolumeMount::of_launch(launch)?;
    // A container of the same id left by an earlier run of this task: gone first
    // (runc keeps a directory per container in its root; without one there is nothing
    // to delete, and a start spares a runc process).
    if runc_root.join(&ctx.id).exists() {
        let _ = std::process::Command::new(&ctx.runc)
            .arg("--root")
            .arg(runc_root)
            .args(["delete", "--force", &ctx.id])
            .stderr(std::process::Stdio::null())
            .status();
    }
    if ctx.bundle.exists() {
        unmount_rootfs(&ctx.bundle.join("rootfs"));
        std::fs::remove_dir_all(&ctx.bundle).map_err(sandbox_err("removing", &ctx.bundle))?;
    }
    std::fs::create_dir_all(runc_root).map_err(sandbox_err("creating", runc_root))?;
    let rootfs = mount_rootfs(&lower, &ctx.bundle)?;
    let hostname = launch.host.clone();
    let mut spec = Spec::build(&SpecInput {
        args,
        env,
        cwd,
        user,
        root: rootfs.to_string_lossy().to_string(),
        hostname,
        cgroup: ctx.cgroup.clone(),
        mem_mib: launch.resources.mem_mib,
        cpus: launch.resources.cpus,
        volumes,
    });
    // runc's own init runs in the container's cgroup once runc has set its limits: at
    // a small quota (0.01 cpu is 1 ms per 100 ms) its few ms of work would take
    // hundreds of ms. The quota is set when the container runs instead.
    let quota = spec
        .linux
        .resources
        .cpu
        .as_mut()
        .and_then(|c| c.quota.take());
    let path = ctx.bundle.join("config.json");
    let text = serde_json::to_vec_pretty(&spec)
        .map_err(|e| sandbox_err("encoding", &path)(std::io::Error::other(e)))?;
    std::fs::write(&path, text).map_err(sandbox_err("writing", &path))?;
    Ok(quota)
}

/// Sets the CFS quota of a container that runs (runc created its cgroup with the
/// period only); why not, if it could not be set.
fn apply_cpu_quota(ctx: &Ctx, quota: Option<i64>) -> Option<String> {
    let quota = quota?;
    let Some(cg) = ctx.task_cgroup() else {
        return Some(format!(
            "the CPU quota ({quota} us per {} us) is not enforced: no cgroup hierarchy found",
            cgroups::CFS_PERIOD_US
        ));
    };
    let (file, value) = match cg.version {
        cgroups::Version::V1 => ("cpu.cfs_quota_us", quota.to_string()),
        cgroups::Version::V2 => ("cpu.max", format!("{quota} {}", cgroups::CFS_PERIOD_US)),
    };
    let path = cg.cpu.join(file);
    match std::fs::write(&path, &value) {
        Ok(()) => None,
        Err(error) => {
            tracing::warn!(%error, file = %path.display(), "setting a container's CPU quota");
            Some(format!(
                "the CPU quota is not enforced: writing {value} to {}: {error}",
                path.display()
            ))
        }
    }
}

/// The last non-empty line of a file (runc's error, in the task's stderr).
fn last_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// runc's message from a runc log line (`time=… level=error msg="…"`), or the line.
fn runc_message(line: &str) -> String {
    match line.split_once("msg=\"") {
        Some((_, rest)) => rest.trim_end_matches('"').replace("\\\"", "\""),
        None => line.to_string(),
    }
}

#[async_trait::async_trait]
impl Driver for RuncDriver {
    fn name(&self) -> &'static str {
        "runc"
    }

    async fn start(&self, launch: &Launch) -> Result<Box<dyn Running>, DriverError> {
        if let Some(other) = launch.container.driver.filter(|d| *d != DriverKind::Runc) {
            return Err(DriverError::Unsupported(other.as_str().to_string()));
        }
        let ctx = self.ctx(launch);
        let sandbox = launch.sandbox.clone();
        let began = std::time::Instant::now();
        std::fs::create_dir_all(&sandbox).map_err(sandbox_err("creating", &sandbox))?;
        let quota = {
            let (ctx, images, root, launch) = (
                ctx.clone(),
                self.images.clone(),
                self.root.clone(),
                launch.clone(),
            );
            tokio::task::spawn_blocking(move || prepare(&ctx, &images, &root, &launch))
                .await
                .map_err(|e| runtime(format!("preparing the container: {e}")))??
        };
        // Starts are not queued: runc is CPU-bound, and on a shared machine fewer
        // runnable starts get a smaller share of it (measured: four at a time made
        // 100 starts 5× slower than all at once).
        let prepared = began.elapsed();
        // Subscribe to OOM notifications before the container's process exists: runc
        // removes the cgroup the moment the container exits, so reading its counter
        // afterwards is too late, and subscribing afterwards can miss a quick OOM.
        let oom = Arc::new(AtomicBool::new(false));
        let subscribed = ctx
            .task_cgroup()
            .is_some_and(|cg| subscribe_oom(&cg, true, oom.clone()));
        let pid_file = ctx.bundle.join("container.pid");
        let argv: Vec<String> = [
            self.runc.to_string_lossy().to_string(),
            "--root".into(),
            self.root.to_string_lossy().to_string(),
            "run".into(),
            "--bundle".into(),
            ctx.bundle.to_string_lossy().to_string(),
            "--pid-file".into(),
            pid_file.to_string_lossy().to_string(),
            "--no-new-keyring".into(),
            ctx.id.clone(),
        ]
        .into();
        let stderr = sandbox.join("stderr");
        let mut proc = match &self.shim_exe {
            Some(exe) => {
                let spec = ShimSpec {
                    argv: argv.clone(),
                    env: BTreeMap::from([(
                        "PATH".to_string(),
                        std::env::var("PATH").unwrap_or_else(|_| CONTAINER_PATH.into()),
                    )]),
                    cwd: ctx.bundle.clone(),
                    stdout: sandbox.join("stdout"),
                    stderr: stderr.clone(),
                    log_max_bytes: DEFAULT_LIMIT,
                    cgroup_procs: Vec::new(),
                    state_dir: shim::state_dir_for(&sandbox),
                };
                match shim::spawn(exe, &spec).await {
                    Ok(h) => Proc::Shim(h),
                    Err(e) => {
                        ctx.cleanup().await;
                        return Err(e);
                    }
                }
            }
            None => {
                let open = |p: &Path| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(p)
                        .map_err(sandbox_err("opening", p))
                };
                let mut cmd = tokio::process::Command::new(&argv[0]);
                cmd.args(&argv[1..])
                    .current_dir(&ctx.bundle)
                    .stdin(std::process::Stdio::null())
                    .stdout(open(&sandbox.join("stdout"))?)
                    .stderr(open(&stderr)?)
                    .process_group(0)
                    .kill_on_drop(false);
                let child = cmd.spawn().map_err(|source| DriverError::Spawn {
                    command: argv[0].clone(),
                    source,
                })?;
                Proc::Child(child)
            }
        };
        // runc writes the pid file once the container exists, before its process runs.
        let deadline = tokio::time::Instant::now() + CREATE_TIMEOUT;
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<i32>().ok())
            {
                break pid;
            }
            if let Some(exit) = proc.try_exit() {
                let why = last_line(&stderr)
                    .map(|l| runc_message(&l))
                    .unwrap_or_else(|| exit.describe());
                ctx.cleanup().await;
                return Err(runtime(format!(
                    "runc could not start the container: {why}"
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                ctx.kill("KILL").await;
                ctx.cleanup().await;
                return Err(runtime(format!(
                    "runc did not create the container within {}s",
                    CREATE_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(CREATE_POLL).await;
        };
        tracing::info!(
            task = %launch.task_id,
            id = %ctx.id,
            pid,
            prepare_ms = prepared.as_millis(),
            create_ms = (began.elapsed() - prepared).as_millis(),
            "container started"
        );
        let unenforced = apply_cpu_quota(&ctx, quota);
        let mut handle = RuncHandle::new(ctx, pid, proc, oom, subscribed);
        handle.limits_not_enforced = unenforced;
        Ok(Box::new(handle))
    }

    fn adopt_checkpointed(
        &self,
        checkpoint: &Checkpointed,
        launch: &Launch,
    ) -> Option<Box<dyn Running>> {
        let ctx = self.ctx(launch);
        let state_dir = shim::state_dir_for(&launch.sandbox);
        match self.state(&ctx.id) {
            Some((status, pid)) if pid == checkpoint.pid && status != "stopped" => {
                let proc = match shim::read_pid(&state_dir) {
                    Some(r) if shim::read_exit(&state_dir).is_none() => Proc::Shim(ShimHandle {
                        shim_pid: r.shim_pid,
                        task_pid: r.pid,
                        task_start_time: r.start_time,
                        state_dir,
                    }),
                    _ => Proc::Adopted,
                };
                tracing::info!(task = %launch.task_id, id = %ctx.id, pid, "container re-adopted");
                let oom = Arc::new(AtomicBool::new(false));
                let subscribed = ctx
                    .task_cgroup()
                    .is_some_and(|cg| subscribe_oom(&cg, false, oom.clone()));
                Some(Box::new(RuncHandle::new(ctx, pid, proc, oom, subscribed)))
            }
            _ => {
                // Gone (or stopped) meanwhile: its shim may have recorded how it ended
                // (if it was a container at all: a bundle says so).
                if !ctx.bundle.join("config.json").is_file() {
                    return None;
                }
                let Some(record) = shim::read_exit(&state_dir) else {
                    // Nothing to report: at least do not leave its rootfs mounted.
                    unmount_rootfs(&ctx.bundle.join("rootfs"));
                    return None;
                };
                let exit = container_exit(record.exit());
                tracing::info!(task = %launch.task_id, id = %ctx.id, how = %exit.describe(), "container ended while the agent was away");
                let oom = Arc::new(AtomicBool::new(record.oom_killed));
                let handle = RuncHandle::new(ctx, checkpoint.pid, Proc::Ended(exit), oom, false);
                Some(Box::new(handle))
            }
        }
    }
}

/// How the container's runc process is watched.
enum Proc {
    /// Under a shim (ours, or adopted): its `exit.json`.
    Shim(ShimHandle),
    /// runc is our child (no shim).
    Child(tokio::process::Child),
    /// Adopted without a shim record: poll `runc state`.
    Adopted,
    /// Already ended (adopted after the fact).
    Ended(Exit),
}

impl Proc {
    /// The exit, if runc has already exited.
    fn try_exit(&mut self) -> Option<Exit> {
        match self {
            Proc::Shim(h) => shim::read_exit(&h.state_dir).map(|r| r.exit()),
            Proc::Child(c) => c.try_wait().ok().flatten().map(Exit::from_status),
            Proc::Adopted => None,
            Proc::Ended(e) => Some(*e),
        }
    }
}

/// runc exits with 128+N when the container's init was killed by signal N.
fn container_exit(exit: Exit) -> Exit {
    match exit {
        Exit::Code(c) if (129..=159).contains(&c) => Exit::Signal(c - 128),
        other => other,
    }
}

/// A container started (or adopted) by the runc driver.
struct RuncHandle {
    ctx: Ctx,
    pid: i32,
    start_time: Option<u64>,
    proc: Proc,
    /// Set once the kernel OOM-killed something in the container.
    oom: Arc<AtomicBool>,
    watcher: JoinHandle<()>,
    ended: Option<Exit>,
    cgroup: Option<TaskCgroup>,
    /// The cgroup's OOM eventfd is watched (no `runc events` to wait for).
    subscribed: bool,
    /// Why a limit is not enforced, if one is not.
    limits_not_enforced: Option<String>,
}

impl Drop for RuncHandle {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl RuncHandle {
    /// `subscribed`: an OOM eventfd already watches the cgroup (then `runc events`, the
    /// fallback, is not needed).
    fn new(ctx: Ctx, pid: i32, proc: Proc, oom: Arc<AtomicBool>, subscribed: bool) -> Self {
        let cgroup = ctx.task_cgroup();
        let watcher = if matches!(proc, Proc::Ended(_)) || subscribed {
            tokio::spawn(async {})
        } else {
            tokio::spawn(watch_oom(ctx.clone(), cgroup.clone(), oom.clone()))
        };
        RuncHandle {
            start_time: shim::process_start_time(pid),
            ctx,
            pid,
            proc,
            oom,
            watcher,
            ended: None,
            cgroup,
            subscribed,
            limits_not_enforced: None,
        }
    }

    /// Until runc exits; then the container is deleted and its rootfs unmounted.
    async fn wait_runc(&mut self) -> Result<Exit, DriverError> {
        if let Some(exit) = self.ended {
            return Ok(exit);
        }
        let exit = match &mut self.proc {
            Proc::Shim(h) => {
                let record = shim::wait_exit(h).await;
                if record.oom_killed {
                    self.oom.store(true, Ordering::SeqCst);
                }
                record.exit()
            }
            Proc::Child(c) => {
                let pid = self.pid;
                c.wait()
                    .await
                    .map(Exit::from_status)
                    .map_err(|source| DriverError::Wait { pid, source })?
            }
            Proc::Adopted => {
                while process_alive(self.pid) {
                    tokio::time::sleep(POLL * 2).await;
                }
                Exit::Unknown
            }
            Proc::Ended(e) => *e,
        };
        let exit = container_exit(exit);
        // One last look before the cgroup goes (it usually has already).
        if let Some(cg) = &self.cgroup {
            if cg.oom_kills().unwrap_or(0) > 0 {
                self.oom.store(true, Ordering::SeqCst);
            }
        }
        // `runc events` reports an OOM just before the container dies: let it land.
        // (The eventfd of cgroup v1 has fired before the kill completes.)
        if !self.subscribed && !self.oom.load(Ordering::SeqCst) && exit == Exit::Signal(9) {
            let until = tokio::time::Instant::now() + Duration::from_millis(300);
            while !self.oom.load(Ordering::SeqCst) && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        self.watcher.abort();
        self.ctx.cleanup().await;
        self.ended = Some(exit);
        Ok(exit)
    }
}

/// Watches the container for OOM kills: `runc events` (which subscribes to the
/// kernel's OOM notifications) and the cgroup's counter, until aborted.
async fn watch_oom(ctx: Ctx, cgroup: Option<TaskCgroup>, oom: Arc<AtomicBool>) {
    let events = ctx
        .runc()
        .args(["events", "--interval", "1h", &ctx.id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn();
    let mut lines = match events {
        Ok(mut child) => {
            let out = child.stdout.take();
            // Keep the child with the reader (killed on drop when aborted).
            Some((child, out.map(|o| tokio::io::BufReader::new(o).lines())))
        }
        Err(error) => {
            tracing::warn!(%error, "running runc events");
            None
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let next_line = async {
            match &mut lines {
                Some((_, Some(l))) => l.next_line().await.ok().flatten(),
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            line = next_line => match line {
                Some(line) => {
                    let kind = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
                    if kind.as_deref() == Some("oom") {
                        tracing::info!(id = %ctx.id, "runc events: OOM");
                        oom.store(true, Ordering::SeqCst);
                    }
                }
                None => lines = None,
            },
            _ = tick.tick() => {
                if cgroup.as_ref().and_then(|c| c.oom_kills()).unwrap_or(0) > 0 {
                    oom.store(true, Ordering::SeqCst);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Running for RuncHandle {
    fn pid(&self) -> i32 {
        self.pid
    }

    async fn wait(&mut self) -> Result<Exit, DriverError> {
        self.wait_runc().await
    }

    async fn kill(&mut self, grace: Duration) -> Result<Exit, DriverError> {
        if let Some(exit) = self.ended {
            return Ok(exit);
        }
        let deadline = tokio::time::Instant::now() + grace;
        if !self.ctx.kill("TERM").await {
            // runc no longer knows it: signal the shim's group (runc), which forwards.
            if let Proc::Shim(h) = &self.proc {
                let _ = signal_group(h.task_pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        let exit = match tokio::time::timeout_at(deadline, self.wait_runc()).await {
            Ok(exit) => exit?,
            Err(_) => {
                self.ctx.kill("KILL").await;
                self.wait_runc().await?
            }
        };
        let exit = match exit {
            Exit::Unknown => Exit::Signal(15),
            e => e,
        };
        tracing::info!(id = %self.ctx.id, how = %exit.describe(), "container killed");
        Ok(exit)
    }

    fn container_id(&self) -> Option<String> {
        Some(self.ctx.id.clone())
    }

    fn shim_pid(&self) -> Option<i32> {
        match &self.proc {
            Proc::Shim(h) => Some(h.shim_pid),
            _ => None,
        }
    }

    fn start_time(&self) -> Option<u64> {
        self.start_time
    }

    fn usage(&self) -> Option<cgroups::Usage> {
        self.cgroup.as_ref().and_then(|c| c.usage())
    }

    fn oom_killed(&self) -> bool {
        self.oom.load(Ordering::SeqCst)
    }

    fn limits_not_enforced(&self) -> Option<String> {
        self.limits_not_enforced.clone()
    }

    fn exec_in(&self) -> Option<crate::health::InContainer> {
        // The task's directory (`<task-dir>/sandbox/bundle`'s grandparent): the agent's,
        // not mounted in the container.
        let scratch = self.ctx.bundle.parent().and_then(Path::parent)?;
        Some(crate::health::InContainer {
            runc: self.ctx.runc.clone(),
            root: self.ctx.root.clone(),
            id: self.ctx.id.clone(),
            scratch: scratch.to_path_buf(),
        })
    }
}

/// The drivers an agent with data directory `data_dir` runs: `process`, plus `runc`
/// (under the shim, which is this executable's `drover shim`) when runc is on `PATH`
/// and the agent runs as root — the same condition under which the Node advertises it.
pub fn agent_drivers(process: Arc<dyn Driver>, data_dir: &Path) -> Arc<dyn Driver> {
    let runc = available().then(|| {
        let mut d = RuncDriver::new(data_dir);
        if let Ok(exe) = std::env::current_exe() {
            d = d.with_shim(exe);
        }
        Arc::new(d) as Arc<dyn Driver>
    });
    Arc::new(super::Drivers { process, runc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::container::ContainerSpec;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn argv_prefers_the_task_then_the_image() -> TestResult {
        let image = ImageConfig {
            entrypoint: Some(vec!["/bin/app".into()]),
            cmd: Some(vec!["--default".into()]),
            ..Default::default()
        };
        let mut launch = Launch::default();
        assert_eq!(argv(&launch, &image)?, ["/bin/app", "--default"]);
        launch.container.args = vec!["--mine".into()];
        assert_eq!(argv(&launch, &image)?, ["/bin/app", "--mine"]);
        launch.container = ContainerSpec {
            cmd: Some("echo hi".into()),
            ..Default::default()
        };
        assert_eq!(argv(&launch, &image)?, ["/bin/sh", "-c", "echo hi"]);
        assert!(argv(&Launch::default(), &ImageConfig::default()).is_err());
        Ok(())
    }

    #[test]
    fn signal_exits_of_runc_map_to_signals() {
        assert_eq!(container_exit(Exit::Code(137)), Exit::Signal(9));
        assert_eq!(container_exit(Exit::Code(143)), Exit::Signal(15));
        assert_eq!(container_exit(Exit::Code(3)), Exit::Code(3));
        assert_eq!(
            runc_message(r#"time="x" level=error msg="exec failed: \"x\" not found""#),
            r#"exec failed: "x" not found"#
        );
    }

    #[tokio::test]
    async fn a_missing_rootfs_or_image_is_refused_before_runc_runs() -> TestResult {
        let dir = tempfile::tempdir()?;
        let d = RuncDriver::new(dir.path());
        let mut launch = Launch {
            task_id: "t".into(),
            sandbox: dir.path().join("tasks/default_t/sandbox"),
            container: ContainerSpec {
                driver: Some(DriverKind::Runc),
                cmd: Some("true".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let msg = |r: Result<Box<dyn Running>, DriverError>| r.err().map(|e| e.to_string());
        assert_eq!(
            msg(d.start(&launch).await).as_deref(),
            Some("runc needs container.rootfs or container.image")
        );
        launch.container.rootfs = Some("/no/such/rootfs".into());
        assert_eq!(
            msg(d.start(&launch).await).as_deref(),
            Some("container.rootfs /no/such/rootfs does not exist (or is not a directory) on this node")
        );
        launch.container.rootfs = None;
        // A registry nothing listens on (a port just freed): the start fails naming it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let image = format!("127.0.0.1:{port}/busybox:1");
        launch.container.image = Some(image.clone());
        let m = msg(d.start(&launch).await).unwrap_or_default();
        let want = format!("image {image}: registry 127.0.0.1:{port} is unreachable");
        assert!(m.starts_with(&want), "{m}");
        Ok(())
    }
}
