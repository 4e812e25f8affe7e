//! Registry pulls end to end: a real registry (`docker-registry`) the test fills with
//! `skopeo`, `drover up` and a `drover agent` running runc Tasks whose image is
//! `127.0.0.1:PORT/busybox:1` — pulled once for three tasks, each serving HTTP and
//! healthy; a missing tag and an unreachable registry fail their task in words while
//! the others keep running.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::agents::{self, free_port, task_field};
use common::registry::Registry;
use common::rootfs::{busybox_rootfs, oci_layout};
use common::{wait_for, Cluster};

const ADMIN_TOKEN: &str = "admin-token-for-registry-test";
const AGENT_TOKEN: &str = "agent-token-for-reg-n1";

/// One cluster, one agent and their containers; torn down even on panic.
struct Env {
    agent: Option<Child>,
    agent_dir: tempfile::TempDir,
    files: tempfile::TempDir,
    c: Cluster,
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
        for id in self.runc(&["list", "-q"]).lines() {
            let _ = self.runc(&["kill", "--all", id, "KILL"]);
            for _ in 0..50 {
                if !self.runc(&["state", id]).contains("\"running\"") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.runc(&["delete", "--force", id]);
        }
        if let Ok(entries) = std::fs::read_dir(self.agent_dir.path().join("tasks")) {
            for e in entries.flatten() {
                let _ = Command::new("umount")
                    .arg("-l")
                    .arg(e.path().join("sandbox/bundle/rootfs"))
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

impl Env {
    fn start() -> Env {
        let dir = agents::data_dir_with_tokens(ADMIN_TOKEN, AGENT_TOKEN, "agent-n1", "n1");
        let files = tempfile::tempdir().expect("files dir");
        busybox_rootfs(files.path());
        let mut env = Env {
            agent: None,
            agent_dir: tempfile::tempdir().expect("agent dir"),
            files,
            c: Cluster::up_in(dir),
        };
        env.agent = Some(agents::spawn_agent(
            &env.c,
            AGENT_TOKEN,
            "n1",
            env.agent_dir.path(),
            &[],
        ));
        wait_for(
            || {
                let out = env.c.kubectl(&[
                    "get",
                    "nodes.drover.dev",
                    "n1",
                    "-o",
                    "jsonpath={.status.drivers[*].name}",
                ]);
                String::from_utf8_lossy(&out.stdout).contains("runc")
            },
            "node n1 to register and advertise runc",
        );
        env
    }

    /// runc's stdout (empty on failure).
    fn runc(&self, args: &[&str]) -> String {
        Command::new("runc")
            .arg("--root")
            .arg(self.agent_dir.path().join("runc"))
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn task(&self, name: &str, path: &str) -> String {
        task_field(&self.c, name, path)
    }

    /// A runc Task running `image` with httpd on its host port, HTTP-checked.
    fn apply_web(&self, name: &str, image: &str, port: u16) {
        let yaml = format!(
            "apiVersion: drover.dev/v1alpha1\nkind: Task\nmetadata:\n  name: {name}\nspec:\n  nodeName: n1\n  container:\n    driver: runc\n    image: {image}\n    cmd: \"exec busybox httpd -f -p $PORT0 -h /www\"\n  ports:\n    - name: http\n      hostPort: {port}\n  healthChecks:\n    - http:\n        portName: http\n        path: /index.html\n      delaySeconds: 0\n      intervalSeconds: 1\n      gracePeriodSeconds: 5\n  resources:\n    cpus: 0.1\n    memMiB: 64\n  killGracePeriodSeconds: 1\n"
        );
        let manifest = self.c.write(&format!("{name}.yaml"), &yaml);
        self.c.ok(&["apply", "-f", &manifest.display().to_string()]);
    }

    /// Waits for `phase`; panics with the task's message if it ends otherwise.
    fn wait_phase(&self, name: &str, phase: &str) {
        wait_for(
            || {
                let now = self.task(name, "{.status.phase}");
                assert!(
                    now == phase || !matches!(now.as_str(), "Failed" | "Finished" | "Killed"),
                    "task {name} ended {now} instead of {phase}: {}",
                    self.task(name, "{.status.message}")
                );
                now == phase
            },
            &format!("task {name} to be {phase}"),
        );
    }

    fn images(&self) -> PathBuf {
        self.agent_dir.path().join("images")
    }
}

/// The body of `GET path` on the port, if it answers 200.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1);
    (head.starts_with("HTTP/1.") && status == Some("200")).then(|| body.to_string())
}

#[test]
fn three_tasks_run_an_image_pulled_once_from_a_registry_and_bad_references_fail_in_words() {
    let registry = Registry::start();
    let env = Env::start();
    let layout = oci_layout(&env.files.path().join("rootfs"), env.files.path(), "1");
    registry.push(&layout, "1", "busybox:1");
    let image = format!("{}/busybox:1", registry.addr);

    // Three tasks starting together: one pull, three containers.
    let ports = [free_port(), free_port(), free_port()];
    let names = ["pulled-0", "pulled-1", "pulled-2"];
    for (name, port) in names.iter().zip(ports) {
        env.apply_web(name, &image, port);
    }
    for (name, port) in names.iter().zip(ports) {
        env.wait_phase(name, "Running");
        wait_for(
            || env.task(name, "{.status.healthy}") == "true",
            &format!("task {name} to be healthy"),
        );
        assert_eq!(
            http_get(port, "/index.html").as_deref(),
            Some("hello from runc\n"),
            "{name}"
        );
    }
    // The config and the one layer, each fetched once by drover.
    let gets = registry.blob_gets("busybox");
    assert_eq!(gets.len(), 2, "blob GETs:\n{}", gets.join("\n"));
    assert_ne!(gets[0].split('"').nth(1), gets[1].split('"').nth(1));
    // Unpacked once, by manifest digest, beside the content store.
    let unpacked: Vec<String> = std::fs::read_dir(env.images())
        .expect("the image store")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("sha256-"))
        .collect();
    assert_eq!(unpacked.len(), 1, "{unpacked:?}");
    let blobs = std::fs::read_dir(env.images().join("content/blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 3, "manifest, config and layer in the content store");

    // A tag the registry lacks.
    let nope = format!("{}/busybox:nope", registry.addr);
    env.apply_web("nope-0", &nope, free_port());
    env.wait_phase("nope-0", "Failed");
    assert_eq!(
        env.task("nope-0", "{.status.message}"),
        format!("image {nope} not found")
    );

    // A registry nobody serves.
    let dead = format!("127.0.0.1:{}", free_port());
    env.apply_web("dead-0", &format!("{dead}/busybox:1"), free_port());
    env.wait_phase("dead-0", "Failed");
    let msg = env.task("dead-0", "{.status.message}");
    assert!(
        msg.starts_with(&format!(
            "image {dead}/busybox:1: registry {dead} is unreachable"
        )),
        "{msg}"
    );

    // The others are untouched and still answer.
    for (name, port) in names.iter().zip(ports) {
        assert_eq!(env.task(name, "{.status.phase}"), "Running", "{name}");
        assert_eq!(
            http_get(port, "/index.html").as_deref(),
            Some("hello from runc\n"),
            "{name}"
        );
    }
    assert_eq!(registry.blob_gets("busybox").len(), 2);
}

/// Writes `bytes` as a blob of `layout`; returns (digest, size).
fn put_blob(layout: &std::path::Path, bytes: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, bytes).expect("write a blob");
    let hex = drover_agent::driver::oci::image::sha256_file(&tmp).expect("hash a blob");
    std::fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).expect("store a blob");
    (format!("sha256:{hex}"), bytes.len())
}

/// Adds to `layout` (as built by `oci_layout`, tagged `tag`) an image index tagged
/// `multi` listing an arm64 manifest first and the amd64 one second; returns the
/// amd64 manifest's digest.
fn add_multi_arch_index(layout: &std::path::Path, tag: &str) -> String {
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(layout.join("index.json")).expect("index.json"),
    )
    .expect("index.json is JSON");
    let amd64 = index["manifests"][0].clone();
    assert_eq!(
        amd64["annotations"]["org.opencontainers.image.ref.name"],
        tag
    );
    let amd64_digest = amd64["digest"].as_str().expect("a digest").to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(amd64_digest.trim_start_matches("sha256:")),
        )
        .expect("the amd64 manifest"),
    )
    .expect("manifest JSON");
    // The arm64 image: same layer, a config saying arm64 (whose Cmd would fail).
    let config = serde_json::json!({
        "architecture": "arm64", "os": "linux",
        "config": {"Cmd": ["/bin/false"]},
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let (config_digest, config_size) = put_blob(layout, config.to_string().as_bytes());
    let mut arm = manifest.clone();
    arm["config"]["digest"] = config_digest.into();
    arm["config"]["size"] = config_size.into();
    let (arm_digest, arm_size) = put_blob(layout, arm.to_string().as_bytes());
    let image_index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm_digest,
             "size": arm_size, "platform": {"architecture": "arm64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64_digest,
             "size": amd64["size"], "platform": {"architecture": "amd64", "os": "linux"}}
        ]
    });
    let (index_digest, index_size) = put_blob(layout, image_index.to_string().as_bytes());
    let mut top = index.clone();
    if let Some(list) = top["manifests"].as_array_mut() {
        list.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": index_digest, "size": index_size,
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }));
    }
    std::fs::write(layout.join("index.json"), top.to_string()).expect("index.json");
    amd64_digest
}

