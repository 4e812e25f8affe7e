//! Registry pulls: an image named like `127.0.0.1:5000/busybox:1`,
//! `registry.example/ns/app@sha256:…` or `busybox` (Docker Hub's
//! `library/busybox:latest`) is fetched through the distribution API into the image
//! store's content store (`<data-dir>/images/content/blobs/sha256/<hex>`), then unpacked
//! from there exactly like a local OCI layout — so every blob is checked against its
//! digest twice (on download, and again before unpacking) and an image is unpacked once
//! per manifest digest.
//!
//! The wire protocol is `oci-client`'s (anonymous pulls, the bearer-token challenge
//! flow, basic credentials); it runs on the workspace's reqwest/rustls with the ring
//! provider, so no second TLS stack comes in. We only pick the scheme (plain HTTP for
//! loopback registries and `--insecure-registry` hosts, as Docker does), the platform
//! (linux/amd64) and the credentials, and turn its errors into sentences.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::image::{
    blob_rel, pick_platform, sha256_file, ImageError, Index, Manifest, INDEX_TYPES,
};

/// The content store's directory under the image store: an OCI layout's `blobs/`.
pub const CONTENT_DIR: &str = "content";

/// Manifest media types we accept (an image manifest or an index of them).
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How this node reaches registries (`drover agent --insecure-registry`,
/// `--registry-auth`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistrySettings {
    /// Registries (`HOST:PORT`, or `HOST` for any port) spoken to over plain HTTP,
    /// besides loopback ones.
    pub insecure: Vec<String>,
    /// A docker `config.json` (`{"auths": {"HOST": {"auth": "base64(user:pass)"}}}`)
    /// with basic credentials per registry.
    pub auth_file: Option<PathBuf>,
}

static AGENT_SETTINGS: OnceLock<RegistrySettings> = OnceLock::new();

/// Sets this process's registry settings (the agent's flags), used by every image store
/// created afterwards. Returns false if they were already set.
pub fn configure(settings: RegistrySettings) -> bool {
    AGENT_SETTINGS.set(settings).is_ok()
}

/// This process's registry settings (defaults when [`configure`] was never called).
pub fn configured() -> RegistrySettings {
    AGENT_SETTINGS.get().cloned().unwrap_or_default()
}

/// Whether `registry` (`HOST[:PORT]`) is spoken to over plain HTTP: loopback hosts
/// (127.0.0.0/8, ::1, `localhost`) always, others when listed in `insecure`.
pub fn is_insecure(registry: &str, insecure: &[String]) -> bool {
    let host = host_of(registry);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || insecure
            .iter()
            .any(|i| i.eq_ignore_ascii_case(registry) || i.eq_ignore_ascii_case(host))
}

/// The host of `HOST[:PORT]` or `[V6]:PORT`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://index.docker.io/v1/` → `docker.io`; `https://host:5000/x` → `host:5000`.
fn auth_key(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

impl RegistrySettings {
    /// Checks the auth file is readable and well-formed (at agent start).
    pub fn validate(&self) -> Result<(), String> {
        self.auth_for("docker.io").map(|_| ())
    }

    /// The credentials for `registry` from the auth file, else anonymous.
    fn auth_for(&self, registry: &str) -> Result<RegistryAuth, String> {
        let Some(path) = &self.auth_file else {
            return Ok(RegistryAuth::Anonymous);
        };
        let bad = |why: String| format!("registry auth file {}: {why}", path.display());
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let config: DockerConfig = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("not a docker config.json: {e}")))?;
        let wanted = auth_key(registry);
        let Some((key, entry)) = config.auths.iter().find(|(k, _)| auth_key(k) == wanted) else {
            return Ok(RegistryAuth::Anonymous);
        };
        if let (Some(user), Some(pass)) = (&entry.username, &entry.password) {
            return Ok(RegistryAuth::Basic(user.clone(), pass.clone()));
        }
        let Some(auth) = &entry.auth else {
            return Ok(RegistryAuth::Anonymous);
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad(format!("auths.{key:?}.auth is not base64 of USER:PASSWORD")))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| bad(format!("auths.{key:?}.auth is not base64 of USER:PASSWORD")))?;
        Ok(RegistryAuth::Basic(user.into(), pass.into()))
    }
}

