//! kubeconfig as kubectl reads it: `--kubeconfig`, else every file of `KUBECONFIG`
//! merged (the first file to set a name or `current-context` wins), else
//! `~/.kube/config`; then one context resolved into what the HTTP client needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use serde::Deserialize;

/// What the user chose on the command line.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// `--kubeconfig`: this file only.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: instead of `current-context`.
    pub context: Option<String>,
    /// `-n/--namespace`: instead of the context's namespace.
    pub namespace: Option<String>,
}

/// Everything needed to talk to one API server as one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The context it came from.
    pub context: String,
    /// `http://…` or `https://…`.
    pub server: String,
    /// PEM of the CA(s) to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any server certificate.
    pub insecure_skip_tls_verify: bool,
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// `-n`, else the context's, else `default`.
    pub namespace: String,
    /// True when `-n` was given (manifests naming another namespace are then an error).
    pub namespace_explicit: bool,
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    clusters: Option<Vec<Named<Cluster>>>,
    #[serde(default)]
    users: Option<Vec<Named<User>>>,
    #[serde(default)]
    contexts: Option<Vec<Named<ContextEntry>>>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Named<T> {
    name: String,
    /// The `cluster:`, `user:` or `context:` body.
    #[serde(rename = "cluster", alias = "user", alias = "context")]
    value: Option<T>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Cluster {
    server: Option<String>,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<PathBuf>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(default, rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct ContextEntry {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

/// The merged view of one or more kubeconfig files.
#[derive(Debug, Default)]
pub struct Kubeconfig {
    clusters: BTreeMap<String, Cluster>,
    users: BTreeMap<String, User>,
    contexts: BTreeMap<String, ContextEntry>,
    current_context: Option<String>,
    /// The files read, for error messages.
    sources: Vec<PathBuf>,
}

impl Kubeconfig {
    /// The files kubectl would read, in order: `--kubeconfig`, else `KUBECONFIG`, else
    /// `~/.kube/config`.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Kubeconfig> {
        if let Some(path) = explicit {
            let mut merged = Kubeconfig::default();
            merged.merge_file(path)?;
            return Ok(merged);
        }
        let paths: Vec<PathBuf> = match std::env::var_os("KUBECONFIG") {
            Some(list) if !list.is_empty() => std::env::split_paths(&list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            _ => std::env::var_os("HOME")
                .map(|home| vec![PathBuf::from(home).join(".kube/config")])
                .unwrap_or_default(),
        };
        let mut merged = Kubeconfig::default();
        for path in paths.iter().filter(|p| p.exists()) {
            merged.merge_file(path)?;
        }
        if merged.sources.is_empty() {
            bail!(
                "no kubeconfig found (looked at {}): set KUBECONFIG, pass --kubeconfig, or start a cluster with `drover up`",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(merged)
    }

    fn merge_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        self.merge_text(&text, path)
    }

    /// Merges one file's text; relative file references resolve against `path`'s directory.
    fn merge_text(&mut self, text: &str, path: &Path) -> anyhow::Result<()> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_yaml::from_str(text)
                .with_context(|| format!("kubeconfig {} is not valid", path.display()))?
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        for entry in file.clusters.unwrap_or_default() {
            let mut cluster = entry.value.unwrap_or_default();
            cluster.certificate_authority = cluster.certificate_authority.map(resolve);
            self.clusters.entry(entry.name).or_insert(cluster);
        }
        for entry in file.users.unwrap_or_default() {
            let mut user = entry.value.unwrap_or_default();
            user.token_file = user.token_file.map(resolve);
            self.users.entry(entry.name).or_insert(user);
        }
        for entry in file.contexts.unwrap_or_default() {
            self.contexts
                .entry(entry.name)
                .or_insert(entry.value.unwrap_or_default());
        }
        if self.current_context.as_deref().is_none_or(str::is_empty) {
            self.current_context = file.current_context.filter(|c| !c.is_empty());
        }
        self.sources.push(path.to_path_buf());
        Ok(())
    }

    fn where_(&self) -> String {
        self.sources
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The connection settings of the chosen (or current) context.
    pub fn resolve(&self, selection: &Selection) -> anyhow::Result<ClientConfig> {
        let context_name = selection
            .context
            .clone()
            .or_else(|| self.current_context.clone())
            .ok_or_else(|| {
                anyhow!(
                    "kubeconfig {} sets no current-context: pass --context",
                    self.where_()
                )
            })?;
        let context = self.contexts.get(&context_name).ok_or_else(|| {
            anyhow!(
                "context \"{context_name}\" is not in kubeconfig {}",
                self.where_()
            )
        })?;
        let cluster_name = context.cluster.as_deref().unwrap_or_default();
        let cluster = self.clusters.get(cluster_name).ok_or_else(|| {
            anyhow!(
                "context \"{context_name}\" names cluster \"{cluster_name}\", which kubeconfig {} does not define",
                self.where_()
            )
        })?;
        let server = cluster
            .server
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("clusters[\"{cluster_name}\"].cluster.server is not set"))?;
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            bail!("clusters[\"{cluster_name}\"].cluster.server: {server:?} must start with http:// or https://");
        }
        let ca_pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) if !data.trim().is_empty() => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .with_context(|| {
                        format!(
                            "clusters[\"{cluster_name}\"].cluster.certificate-authority-data is not valid base64"
                        )
                    })?,
            ),
            (_, Some(path)) => Some(std::fs::read(path).with_context(|| {
                format!(
                    "clusters[\"{cluster_name}\"].cluster.certificate-authority: reading {}",
                    path.display()
                )
            })?),
            _ => None,
        };
        if ca_pem.is_some() && cluster.insecure_skip_tls_verify {
            bail!("clusters[\"{cluster_name}\"]: specifying a root certificates file with insecure-skip-tls-verify is not allowed");
        }
        let user = match context.user.as_deref().filter(|u| !u.is_empty()) {
            None => User::default(),
            Some(name) => self.users.get(name).cloned().ok_or_else(|| {
                anyhow!(
                    "context \"{context_name}\" names user \"{name}\", which kubeconfig {} does not define",
                    self.where_()
                )
            })?,
        };
        let user_name = context.user.as_deref().unwrap_or_default();
        let bearer_token = match (&user.token, &user.token_file) {
            (Some(token), _) if !token.is_empty() => Some(token.clone()),
            (_, Some(path)) => {
                let token = std::fs::read_to_string(path).with_context(|| {
                    format!(
                        "users[\"{user_name}\"].user.tokenFile: reading {}",
                        path.display()
                    )
                })?;
                Some(token.trim().to_string())
            }
            _ => None,
        };
        let namespace_explicit = selection.namespace.is_some();
        let namespace = selection
            .namespace
            .clone()
            .or_else(|| context.namespace.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".to_string());
        Ok(ClientConfig {
            context: context_name,
            server: server.trim_end_matches('/').to_string(),
            ca_pem,
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            bearer_token,
            namespace,
            namespace_explicit,
        })
    }
}

/// Loads the kubeconfig the selection points at and resolves its context.
pub fn client_config(selection: &Selection) -> anyhow::Result<ClientConfig> {
    Kubeconfig::load(selection.kubeconfig.as_deref())?.resolve(selection)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "\
apiVersion: v1
kind: Config
clusters:
- name: drover
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: LS0tLS1CRUdJTg==
- name: plain
  cluster: {server: 'http://127.0.0.1:8080/'}
users:
- name: admin
  user: {token: s3cret}
- name: agent
  user: {tokenFile: agent.token}
contexts:
- name: drover
  context: {cluster: drover, user: admin, namespace: prod}
- name: local
  context: {cluster: plain, user: agent}
current-context: drover
";

    const SECOND: &str = "\
clusters:
- name: drover
  cluster: {server: 'https://ignored:1'}
- name: other
  cluster: {server: 'https://other:6443', certificate-authority: certs/ca.pem}
contexts:
- name: other
  context: {cluster: other}
- name: insecure
  context: {cluster: insecure}
current-context: other
";

    fn merged(dir: &Path) -> Kubeconfig {
        let mut k = Kubeconfig::default();
        k.merge_text(FIRST, &dir.join("first")).expect("first");
        k.merge_text(SECOND, &dir.join("second")).expect("second");
        k
    }

    #[test]
    fn first_file_wins_each_name_and_the_current_context() {
        let dir = tempfile::tempdir().expect("dir");
        let k = merged(dir.path());
        let c = k.resolve(&Selection::default()).expect("resolves");
        assert_eq!(c.context, "drover");
        assert_eq!(c.server, "https://10.0.0.1:6443");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"-----BEGIN"[..]));
        assert_eq!(c.bearer_token.as_deref(), Some("s3cret"));
        assert_eq!(c.namespace, "prod");
        assert!(!c.namespace_explicit);
    }

    #[test]
    fn context_and_namespace_flags_override() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("agent.token"), "tok-123\n").expect("token");
        let k = merged(dir.path());
        let sel = Selection {
            context: Some("local".into()),
            namespace: Some("team-a".into()),
            ..Selection::default()
        };
        let c = k.resolve(&sel).expect("resolves");
        assert_eq!(c.server, "http://127.0.0.1:8080");
        assert_eq!(c.bearer_token.as_deref(), Some("tok-123"));
        assert_eq!(c.namespace, "team-a");
        assert!(c.namespace_explicit);
        assert_eq!(c.ca_pem, None);
    }

    #[test]
    fn relative_ca_files_resolve_against_their_kubeconfig() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("certs")).expect("mkdir");
        std::fs::write(dir.path().join("certs/ca.pem"), "PEM").expect("ca");
        let k = merged(dir.path());
        let sel = Selection {
            context: Some("other".into()),
            ..Selection::default()
        };
        let c = k.resolve(&sel).expect("resolves");
        assert_eq!(c.ca_pem.as_deref(), Some(&b"PEM"[..]));
        assert_eq!(c.namespace, "default");
        assert_eq!(c.bearer_token, None);
    }

    #[test]
    fn errors_name_what_is_missing() {
        let dir = tempfile::tempdir().expect("dir");
        let k = merged(dir.path());
        let err = |ctx: &str| {
            k.resolve(&Selection {
                context: Some(ctx.into()),
                ..Selection::default()
            })
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
        };
        assert!(err("nope").contains("context \"nope\" is not in kubeconfig"));
        assert!(err("insecure").contains("names cluster \"insecure\""));
        // tokenFile does not exist in this directory.
        assert!(err("local").contains("users[\"agent\"].user.tokenFile"));
    }

    #[test]
    fn ca_and_insecure_together_are_refused() {
        let text = "clusters:\n- name: c\n  cluster: {server: 'https://x', insecure-skip-tls-verify: true, certificate-authority-data: UEVN}\ncontexts:\n- name: c\n  context: {cluster: c}\ncurrent-context: c\n";
        let mut k = Kubeconfig::default();
        k.merge_text(text, Path::new("/k")).expect("parses");
        let e = k
            .resolve(&Selection::default())
            .err()
            .map(|e| e.to_string());
        assert!(e.unwrap_or_default().contains("insecure-skip-tls-verify"));
    }

    #[test]
    fn bad_base64_names_the_field() {
        let text = "clusters:\n- name: c\n  cluster: {server: 'https://x', certificate-authority-data: '%%%'}\ncontexts:\n- name: c\n  context: {cluster: c}\ncurrent-context: c\n";
        let mut k = Kubeconfig::default();
        k.merge_text(text, Path::new("/k")).expect("parses");
        let e = k
            .resolve(&Selection::default())
            .err()
            .map(|e| e.to_string());
        assert!(e
            .unwrap_or_default()
            .contains("certificate-authority-data is not valid base64"));
    }

    #[test]
    fn the_kubeconfig_drover_up_writes_resolves() {
        let text = "apiVersion: v1\nkind: Config\nclusters:\n- name: drover\n  cluster:\n    server: http://127.0.0.1:4321\nusers:\n- name: admin\n  user: {}\ncontexts:\n- name: drover\n  context:\n    cluster: drover\n    user: admin\n    namespace: default\ncurrent-context: drover\n";
        let mut k = Kubeconfig::default();
        k.merge_text(text, Path::new("/k")).expect("parses");
        let c = k.resolve(&Selection::default()).expect("resolves");
        assert_eq!(c.server, "http://127.0.0.1:4321");
        assert_eq!(c.bearer_token, None);
    }
}