#[test]
fn the_image_store_picks_amd64_pulls_once_for_ten_and_refuses_a_corrupt_blob() {
    let registry = Registry::start();
    let files = tempfile::tempdir().expect("files dir");
    let rootfs = busybox_rootfs(files.path());
    let layout = oci_layout(&rootfs, files.path(), "1");
    let amd64 = add_multi_arch_index(&layout, "1");
    registry.push_with(&layout, "multi", "multi:1", &["--all"]);

    // Ten pulls at once of the index: one download, the linux/amd64 image.
    let store = drover_agent::driver::oci::image::ImageStore::new(files.path().join("images"));
    let reference = format!("{}/multi:1", registry.addr);
    let images: Vec<_> = std::thread::scope(|s| {
        let pulls: Vec<_> = (0..10)
            .map(|_| s.spawn(|| store.pull(&reference)))
            .collect();
        pulls
            .into_iter()
            .map(|p| p.join().expect("a pull thread"))
            .collect()
    });
    for image in &images {
        let image = image.as_ref().expect("the pull succeeds");
        assert_eq!(image.digest, amd64);
        assert_eq!(
            image.config.cmd.as_deref(),
            Some(&["exec httpd -f -p $PORT0 -h /www".to_string()][..])
        );
        assert!(image.rootfs.join("bin/busybox").is_file());
    }
    let gets = registry.blob_gets("multi");
    assert_eq!(gets.len(), 2, "blob GETs:\n{}", gets.join("\n"));

    // By digest too, without another download.
    let by_digest = format!("{}/multi@{amd64}", registry.addr);
    let image = store.pull(&by_digest).expect("a pull by digest");
    assert_eq!(image.digest, amd64);
    assert_eq!(registry.blob_gets("multi").len(), 2);

    // A registry serving a layer whose bytes do not match its digest: refused, and
    // nothing is unpacked or kept.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(amd64.trim_start_matches("sha256:")),
        )
        .expect("manifest"),
    )
    .expect("manifest JSON");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("a layer")
        .trim_start_matches("sha256:")
        .to_string();
    let stored = registry
        .data()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let len = std::fs::metadata(&stored)
        .expect("the registry's layer")
        .len();
    std::fs::write(&stored, vec![b'x'; usize::try_from(len).unwrap_or(1)]).expect("corrupt");
    let fresh = drover_agent::driver::oci::image::ImageStore::new(files.path().join("images2"));
    let msg = fresh
        .pull(&format!("{}/multi:1", registry.addr))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.contains(&format!("blob sha256:{layer} does not match its digest")),
        "{msg}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(files.path().join("images2"))
        .expect("the store")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "content")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let kept = files
        .path()
        .join("images2/content/blobs/sha256")
        .join(&layer);
    assert!(!kept.exists(), "a corrupt layer was kept");
}

