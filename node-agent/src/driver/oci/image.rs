//! The image store: unpacks OCI images from a local image layout (`oci:PATH[:TAG]`), a
//! tar of one (`oci-archive:PATH`) or a registry (`127.0.0.1:5000/busybox:1`, `busybox`;
//! fetched by `registry` into `<data-dir>/images/content`) into
//! `<data-dir>/images/<algo>-<hex>/rootfs`, once per manifest digest.
//!
//! Every blob is checked against its sha256 before use; layers (tar or tar+gzip) are
//! applied in order with whiteouts (`.wh.NAME` deletes, `.wh..wh..opq` empties a
//! directory of what lower layers put there). An image is built in a temporary directory
//! and renamed into place, so a crash half-way leaves nothing that looks complete. The
//! directory is named `sha256-<hex>` rather than `sha256:<hex>` because overlayfs options
//! use `:` as a separator.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::registry::{self, RegistrySettings};

/// What users are told when a registry pull cannot even be attempted on this node.
pub const NO_REGISTRY: &str = "registry pulls are not available on this node: use an OCI layout (oci:PATH) or archive (oci-archive:PATH)";

/// Why an image could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A registry pull cannot be attempted here.
    #[error("image {reference:?}: {NO_REGISTRY}")]
    Registry {
        /// The reference.
        reference: String,
    },
    /// The registry has no such repository, tag or digest.
    #[error("image {reference} not found")]
    NotFound {
        /// The reference.
        reference: String,
    },
    /// The registry could not be reached.
    #[error("image {reference}: registry {registry} is unreachable: {message}")]
    Unreachable {
        /// The reference.
        reference: String,
        /// The registry (`HOST[:PORT]`).
        registry: String,
        /// Why.
        message: String,
    },
    /// The registry refused our credentials (or their absence).
    #[error("image {reference}: registry {registry} refused access (unauthorized): {message}")]
    Unauthorized {
        /// The reference.
        reference: String,
        /// The registry.
        registry: String,
        /// What it said.
        message: String,
    },
    /// The registry answered with an error we do not classify.
    #[error("image {reference}: pulling from registry {registry}: {message}")]
    Pull {
        /// The reference.
        reference: String,
        /// The registry.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// The layout is malformed or lacks what we need.
    #[error("image {reference:?}: {message}")]
    Invalid {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// A blob's content does not match its digest.
    #[error("image {reference:?}: blob {digest} does not match its digest (got sha256:{actual})")]
    Digest {
        /// The reference.
        reference: String,
        /// The expected digest.
        digest: String,
        /// What the content hashes to.
        actual: String,
    },
    /// A layer entry would land outside the rootfs.
    #[error("image {reference:?}: layer {layer}: entry {entry:?} {why}; refusing to unpack it")]
    Traversal {
        /// The reference.
        reference: String,
        /// The layer digest.
        layer: String,
        /// The entry path.
        entry: String,
        /// Why it escapes.
        why: String,
    },
    /// Reading or writing failed.
    #[error("image {reference:?}: {what} {}: {source}", path.display())]
    Io {
        /// The reference.
        reference: String,
        /// What we were doing.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A parsed image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRef {
    /// An OCI image layout directory, with an optional tag (`ref.name` annotation).
    Layout {
        /// The directory.
        path: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// A tar of an OCI image layout.
    Archive {
        /// The tar file.
        path: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
    /// An image in a registry (`busybox` is `docker.io/library/busybox:latest`).
    Registry(oci_client::Reference),
}

impl ImageRef {
    /// Parses `oci:PATH[:TAG]` or `oci-archive:PATH[:TAG]`; anything else is a registry
    /// reference (`[REGISTRY/]REPOSITORY[:TAG][@DIGEST]`).
    pub fn parse(reference: &str) -> Result<ImageRef, ImageError> {
        let (archive, rest) = if let Some(rest) = reference.strip_prefix("oci-archive:") {
            (true, rest)
        } else if let Some(rest) = reference.strip_prefix("oci:") {
            (false, rest)
        } else {
            return super::registry::parse(reference).map(ImageRef::Registry);
        };
        if rest.is_empty() {
            return Err(ImageError::Invalid {
                reference: reference.into(),
                message: "no path after the transport".into(),
            });
        }
        // A path that exists is taken whole (it may contain ':'); else `PATH:TAG`.
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !Path::new(rest).exists() && !t.contains('/') && !t.is_empty() => {
                (p.to_string(), Some(t.to_string()))
            }
            _ => (rest.to_string(), None),
        };
        let path = PathBuf::from(path);
        Ok(if archive {
            ImageRef::Archive { path, tag }
        } else {
            ImageRef::Layout { path, tag }
        })
    }
}

/// The parts of an image config used as a container's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// `Env` (`K=V`).
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// `User`.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// An unpacked image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The manifest digest.
    pub digest: String,
    /// Its root filesystem (shared by every task using it: never write into it).
    pub rootfs: PathBuf,
    /// Its defaults.
    pub config: ImageConfig,
}

/// Images unpacked under one directory.
#[derive(Clone, Debug)]
pub struct ImageStore {
    dir: PathBuf,
    registry: RegistrySettings,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    media_type: String,
    pub(super) digest: String,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
pub(super) struct Index {
    #[serde(default)]
    pub(super) manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
pub(super) struct Manifest {
    pub(super) config: Descriptor,
    #[serde(default)]
    pub(super) layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: Option<ImageConfig>,
}

pub(super) const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The part of a blob path after `blobs/`: `sha256/<hex>`, checked.
pub(super) fn blob_rel(digest: &str) -> Option<PathBuf> {
    let (algo, hex) = digest.split_once(':')?;
    let ok = algo == "sha256" && hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit());
    ok.then(|| Path::new(algo).join(hex))
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads images from one layout directory for one reference.
struct Reader<'a> {
    reference: &'a str,
    layout: &'a Path,
}

impl Reader<'_> {
    fn invalid(&self, message: impl Into<String>) -> ImageError {
        ImageError::Invalid {
            reference: self.reference.into(),
            message: message.into(),
        }
    }

    fn io(&self, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
        let (reference, path) = (self.reference.to_string(), path.to_path_buf());
        move |source| ImageError::Io {
            reference,
            what,
            path,
            source,
        }
    }

    /// The path of a blob whose content has been checked against its digest.
    fn verified_blob(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let rel = blob_rel(digest)
            .ok_or_else(|| self.invalid(format!("unsupported or malformed digest {digest:?}")))?;
        let path = self.layout.join("blobs").join(rel);
        if !path.is_file() {
            return Err(self.invalid(format!("blob {digest} is missing from the layout")));
        }
        let actual = sha256_file(&path).map_err(self.io("reading", &path))?;
        if Some(actual.as_str()) != digest.strip_prefix("sha256:") {
            return Err(ImageError::Digest {
                reference: self.reference.into(),
                digest: digest.into(),
                actual,
            });
        }
        Ok(path)
    }

    fn json_blob<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T, ImageError> {
        let path = self.verified_blob(digest)?;
        let text = std::fs::read(&path).map_err(self.io("reading", &path))?;
        serde_json::from_slice(&text)
            .map_err(|e| self.invalid(format!("blob {digest} is not valid JSON: {e}")))
    }

    /// index.json → the manifest descriptor for `tag`, or linux/amd64, or the only one.
    fn manifest_digest(&self, tag: Option<&str>) -> Result<String, ImageError> {
        let path = self.layout.join("index.json");
        if !self.layout.join("oci-layout").is_file() || !path.is_file() {
            return Err(self.invalid(format!(
                "{} is not an OCI image layout (no oci-layout or index.json)",
                self.layout.display()
            )));
        }
        let text = std::fs::read(&path).map_err(self.io("reading", &path))?;
        let index: Index =
            serde_json::from_slice(&text).map_err(|e| self.invalid(format!("index.json: {e}")))?;
        let mut candidates = index.manifests;
        if let Some(tag) = tag {
            let name = "org.opencontainers.image.ref.name";
            let tags: Vec<String> = candidates
                .iter()
                .filter_map(|d| d.annotations.get(name).cloned())
                .collect();
            candidates.retain(|d| d.annotations.get(name).map(String::as_str) == Some(tag));
            if candidates.is_empty() {
                return Err(self.invalid(format!(
                    "no manifest tagged {tag:?} (tags: {})",
                    tags.join(", ")
                )));
            }
        }
        // One level of nested index (e.g. a multi-platform image under one tag).
        for _ in 0..2 {
            let chosen = pick_platform(&candidates)
                .ok_or_else(|| self.invalid("no linux/amd64 manifest in the index"))?;
            if INDEX_TYPES.contains(&chosen.media_type.as_str()) {
                let nested: Index = self.json_blob(&chosen.digest)?;
                candidates = nested.manifests;
                continue;
            }
            return Ok(chosen.digest.clone());
        }
        Err(self.invalid("image indexes nested too deeply"))
    }
}

/// The only descriptor, else the linux/amd64 one.
pub(super) fn pick_platform(candidates: &[Descriptor]) -> Option<&Descriptor> {
    if let [only] = candidates {
        return Some(only);
    }
    candidates.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
    })
}

