//! What `up`, `server` and `controller` share: the store they open, the PKI and tokens
//! in the data directory, the serving security, and the kubeconfig they write for
//! kubectl and drover alike.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use drover_controller::apiserver::auth::{
    load_or_create_tokens, new_token, save_tokens, Authenticator, Role, TokenEntry,
};
use drover_controller::apiserver::pki;
use drover_controller::apiserver::secure::{tls_config, Security};
use drover_store::{EmbeddedStore, EtcdStore, Store};

use crate::server::StoreKind;

/// Which store keeps the cluster state: the flags of `server` and `controller`.
#[derive(clap::Args, Clone, Debug)]
pub struct StoreArgs {
    /// Which store keeps the cluster state.
    #[arg(long, value_enum, default_value = "embedded")]
    pub store: StoreKind,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub etcd_endpoints: Vec<String>,
}

/// Opens the store `args` name: the embedded one under `data_dir/store` (one process
/// at a time), or etcd at its endpoints.
pub async fn open_store(args: &StoreArgs, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let etcd_endpoints = &args.etcd_endpoints;
    Ok(match args.store {
        StoreKind::Embedded => {
            let dir = data_dir.join("store");
            Arc::new(
                EmbeddedStore::open(&dir)
                    .with_context(|| format!("opening the embedded store in {}", dir.display()))?,
            )
        }
        StoreKind::Etcd => Arc::new(
            EtcdStore::connect(etcd_endpoints)
                .await
                .with_context(|| format!("connecting to etcd at {}", etcd_endpoints.join(",")))?,
        ),
    })
}

/// How clients reach the server, for the kubeconfig.
pub struct Access {
    pub server: String,
    pub ca_pem: Option<String>,
    pub token: Option<String>,
    /// The token of the local agent, when one was asked for.
    pub agent_token: Option<String>,
}

/// TLS (with a CA generated on first start) and bearer tokens (an admin token
/// generated on first start), or neither with `insecure`.
///
/// `local_agent`: the node name of an agent running in this process (`drover up`); an
/// `agent` token for it is added to the token file if it has none.
pub fn security(
    data_dir: &Path,
    addr: std::net::SocketAddr,
    insecure: bool,
    local_agent: Option<&str>,
) -> anyhow::Result<(Security, Access)> {
    if insecure {
        return Ok((
            Security::default(),
            Access {
                server: format!("http://{addr}"),
                ca_pem: None,
                token: None,
                agent_token: local_agent.map(|_| "insecure".to_string()),
            },
        ));
    }
    let mut hosts = vec![addr.ip().to_string()];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        hosts.push(h.trim().to_string());
    }
    let pki = pki::ensure(&data_dir.join("pki"), &hosts)
        .context("preparing the cluster's certificates")?;
    let token_file = data_dir.join("tokens.yaml");
    let mut tokens = load_or_create_tokens(&token_file).context("reading the token file")?;
    let agent_token = match local_agent {
        Some(node) => Some(agent_token_for(&token_file, &mut tokens, node)?),
        None => None,
    };
    let admin = tokens
        .iter()
        .find(|t| t.role == Role::Admin)
        .map(|t| t.token.clone())
        .context("the token file has no admin token")?;
    let security = Security {
        tls: Some(tls_config(&pki).context("configuring TLS")?),
        auth: Some(Arc::new(Authenticator::new(&tokens))),
    };
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Ok((
        security,
        Access {
            server: format!("https://{host}:{}", addr.port()),
            ca_pem: Some(pki.ca_cert_pem),
            token: Some(admin),
            agent_token,
        },
    ))
}

/// The `agent` token of `node`, created (and saved) if the file has none.
fn agent_token_for(
    path: &Path,
    tokens: &mut Vec<TokenEntry>,
    node: &str,
) -> anyhow::Result<String> {
    if let Some(t) = tokens
        .iter()
        .find(|t| t.role == Role::Agent && t.node.as_deref() == Some(node))
    {
        return Ok(t.token.clone());
    }
    let entry = TokenEntry {
        token: new_token(),
        user: format!("system:node:{node}"),
        role: Role::Agent,
        node: Some(node.to_string()),
    };
    let token = entry.token.clone();
    tokens.push(entry);
    save_tokens(path, tokens).context("saving the token file")?;
    Ok(token)
}

/// A kubeconfig as kubectl reads it: one cluster, one user, one context.
pub fn write_kubeconfig(path: &Path, access: &Access) -> anyhow::Result<()> {
    let mut cluster = format!("    server: {}\n", access.server);
    if let Some(ca) = &access.ca_pem {
        let data = base64::engine::general_purpose::STANDARD.encode(ca);
        cluster.push_str(&format!("    certificate-authority-data: {data}\n"));
    }
    let user = match &access.token {
        Some(t) => format!("  user:\n    token: {t}\n"),
        None => "  user: {}\n".to_string(),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: drover\n  cluster:\n{cluster}users:\n- name: admin\n{user}contexts:\n- name: drover\n  context:\n    cluster: drover\n    user: admin\n    namespace: default\ncurrent-context: drover\n"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("protecting {}", path.display()))
}
