//! A container's root filesystem on the host: commands and users looked up inside it
//! (symlinks resolved as the container will see them), and the per-task overlay whose
//! read-only lower layer is the shared rootfs (a copy where overlayfs is refused).

use std::path::{Path, PathBuf};

use crate::driver::DriverError;

use super::spec::User;

/// Unmounts `rootfs` if something is mounted there.
pub(crate) fn unmount_rootfs(rootfs: &Path) {
    if is_mountpoint(rootfs) {
        if let Err(error) = nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
            tracing::warn!(%error, path = %rootfs.display(), "unmounting a container rootfs");
        }
    }
}

fn is_mountpoint(path: &Path) -> bool {
    let Ok(canonical) = std::fs::canonicalize(path) else {
        return false;
    };
    let target = canonical.to_string_lossy().to_string();
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|t| {
        t.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| unescape_mount(m) == target)
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// A runtime error with a message a person reads.
pub(crate) fn runtime(msg: impl Into<String>) -> DriverError {
    DriverError::Runtime(msg.into())
}

/// Maps an I/O error on `path` while doing `what`.
pub(crate) fn sandbox_err(
    what: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> DriverError {
    let path = path.to_path_buf();
    move |source| DriverError::Sandbox { what, path, source }
}

/// The host path of `path` inside `root`, following symlinks as the container would
/// (absolute targets are relative to `root`; `..` stops at `root`).
fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut todo: std::collections::VecDeque<String> = path
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(str::to_string)
        .collect();
    let mut stack: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            stack.pop();
            continue;
        }
        let mut here = root.to_path_buf();
        here.extend(&stack);
        here.push(&part);
        let meta = std::fs::symlink_metadata(&here).ok()?;
        if meta.file_type().is_symlink() {
            hops += 1;
            if hops > 40 {
                return None;
            }
            let target = std::fs::read_link(&here).ok()?;
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                stack.clear();
            }
            for t in target
                .split('/')
                .rev()
                .filter(|s| !s.is_empty() && *s != ".")
            {
                todo.push_front(t.to_string());
            }
        } else {
            stack.push(part);
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&stack);
    Some(out)
}

/// Checks that argv[0] exists (as an executable file) inside `root`, searching `PATH`
/// when it has no `/`.
pub(crate) fn check_command(root: &Path, program: &str, path_var: &str) -> Result<(), DriverError> {
    let found = if program.contains('/') {
        resolve_in_root(root, program).filter(|p| p.is_file())
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .find_map(|d| resolve_in_root(root, &format!("{d}/{program}")).filter(|p| p.is_file()))
    };
    match found {
        Some(p) if is_executable(&p) => Ok(()),
        Some(_) => Err(DriverError::NotExecutable(format!(
            "{program} in the container's rootfs"
        ))),
        None => Err(DriverError::CommandNotFound(format!(
            "{program} (not in the container's rootfs {})",
            root.display()
        ))),
    }
}

/// `uid[:gid]` or a user name from the rootfs's `/etc/passwd` (gid: its group, or a
/// name from `/etc/group`).
pub(crate) fn parse_user(root: &Path, user: Option<&str>) -> Result<User, DriverError> {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Ok(User::default());
    };
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(resolve_in_root(root, file)?).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name) && f.len() >= 3).then(|| {
                let id = f[2].parse().ok()?;
                let gid = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
                Some((id, gid))
            })?
        })
    };
    let (uid, default_gid) = match u.parse::<u32>() {
        Ok(uid) => (uid, lookup_by_uid(root, uid).unwrap_or(uid)),
        Err(_) => lookup("/etc/passwd", u).ok_or_else(|| {
            runtime(format!(
                "container.user {u:?}: no such user in the container's /etc/passwd"
            ))
        })?,
    };
    let gid = match g {
        None => default_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("/etc/group", g).map(|(gid, _)| gid).ok_or_else(|| {
                runtime(format!(
                    "container.user {user:?}: no such group {g:?} in the container's /etc/group"
                ))
            })?,
        },
    };
    Ok(User { uid, gid })
}