impl ImageStore {
    /// A store in `dir` (`<data-dir>/images`), pulling from registries with this
    /// process's settings ([`registry::configure`]).
    pub fn new(dir: PathBuf) -> Self {
        ImageStore {
            dir,
            registry: registry::configured(),
        }
    }

    /// The same store with other registry settings.
    pub fn with_registry(mut self, settings: RegistrySettings) -> Self {
        self.registry = settings;
        self
    }

    /// Where unpacked images live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes `reference` ready (unpacking it unless already done) and returns it.
    /// Blocking: call it from `spawn_blocking`.
    pub fn pull(&self, reference: &str) -> Result<Image, ImageError> {
        let io = |what: &'static str, path: &Path| {
            let (reference, path) = (reference.to_string(), path.to_path_buf());
            move |source| ImageError::Io {
                reference,
                what,
                path,
                source,
            }
        };
        std::fs::create_dir_all(&self.dir).map_err(io("creating", &self.dir))?;
        match ImageRef::parse(reference)? {
            ImageRef::Layout { path, tag } => {
                if !path.is_dir() {
                    return Err(ImageError::Invalid {
                        reference: reference.into(),
                        message: format!("OCI layout directory {} does not exist", path.display()),
                    });
                }
                self.pull_layout(reference, &path, tag.as_deref())
            }
            ImageRef::Archive { path, tag } => {
                if !path.is_file() {
                    return Err(ImageError::Invalid {
                        reference: reference.into(),
                        message: format!("OCI archive {} does not exist", path.display()),
                    });
                }
                let tmp = tempdir_in(&self.dir, "archive").map_err(io("creating", &self.dir))?;
                let file = File::open(&path).map_err(io("opening", &path))?;
                let layout = tmp.path().join("layout");
                let mut ar = tar::Archive::new(BufReader::new(file));
                unpack_layer(&mut ar, &layout, reference, "archive")?;
                self.pull_layout(reference, &layout, tag.as_deref())
            }
            ImageRef::Registry(image) => self.pull_registry(reference, &image),
        }
    }

    /// Fetches `image` into the content store (unless its digest is unpacked already)
    /// and unpacks it from there. Concurrent pulls of one reference are one pull.
    fn pull_registry(
        &self,
        reference: &str,
        image: &oci_client::Reference,
    ) -> Result<Image, ImageError> {
        let flight = registry::flight(image);
        let _one = flight.lock().unwrap_or_else(|e| e.into_inner());
        let content = self.dir.join(registry::CONTENT_DIR);
        let unpacked = |digest: &str| self.unpacked_dir(digest).join("config.json").is_file();
        let digest = registry::fetch(&self.registry, reference, image, &content, &unpacked)?;
        let r = Reader {
            reference,
            layout: &content,
        };
        self.unpack(&r, &digest)
    }

    fn unpacked_dir(&self, digest: &str) -> PathBuf {
        self.dir.join(digest.replacen(':', "-", 1))
    }

    fn pull_layout(
        &self,
        reference: &str,
        layout: &Path,
        tag: Option<&str>,
    ) -> Result<Image, ImageError> {
        let r = Reader { reference, layout };
        let digest = r.manifest_digest(tag)?;
        self.unpack(&r, &digest)
    }

    /// Unpacks manifest `digest` from `r`'s layout, unless already done.
    fn unpack(&self, r: &Reader<'_>, digest: &str) -> Result<Image, ImageError> {
        let reference = r.reference;
        let name = digest.replacen(':', "-", 1);
        let done = self.dir.join(&name);
        let image_config = done.join("config.json");
        if image_config.is_file() {
            return read_unpacked(reference, digest, &done);
        }
        // One unpack at a time in this process: a hundred instances of one App starting
        // together unpack their image once, the others then find it done.
        static UNPACK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = UNPACK.lock().unwrap_or_else(|e| e.into_inner());
        if image_config.is_file() {
            return read_unpacked(reference, digest, &done);
        }
        let manifest: Manifest = r.json_blob(digest)?;
        let config: ConfigBlob = r.json_blob(&manifest.config.digest)?;
        let tmp = tempdir_in(&self.dir, &name).map_err(r.io("creating", &self.dir))?;
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(r.io("creating", &rootfs))?;
        for layer in &manifest.layers {
            let path = r.verified_blob(&layer.digest)?;
            let reader = layer_reader(&path).map_err(r.io("reading", &path))?;
            let mut ar = tar::Archive::new(reader);
            unpack_layer(&mut ar, &rootfs, reference, &layer.digest)?;
        }
        let cfg = config.config.unwrap_or_default();
        let json = serde_json::to_vec_pretty(&cfg).unwrap_or_default();
        let cfg_path = tmp.path().join("config.json");
        std::fs::write(&cfg_path, json).map_err(r.io("writing", &cfg_path))?;
        let built = tmp.keep();
        match std::fs::rename(&built, &done) {
            Ok(()) => {}
            // Another task unpacked the same image meanwhile: keep theirs.
            Err(_) if image_config.is_file() => {
                let _ = std::fs::remove_dir_all(&built);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&built);
                return Err(r.io("renaming into", &done)(e));
            }
        }
        tracing::info!(%reference, %digest, "image unpacked");
        read_unpacked(reference, digest, &done)
    }
}