#[test]
fn a_bad_registry_auth_file_stops_the_agent_at_start_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = dir.path().join("auth.json");
    std::fs::write(&auth, "{not json").expect("write auth file");
    let out = Command::new(env!("CARGO_BIN_EXE_drover"))
        .args(["agent", "--server", "https://127.0.0.1:1", "--token", "t"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--insecure-registry", "registry.lan:5000"])
        .arg("--registry-auth")
        .arg(&auth)
        .output()
        .expect("run drover agent");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "registry auth file {}: not a docker config.json",
            auth.display()
        )),
        "{stderr}"
    );
}

/// bcrypt (cost 4) of "secret", for the registry's htpasswd.
const SECRET_BCRYPT: &str = "$2b$04$39qPi1C6ANnWGJPa6qRE8.qMvRl6tsx.zBOuMAHy8zMdNQOpVZea6";

#[test]
fn a_registry_with_basic_auth_refuses_anonymous_pulls_and_takes_a_docker_config() {
    use drover_agent::driver::oci::image::ImageStore;
    use drover_agent::driver::oci::registry::RegistrySettings;
    let registry = Registry::with_htpasswd(&format!("drover:{SECRET_BCRYPT}"));
    let files = tempfile::tempdir().expect("files dir");
    let rootfs = busybox_rootfs(files.path());
    let layout = oci_layout(&rootfs, files.path(), "1");
    registry.push_with(
        &layout,
        "1",
        "private:1",
        &["--dest-creds", "drover:secret"],
    );
    let reference = format!("{}/private:1", registry.addr);

    let anonymous = ImageStore::new(files.path().join("images"));
    let msg = anonymous
        .pull(&reference)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        msg.starts_with(&format!(
            "image {reference}: registry {} refused access (unauthorized)",
            registry.addr
        )),
        "{msg}"
    );

    let config = files.path().join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths": {{"{}": {{"username": "drover", "password": "secret"}}}}}}"#,
            registry.addr
        ),
    )
    .expect("write config.json");
    let store = anonymous.with_registry(RegistrySettings {
        insecure: vec![],
        auth_file: Some(config),
    });
    let image = store.pull(&reference).expect("an authenticated pull");
    assert!(image.rootfs.join("bin/busybox").is_file());
}
