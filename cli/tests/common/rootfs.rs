//! Root filesystems for runc tests, built by the test itself from busybox-static: a
//! directory with `bin/busybox` and its applets as symlinks, and an OCI image layout of
//! that directory (one gzipped layer).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's busybox-static puts the binary.
pub const BUSYBOX: &str = "/usr/bin/busybox";

const APPLETS: &[&str] = &[
    "sh", "httpd", "head", "tr", "sleep", "cat", "echo", "ls", "mkdir", "true", "false", "env",
    "id", "wget",
];

/// Fails (never skips) when runc or a static busybox is missing, or we are not root.
pub fn require_runc() {
    let runc = Command::new("sh")
        .args(["-c", "command -v runc"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let busybox_static = Command::new(BUSYBOX)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::read(BUSYBOX).is_ok_and(|b| is_static_elf(&b));
    assert!(
        runc && busybox_static,
        "the runc tests need runc and a static busybox: apt-get install runc busybox-static"
    );
    assert!(
        nix_is_root(),
        "the runc tests need root (runc creates namespaces and cgroups)"
    );
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A 64-bit ELF without a `PT_INTERP` program header (no dynamic loader needed, so it
/// runs alone in a rootfs).
fn is_static_elf(b: &[u8]) -> bool {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u64_at = |o: usize| {
        b.get(o..o + 8)
            .and_then(|s| <[u8; 8]>::try_from(s).ok())
            .map(u64::from_le_bytes)
    };
    if !b.starts_with(b"\x7fELF") || b.get(4) != Some(&2) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..usize::from(count)).all(|i| {
        let at = phoff as usize + i * usize::from(size);
        b.get(at..at + 4) != Some(&3u32.to_le_bytes()[..])
    })
}

/// `dir/rootfs`: `bin/busybox`, applet symlinks in `bin/`, `/etc/passwd`, `/etc/group`,
/// `/tmp` and `/www/index.html` ("hello from runc").
pub fn busybox_rootfs(dir: &Path) -> PathBuf {
    require_runc();
    let root = dir.join("rootfs");
    for d in ["bin", "etc", "tmp", "www", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("create rootfs dir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    std::fs::write(root.join("www/index.html"), "hello from runc\n").expect("index");
    root
}

/// An OCI image layout of `rootfs` at `dir/layout` tagged `tag`, with one gzipped layer
/// and a config whose Cmd serves `/www` with httpd on `$PORT0`.
pub fn oci_layout(rootfs: &Path, dir: &Path, tag: &str) -> PathBuf {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs dir");
    let layer = dir.join("layer.tar.gz");
    let status = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-czf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of the rootfs failed");
    let put = |path: &Path| -> (String, u64) {
        let hex = drover_agent::driver::oci::image::sha256_file(path).expect("hash a blob");
        std::fs::copy(path, blobs.join(&hex)).expect("copy a blob");
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        (format!("sha256:{hex}"), size)
    };
    let put_json = |name: &str, v: &serde_json::Value| -> (String, u64) {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).expect("write json");
        put(&p)
    };
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": ["exec httpd -f -p $PORT0 -h /www"],
            "Env": ["PATH=/bin", "FROM_IMAGE=yes"],
            "WorkingDir": "/www"
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let (config_digest, config_size) = put_json("config.json", &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config_size
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest, "size": layer_size
        }]
    });
    let (manifest_digest, manifest_size) = put_json("manifest.json", &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": tag}
        }]
    });
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    layout
}