/// Parses a registry reference (`busybox` → `docker.io/library/busybox:latest`).
pub fn parse(reference: &str) -> Result<Reference, ImageError> {
    Reference::try_from(reference).map_err(|e| ImageError::Invalid {
        reference: reference.into(),
        message: format!(
            "not an image reference ({e}): expected [REGISTRY/]REPOSITORY[:TAG][@DIGEST], \
             oci:PATH[:TAG] or oci-archive:PATH"
        ),
    })
}

/// The lock that makes concurrent pulls of one reference a single pull: the first
/// downloads and unpacks, the others wait and then find it done.
pub fn flight(reference: &Reference) -> Arc<Mutex<()>> {
    static FLIGHTS: OnceLock<Mutex<HashMap<String, Arc<Mutex<()>>>>> = OnceLock::new();
    let mut map = FLIGHTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    map.entry(reference.whole()).or_default().clone()
}

/// Resolves `image` to its linux/amd64 manifest digest and, unless `unpacked(digest)`
/// says the image is already there, downloads the manifest, config and layers into the
/// content store under `content`. Blocking (runs its own small runtime on a thread of
/// its own, so it is safe from any context).
pub fn fetch(
    settings: &RegistrySettings,
    name: &str,
    image: &Reference,
    content: &Path,
    unpacked: &(dyn Fn(&str) -> bool + Sync),
) -> Result<String, ImageError> {
    let span = tracing::info_span!("pull", image = %name, registry = %image.registry());
    let run = || {
        let _entered = span.enter();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ImageError::Registry {
                reference: format!("{name} (no async runtime: {e})"),
            })?;
        rt.block_on(async {
            let fetcher = Fetcher::new(settings, name, image, content)?;
            let (digest, manifest) = fetcher.manifest().await?;
            if unpacked(&digest) {
                return Ok(digest);
            }
            fetcher.fetch_image(&digest, &manifest).await?;
            Ok(digest)
        })
    };
    std::thread::scope(|s| {
        s.spawn(run).join().unwrap_or_else(|_| {
            Err(ImageError::Pull {
                reference: name.into(),
                registry: image.registry().into(),
                message: "the pull panicked".into(),
            })
        })
    })
}

/// One pull of one image.
struct Fetcher<'a> {
    client: Client,
    auth: RegistryAuth,
    name: &'a str,
    image: &'a Reference,
    content: &'a Path,
}

impl<'a> Fetcher<'a> {
    fn new(
        settings: &RegistrySettings,
        name: &'a str,
        image: &'a Reference,
        content: &'a Path,
    ) -> Result<Self, ImageError> {
        // reqwest is built without a default crypto provider: ours is ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = image.resolve_registry().to_string();
        let protocol = if is_insecure(image.registry(), &settings.insecure) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(60)),
            user_agent: concat!("drover/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let auth = settings
            .auth_for(image.registry())
            .map_err(|message| ImageError::Pull {
                reference: name.into(),
                registry: registry.clone(),
                message,
            })?;
        Ok(Fetcher {
            client: Client::new(config),
            auth,
            name,
            image,
            content,
        })
    }

    fn error(&self, e: OciDistributionError) -> ImageError {
        classify(self.name, self.image.registry(), e)
    }

    fn invalid(&self, message: String) -> ImageError {
        ImageError::Invalid {
            reference: self.name.into(),
            message,
        }
    }

    /// The platform manifest's digest and bytes, through an index if there is one.
    async fn manifest(&self) -> Result<(String, Vec<u8>), ImageError> {
        let mut at = self.image.clone();
        for _ in 0..3 {
            let (body, digest) = self
                .client
                .pull_manifest_raw(&at, &self.auth, ACCEPT)
                .await
                .map_err(|e| self.error(e))?;
            let actual = format!("sha256:{}", hex(&Sha256::digest(&body)));
            let expected = at.digest().unwrap_or(&digest).to_string();
            if actual != expected {
                return Err(ImageError::Digest {
                    reference: self.name.into(),
                    digest: expected,
                    actual: actual.trim_start_matches("sha256:").into(),
                });
            }
            let media_type = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
                .unwrap_or_default();
            let is_index = INDEX_TYPES.contains(&media_type.as_str())
                || (media_type.is_empty()
                    && serde_json::from_slice::<serde_json::Value>(&body)
                        .is_ok_and(|v| v.get("manifests").is_some()));
            if !is_index {
                return Ok((actual, body.to_vec()));
            }
            let index: Index = serde_json::from_slice(&body)
                .map_err(|e| self.invalid(format!("index {actual} is not valid JSON: {e}")))?;
            let chosen = pick_platform(&index.manifests)
                .ok_or_else(|| self.invalid("no linux/amd64 manifest in the index".into()))?;
            tracing::debug!(image = %self.name, index = %actual, manifest = %chosen.digest, "picked linux/amd64");
            at = self.image.clone_with_digest(chosen.digest.clone());
        }
        Err(self.invalid("image indexes nested too deeply".into()))
    }