fn read_unpacked(reference: &str, digest: &str, dir: &Path) -> Result<Image, ImageError> {
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|source| ImageError::Io {
        reference: reference.into(),
        what: "reading",
        path: path.clone(),
        source,
    })?;
    let config = serde_json::from_slice(&text).map_err(|e| ImageError::Invalid {
        reference: reference.into(),
        message: format!("{}: {e}", path.display()),
    })?;
    Ok(Image {
        digest: digest.into(),
        rootfs: dir.join("rootfs"),
        config,
    })
}

/// A temporary directory in `dir` whose name never looks like a finished image.
fn tempdir_in(dir: &Path, name: &str) -> std::io::Result<TempDir> {
    for attempt in 0..100u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = dir.join(format!(
            ".tmp-{name}-{}-{nanos}-{attempt}",
            std::process::id()
        ));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(TempDir(Some(path))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary directory name"))
}

/// Removed on drop unless kept.
struct TempDir(Option<PathBuf>);

impl TempDir {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().unwrap_or_default()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// A layer's tar stream, gunzipped when it starts with the gzip magic.
fn layer_reader(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let mut f = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic)?;
    let head = std::io::Cursor::new(magic[..n].to_vec());
    let stream = head.chain(f);
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(stream))
    } else {
        Box::new(stream)
    })
}