fn lookup_by_uid(root: &Path, uid: u32) -> Option<u32> {
    let text = std::fs::read_to_string(resolve_in_root(root, "/etc/passwd")?).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.get(2)?.parse::<u32>().ok()? == uid).then(|| f.get(3)?.parse().ok())?
    })
}

/// Mounts `lower` read-only under an overlay at `rootfs` (writes go to `upper` in the
/// bundle); copies it when overlayfs refuses.
pub(crate) fn mount_rootfs(lower: &Path, bundle: &Path) -> Result<PathBuf, DriverError> {
    let rootfs = bundle.join("rootfs");
    let (upper, work) = (bundle.join("upper"), bundle.join("work"));
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d).map_err(sandbox_err("creating", d))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape_overlay(lower),
        escape_overlay(&upper),
        escape_overlay(&work)
    );
    match nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(data.as_str()),
    ) {
        Ok(()) => Ok(rootfs),
        Err(error) => {
            tracing::info!(%error, lower = %lower.display(), "overlayfs unavailable: copying the rootfs");
            copy_tree(lower, &rootfs).map_err(sandbox_err("copying the rootfs into", &rootfs))?;
            Ok(rootfs)
        }
    }
}

/// Overlay options separate with `,` and `:`: escape them (and `\`).
fn escape_overlay(p: &Path) -> String {
    let s = p.to_string_lossy();
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

/// Copies a tree, keeping symlinks, modes and (as root) owners.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            copy_tree(&src, &dst)?;
            std::fs::set_permissions(&dst, meta.permissions())?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else {
            continue;
        }
        let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// A regular file with an execute bit.
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::oci::spec::CONTAINER_PATH;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn rootfs(dir: &Path) -> std::io::Result<PathBuf> {
        let root = dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::create_dir_all(root.join("etc"))?;
        std::fs::write(root.join("bin/busybox"), "#!")?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )?;
        std::os::unix::fs::symlink("/bin/busybox", root.join("bin/sh"))?;
        std::os::unix::fs::symlink("busybox", root.join("bin/httpd"))?;
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\nwww:x:33:34::/:/bin/sh\n",
        )?;
        std::fs::write(root.join("etc/group"), "root:x:0:\nstaff:x:50:\n")?;
        Ok(root)
    }

    #[test]
    fn commands_are_looked_up_inside_the_rootfs() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = rootfs(dir.path())?;
        check_command(&root, "/bin/sh", CONTAINER_PATH)?;
        check_command(&root, "httpd", CONTAINER_PATH)?;
        let err = check_command(&root, "nginx", CONTAINER_PATH).err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(format!(
                "command not found: nginx (not in the container's rootfs {})",
                root.display()
            ))
        );
        // An absolute symlink resolves inside the rootfs, never on the host.
        std::os::unix::fs::symlink("/usr/bin/env", root.join("bin/hostenv"))?;
        assert!(check_command(&root, "/bin/hostenv", CONTAINER_PATH).is_err());
        Ok(())
    }

    #[test]
    fn users_are_numeric_or_looked_up() -> TestResult {
        let dir = tempfile::tempdir()?;
        let root = rootfs(dir.path())?;
        assert_eq!(parse_user(&root, None)?, User { uid: 0, gid: 0 });
        assert_eq!(parse_user(&root, Some("www"))?, User { uid: 33, gid: 34 });
        assert_eq!(parse_user(&root, Some("33"))?, User { uid: 33, gid: 34 });
        assert_eq!(
            parse_user(&root, Some("1000:1000"))?,
            User {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(
            parse_user(&root, Some("www:staff"))?,
            User { uid: 33, gid: 50 }
        );
        let err = parse_user(&root, Some("nobody"))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("container.user \"nobody\": no such user in the container's /etc/passwd")
        );
        Ok(())
    }
}