    /// The manifest, its config and its layers into the content store.
    async fn fetch_image(&self, digest: &str, manifest: &[u8]) -> Result<(), ImageError> {
        let parsed: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| self.invalid(format!("manifest {digest} is not valid JSON: {e}")))?;
        self.put(digest, manifest)?;
        self.blob(&parsed.config.digest).await?;
        for layer in &parsed.layers {
            self.blob(&layer.digest).await?;
        }
        tracing::info!(image = %self.name, %digest, layers = parsed.layers.len(), "image pulled");
        Ok(())
    }

    fn path_of(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let rel = blob_rel(digest)
            .ok_or_else(|| self.invalid(format!("unsupported or malformed digest {digest:?}")))?;
        Ok(self.content.join("blobs").join(rel))
    }

    fn io(&self, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
        let (reference, path) = (self.name.to_string(), path.to_path_buf());
        move |source| ImageError::Io {
            reference,
            what,
            path,
            source,
        }
    }

    /// A temporary path beside `path` (renamed into place once verified).
    fn tmp_for(path: &Path) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        path.with_file_name(format!(".tmp-{name}-{}-{nanos}", std::process::id()))
    }

    /// Stores bytes already checked against `digest`.
    fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let path = self.path_of(digest)?;
        if path.is_file() {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(self.io("creating", dir))?;
        }
        let tmp = Self::tmp_for(&path);
        std::fs::write(&tmp, bytes).map_err(self.io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io("renaming into", &path)(e)
        })
    }

    /// Downloads blob `digest` unless the content store holds it intact.
    async fn blob(&self, digest: &str) -> Result<(), ImageError> {
        let path = self.path_of(digest)?;
        let want = digest.trim_start_matches("sha256:");
        if path.is_file() && sha256_file(&path).is_ok_and(|h| h == want) {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(self.io("creating", dir))?;
        }
        let tmp = Self::tmp_for(&path);
        let result = self.download(digest, &tmp).await;
        let result = result.and_then(|()| {
            let actual = sha256_file(&tmp).map_err(self.io("reading", &tmp))?;
            if actual != want {
                return Err(ImageError::Digest {
                    reference: self.name.into(),
                    digest: digest.into(),
                    actual,
                });
            }
            std::fs::rename(&tmp, &path).map_err(self.io("renaming into", &path))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    async fn download(&self, digest: &str, to: &Path) -> Result<(), ImageError> {
        let file = tokio::fs::File::create(to)
            .await
            .map_err(self.io("creating", to))?;
        let mut out = tokio::io::BufWriter::new(file);
        tracing::debug!(image = %self.name, blob = %digest, "downloading");
        self.client
            .pull_blob(self.image, digest, &mut out)
            .await
            .map_err(|e| self.error(e))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error chain of `e`, joined.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// `oci-client`'s error as one of ours: not found, unauthorized, unreachable, digest
/// mismatch, or a pull error with the registry's words.
fn classify(name: &str, registry: &str, e: OciDistributionError) -> ImageError {
    let (reference, registry) = (name.to_string(), registry.to_string());
    let not_found = || ImageError::NotFound {
        reference: name.into(),
    };
    let unauthorized = |message: String| ImageError::Unauthorized {
        reference: name.into(),
        registry: registry.clone(),
        message,
    };
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            let message = envelope
                .errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                not_found()
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized(message)
            } else {
                ImageError::Pull {
                    reference,
                    registry,
                    message,
                }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => not_found(),
        OciDistributionError::ServerError {
            code: code @ (401 | 403),
            message,
            ..
        } => unauthorized(format!("HTTP {code} {}", message.trim())),
        OciDistributionError::UnauthorizedError { url } => {
            unauthorized(format!("HTTP 401 from {url}"))
        }
        OciDistributionError::AuthenticationFailure(message) => unauthorized(message),
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            ImageError::Unreachable {
                reference,
                registry,
                message: chain(&r),
            }
        }
        OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
            expected,
            actual,
        }) => ImageError::Digest {
            reference,
            digest: expected,
            actual: actual.trim_start_matches("sha256:").into(),
        },
        other => ImageError::Pull {
            reference,
            registry,
            message: chain(&other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_a_registry_repository_and_tag_or_digest() {
        let r = parse("busybox").ok();
        assert_eq!(
            r.map(|r| (
                r.registry().to_string(),
                r.repository().to_string(),
                r.tag().map(str::to_string)
            )),
            Some((
                "docker.io".into(),
                "library/busybox".into(),
                Some("latest".into())
            ))
        );
        let r = parse("127.0.0.1:5000/busybox:1").ok();
        assert_eq!(
            r.map(|r| (
                r.registry().to_string(),
                r.repository().to_string(),
                r.tag().map(str::to_string)
            )),
            Some(("127.0.0.1:5000".into(), "busybox".into(), Some("1".into())))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("registry.example/ns/app@{d}")).ok();
        assert_eq!(
            r.map(|r| (
                r.registry().to_string(),
                r.repository().to_string(),
                r.digest().map(str::to_string)
            )),
            Some(("registry.example".into(), "ns/app".into(), Some(d)))
        );
        let msg = parse("Bad/Name")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.starts_with("image \"Bad/Name\": not an image reference"),
            "{msg}"
        );
        let short = format!("x@sha256:{}", "a".repeat(40));
        let msg = parse(&short)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("(invalid checksum digest length)"), "{msg}");
    }

    #[test]
    fn loopback_and_listed_registries_are_plain_http() {
        let none: &[String] = &[];
        for plain in [
            "127.0.0.1:5000",
            "127.9.9.9",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
        ] {
            assert!(is_insecure(plain, none), "{plain} should be plain HTTP");
        }
        for tls in [
            "docker.io",
            "registry.example:5000",
            "10.0.0.1:5000",
            "128.0.0.1:80",
            "localhost.example.com",
        ] {
            assert!(!is_insecure(tls, none), "{tls} should be HTTPS");
        }
        let listed = vec!["registry.lan:5000".to_string(), "10.0.0.1".to_string()];
        assert!(is_insecure("registry.lan:5000", &listed));
        assert!(!is_insecure("registry.lan:5001", &listed));
        assert!(is_insecure("10.0.0.1:5000", &listed));
        assert!(!is_insecure("10.0.0.2:5000", &listed));
    }

    #[test]
    fn basic_credentials_come_from_a_docker_config() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("me:secret");
        std::fs::write(
            &file,
            format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{b64}"}},
                    "reg.lan:5000": {{"username": "u", "password": "p"}},
                    "bad.lan": {{"auth": "%%%"}}}}}}"#
            ),
        )?;
        let s = RegistrySettings {
            insecure: vec![],
            auth_file: Some(file.clone()),
        };
        assert!(
            matches!(s.auth_for("docker.io")?, RegistryAuth::Basic(u, p) if u == "me" && p == "secret")
        );
        assert!(
            matches!(s.auth_for("reg.lan:5000")?, RegistryAuth::Basic(u, p) if u == "u" && p == "p")
        );
        assert!(matches!(s.auth_for("other:1")?, RegistryAuth::Anonymous));
        let msg = s.auth_for("bad.lan").err().unwrap_or_default();
        assert!(
            msg.contains("auths.\"bad.lan\".auth is not base64"),
            "{msg}"
        );
        std::fs::write(&file, "not json")?;
        let msg = s.validate().err().unwrap_or_default();
        assert!(
            msg.starts_with(&format!(
                "registry auth file {}: not a docker config.json",
                file.display()
            )),
            "{msg}"
        );
        Ok(())
    }

    #[test]
    fn an_unreachable_registry_is_named() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let name = format!("127.0.0.1:{port}/busybox:1");
        let image = parse(&name).expect("a valid reference");
        let dir = tempfile::tempdir().expect("temp dir");
        let err = fetch(
            &RegistrySettings::default(),
            &name,
            &image,
            dir.path(),
            &|_| false,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.starts_with(&format!(
                "image {name}: registry 127.0.0.1:{port} is unreachable"
            )),
            "{err}"
        );
    }
}