/// The normal components of a layer entry path; `..` is refused.
fn entry_components(path: &Path) -> Result<Vec<std::ffi::OsString>, String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("contains '..'".into()),
            Component::Prefix(_) => return Err("has a prefix".into()),
        }
    }
    Ok(out)
}

/// The host path of directory `parts` inside `root`, following relative symlinks that
/// stay inside it; a symlink that is absolute or climbs out is refused (a later entry
/// would be written outside the rootfs).
fn resolve_parent(root: &Path, parts: &[std::ffi::OsString]) -> Result<PathBuf, String> {
    let mut stack: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: std::collections::VecDeque<std::ffi::OsString> = parts.iter().cloned().collect();
    let mut hops = 0;
    while let Some(part) = todo.pop_front() {
        let mut candidate = root.to_path_buf();
        candidate.extend(&stack);
        candidate.push(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Err("goes through too many symlinks".into());
                }
                let target = std::fs::read_link(&candidate).unwrap_or_default();
                if target.is_absolute() {
                    return Err(format!(
                        "goes through the absolute symlink {} -> {}",
                        candidate.strip_prefix(root).unwrap_or(&candidate).display(),
                        target.display()
                    ));
                }
                let mut rest: std::collections::VecDeque<std::ffi::OsString> =
                    std::collections::VecDeque::new();
                for c in target.components() {
                    match c {
                        Component::Normal(n) => rest.push_back(n.to_os_string()),
                        Component::ParentDir => {
                            if rest.is_empty() {
                                if stack.pop().is_none() {
                                    return Err(format!(
                                        "goes through the symlink {} -> {}, which leaves the rootfs",
                                        candidate.strip_prefix(root).unwrap_or(&candidate).display(),
                                        target.display()
                                    ));
                                }
                            } else {
                                rest.push_back(c.as_os_str().to_os_string());
                            }
                        }
                        _ => {}
                    }
                }
                // Re-resolve the target's components (they may hold more symlinks, or
                // `..` after a normal part, handled as we go).
                while let Some(r) = rest.pop_back() {
                    todo.push_front(r);
                }
            }
            _ if part == ".." => {
                if stack.pop().is_none() {
                    return Err("climbs out of the rootfs".into());
                }
            }
            _ => stack.push(part),
        }
    }
    let mut out = root.to_path_buf();
    out.extend(&stack);
    Ok(out)
}

/// Removes whatever is at `path` (file, symlink or tree).
fn remove_any(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies one layer (or unpacks an archive) into `root`, with whiteouts.
fn unpack_layer<R: Read>(
    ar: &mut tar::Archive<R>,
    root: &Path,
    reference: &str,
    layer: &str,
) -> Result<(), ImageError> {
    std::fs::create_dir_all(root).map_err(|source| ImageError::Io {
        reference: reference.into(),
        what: "creating",
        path: root.into(),
        source,
    })?;
    let bad = |entry: &Path, why: String| ImageError::Traversal {
        reference: reference.into(),
        layer: layer.into(),
        entry: entry.display().to_string(),
        why,
    };
    let io = |what: &'static str, path: &Path| {
        let (reference, path) = (reference.to_string(), path.to_path_buf());
        move |source| ImageError::Io {
            reference,
            what,
            path,
            source,
        }
    };
    let invalid = |message: String| ImageError::Invalid {
        reference: reference.into(),
        message: format!("layer {layer}: {message}"),
    };
    // What this layer wrote: an opaque whiteout hides only lower layers' entries.
    let mut written: HashSet<PathBuf> = HashSet::new();
    let entries = ar
        .entries()
        .map_err(|e| invalid(format!("not a tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("bad tar entry: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| invalid(format!("bad entry path: {e}")))?
            .into_owned();
        let parts = entry_components(&path).map_err(|why| bad(&path, why))?;
        let Some((name, parents)) = parts.split_last() else {
            continue; // "./" itself
        };
        let dir = resolve_parent(root, parents).map_err(|why| bad(&path, why))?;
        let name_str = name.to_string_lossy();
        if name_str == ".wh..wh..opq" {
            if let Ok(children) = std::fs::read_dir(&dir) {
                for child in children.flatten() {
                    let p = child.path();
                    if !written.contains(&p) {
                        remove_any(&p).map_err(io("removing", &p))?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = name_str.strip_prefix(".wh.") {
            let target = dir.join(hidden);
            remove_any(&target).map_err(io("removing", &target))?;
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
        let target = dir.join(name);
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (header.uid().ok(), header.gid().ok());
        let existing = std::fs::symlink_metadata(&target).ok();
        if !(kind.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir())) {
            remove_any(&target).map_err(io("replacing", &target))?;
        }
        use std::os::unix::fs::PermissionsExt;
        match kind {
            k if k.is_dir() => {
                std::fs::create_dir_all(&target).map_err(io("creating", &target))?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(io("setting the mode of", &target))?;
            }
            k if k.is_file() || k == tar::EntryType::Continuous => {
                let mut out = File::create(&target).map_err(io("creating", &target))?;
                std::io::copy(&mut entry, &mut out).map_err(io("writing", &target))?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(io("setting the mode of", &target))?;
            }
            k if k.is_symlink() => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| invalid(format!("symlink {} has no target", path.display())))?
                    .into_owned();
                std::os::unix::fs::symlink(&link, &target).map_err(io("linking", &target))?;
            }
            k if k.is_hard_link() => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .ok_or_else(|| invalid(format!("hard link {} has no target", path.display())))?
                    .into_owned();
                let lparts = entry_components(&link).map_err(|why| bad(&link, why))?;
                let Some((lname, lparents)) = lparts.split_last() else {
                    return Err(bad(&path, "is a hard link to the root".into()));
                };
                let source = resolve_parent(root, lparents)
                    .map_err(|why| bad(&link, why))?
                    .join(lname);
                std::fs::hard_link(&source, &target).map_err(io("linking", &target))?;
            }
            other => {
                tracing::debug!(entry = %path.display(), kind = ?other, "skipping a special file");
                continue;
            }
        }
        if let (Some(uid), Some(gid)) = (uid, gid) {
            // Only root may chown; as another user the files stay ours.
            let _ = std::os::unix::fs::lchown(
                &target,
                u32::try_from(uid).ok(),
                u32::try_from(gid).ok(),
            );
            if !kind.is_symlink() && (mode & 0o7000) != 0 {
                // chown clears setuid/setgid bits: put them back.
                let _ = std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode));
            }
        }
        written.insert(target);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// A tar of (path, content) files, (path, None) directories and symlinks via `->`.
    fn tar_of(entries: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            match content {
                Some(c) if c.starts_with("->") => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    h.set_mode(0o777);
                    h.set_link_name(&c[2..]).unwrap_or(());
                    h.set_path(path).unwrap_or(());
                    h.set_cksum();
                    b.append(&h, std::io::empty()).unwrap_or(());
                }
                Some(c) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(c.len() as u64);
                    h.set_mode(0o755);
                    // set_path refuses `..`: write the raw name for traversal tests.
                    let name = path.as_bytes();
                    if let Some(gnu) = h.as_gnu_mut() {
                        gnu.name[..name.len()].copy_from_slice(name);
                    }
                    h.set_cksum();
                    b.append(&h, c.as_bytes()).unwrap_or(());
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    h.set_path(path).unwrap_or(());
                    h.set_cksum();
                    b.append(&h, std::io::empty()).unwrap_or(());
                }
            }
        }
        b.into_inner().unwrap_or_default()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap_or(());
        e.finish().unwrap_or_default()
    }

    /// Writes a blob; returns its digest.
    fn blob(layout: &Path, bytes: &[u8]) -> Result<String, std::io::Error> {
        let hex = sha(bytes);
        let dir = layout.join("blobs/sha256");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(&hex), bytes)?;
        Ok(format!("sha256:{hex}"))
    }

    /// An OCI layout of `layers` tagged `latest`; returns the manifest digest.
    fn layout(dir: &Path, layers: &[Vec<u8>]) -> Result<String, std::io::Error> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["/bin/app"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/srv"},
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        let config_digest = blob(dir, config.to_string().as_bytes())?;
        let mut descs = Vec::new();
        for l in layers {
            let d = blob(dir, l)?;
            descs.push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": l.len()
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 1},
            "layers": descs,
        });
        let m = manifest.to_string();
        let md = blob(dir, m.as_bytes())?;
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(),
                "annotations": {"org.opencontainers.image.ref.name": "latest"}
            }]
        });
        std::fs::write(dir.join("index.json"), index.to_string())?;
        Ok(md)
    }

    #[test]
    fn references_are_parsed() {
        assert_eq!(
            ImageRef::parse("oci:/no/such/dir:v1").ok(),
            Some(ImageRef::Layout {
                path: "/no/such/dir".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(
            ImageRef::parse("oci-archive:/x.tar").ok(),
            Some(ImageRef::Archive {
                path: "/x.tar".into(),
                tag: None
            })
        );
        let Ok(ImageRef::Registry(r)) = ImageRef::parse("busybox") else {
            panic!("busybox is a registry reference");
        };
        assert_eq!(r.whole(), "docker.io/library/busybox:latest");
        let msg = ImageRef::parse("two words")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("not an image reference"), "{msg}");
    }

    #[test]
    fn layers_are_applied_in_order_with_whiteouts() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let base = tar_of(&[
            ("bin/", None),
            ("bin/app", Some("v1")),
            ("etc/", None),
            ("etc/old", Some("gone")),
            ("var/", None),
            ("var/a", Some("a")),
            ("var/b", Some("b")),
            ("lib", Some("->bin")),
        ]);
        let top = gzip(&tar_of(&[
            ("bin/app", Some("v2")),
            ("etc/.wh.old", Some("")),
            ("var/c", Some("c")),
            ("var/.wh..wh..opq", Some("")),
            ("lib/extra", Some("through a relative symlink")),
        ]));
        let digest = layout(&tmp.path().join("layout"), &[base, top])?;
        let store = ImageStore::new(tmp.path().join("images"));
        let reference = format!("oci:{}:latest", tmp.path().join("layout").display());
        let image = store.pull(&reference)?;
        assert_eq!(image.digest, digest);
        let root = &image.rootfs;
        assert_eq!(std::fs::read_to_string(root.join("bin/app"))?, "v2");
        assert!(!root.join("etc/old").exists());
        assert!(root.join("etc").is_dir());
        assert!(!root.join("var/a").exists() && !root.join("var/b").exists());
        assert_eq!(std::fs::read_to_string(root.join("var/c"))?, "c");
        assert_eq!(
            std::fs::read_to_string(root.join("bin/extra"))?,
            "through a relative symlink"
        );
        assert_eq!(image.config.cmd, Some(vec!["/bin/app".to_string()]));
        assert_eq!(image.config.working_dir.as_deref(), Some("/srv"));
        assert!(root.starts_with(tmp.path().join("images").join(digest.replace(':', "-"))));
        // Done once: a second pull finds it.
        assert_eq!(store.pull(&reference)?, image);
        // No temporary directories left behind.
        let leftovers: Vec<_> = std::fs::read_dir(store.dir())?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        Ok(())
    }

    #[test]
    fn an_archive_of_a_layout_is_unpacked() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let l = tmp.path().join("layout");
        let digest = layout(&l, &[tar_of(&[("bin/", None), ("bin/app", Some("x"))])])?;
        let archive = tmp.path().join("image.tar");
        let mut b = tar::Builder::new(File::create(&archive)?);
        b.append_dir_all(".", &l)?;
        b.finish()?;
        drop(b);
        let store = ImageStore::new(tmp.path().join("images"));
        let image = store.pull(&format!("oci-archive:{}", archive.display()))?;
        assert_eq!(image.digest, digest);
        assert_eq!(std::fs::read_to_string(image.rootfs.join("bin/app"))?, "x");
        let left: Vec<_> = std::fs::read_dir(store.dir())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![digest.replace(':', "-")]);
        Ok(())
    }

    #[test]
    fn a_bad_digest_is_refused_and_nothing_is_left() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let l = tmp.path().join("layout");
        let layer = tar_of(&[("f", Some("x"))]);
        layout(&l, std::slice::from_ref(&layer))?;
        std::fs::write(l.join("blobs/sha256").join(sha(&layer)), b"tampered")?;
        let store = ImageStore::new(tmp.path().join("images"));
        let err = store.pull(&format!("oci:{}", l.display())).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains(&format!(
                "blob sha256:{} does not match its digest",
                sha(&layer)
            )),
            "{msg}"
        );
        let left: Vec<_> = std::fs::read_dir(store.dir())?.flatten().collect();
        assert!(left.is_empty(), "{left:?}");
        Ok(())
    }

    #[test]
    fn path_traversal_is_refused() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let l = tmp.path().join("layout");
        layout(&l, &[tar_of(&[("../evil", Some("x"))])])?;
        let store = ImageStore::new(tmp.path().join("images"));
        let msg = store
            .pull(&format!("oci:{}", l.display()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("entry \"../evil\" contains '..'"), "{msg}");
        assert!(!tmp.path().join("images/evil").exists());

        let l2 = tmp.path().join("layout2");
        layout(
            &l2,
            &[tar_of(&[
                ("etc", Some("->/etc")),
                ("etc/drover-test-escape", Some("x")),
            ])],
        )?;
        let msg = store
            .pull(&format!("oci:{}", l2.display()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("goes through the absolute symlink etc -> /etc"),
            "{msg}"
        );
        assert!(!Path::new("/etc/drover-test-escape").exists());
        Ok(())
    }

    #[test]
    fn a_missing_tag_or_layout_is_named() -> TestResult {
        let tmp = tempfile::tempdir()?;
        let l = tmp.path().join("layout");
        layout(&l, &[tar_of(&[("f", Some("x"))])])?;
        let store = ImageStore::new(tmp.path().join("images"));
        let msg = store
            .pull(&format!("oci:{}:v9", l.display()))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.ends_with("no manifest tagged \"v9\" (tags: latest)"),
            "{msg}"
        );
        let msg = store
            .pull("oci:/no/such/layout")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("OCI layout directory /no/such/layout does not exist"),
            "{msg}"
        );
        Ok(())
    }
}
