//! A `kube::Client` for the Drover API server, and the typed-by-name handles on the
//! two kinds the agent touches (Task, Node) as `DynamicObject`s.

use std::path::{Path, PathBuf};

use drover_api::{DroverKind, Node, Task, API_VERSION, GROUP, VERSION};
use kube::api::{ApiResource, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::error::Error;

/// How to reach and authenticate to the API server.
#[derive(Clone, Debug)]
pub enum Connection {
    /// A server URL, a CA bundle (PEM file) and a bearer token.
    Token {
        /// `https://host:port`.
        server: String,
        /// PEM file of the CA that signed the server's certificate (else the system roots).
        ca_file: Option<PathBuf>,
        /// Bearer token (an `agent` token bound to this node).
        token: String,
    },
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
}

/// Builds a client for `connection`.
pub async fn connect(connection: &Connection) -> Result<Client, Error> {
    let kubeconfig = match connection {
        Connection::Kubeconfig(path) => Kubeconfig::read_from(path)?,
        Connection::Token {
            server,
            ca_file,
            token,
        } => token_kubeconfig(server, ca_file.as_deref(), token)?,
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// A one-context kubeconfig for a server, CA file and token, so kube reads the CA the
/// same way it does for kubectl's files.
fn token_kubeconfig(
    server: &str,
    ca_file: Option<&Path>,
    token: &str,
) -> Result<Kubeconfig, Error> {
    let mut cluster = serde_json::json!({ "server": server });
    if let Some(ca) = ca_file {
        cluster["certificate-authority"] = serde_json::Value::String(ca.display().to_string());
    }
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "drover", "cluster": cluster }],
        "users": [{ "name": "agent", "user": { "token": token } }],
        "contexts": [{ "name": "drover", "context": { "cluster": "drover", "user": "agent" } }],
        "current-context": "drover",
    });
    serde_json::from_value(doc).map_err(|source| Error::Decode {
        what: "the client configuration".into(),
        source,
    })
}

/// The API resource of a Drover kind.
pub fn resource<K: DroverKind>() -> ApiResource {
    ApiResource {
        group: GROUP.to_string(),
        version: VERSION.to_string(),
        api_version: API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        plural: K::PLURAL.to_string(),
    }
}

/// Tasks across all namespaces.
pub fn all_tasks(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource::<Task>())
}

/// Tasks of one namespace.
pub fn tasks_in(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &resource::<Task>())
}

/// Nodes (cluster-scoped).
pub fn nodes(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource::<Node>())
}

/// Decodes a `DynamicObject` into a Drover kind, with its defaults applied (the
/// server stores specs as written).
pub fn decode<K>(obj: DynamicObject) -> Result<K, Error>
where
    K: serde::de::DeserializeOwned + drover_api::Defaulting + DroverKind,
{
    let what = format!(
        "{} {}",
        K::KIND,
        obj.metadata.name.as_deref().unwrap_or("<unnamed>")
    );
    let value = serde_json::to_value(obj).map_err(|source| Error::Decode {
        what: what.clone(),
        source,
    })?;
    let mut object: K =
        serde_json::from_value(value).map_err(|source| Error::Decode { what, source })?;
    object.apply_defaults();
    Ok(object)
}

/// Encodes a Drover object as a `DynamicObject` for create/replace calls.
pub fn encode<K: serde::Serialize + DroverKind>(object: &K) -> Result<DynamicObject, Error> {
    let what = format!("a {}", K::KIND);
    let value = serde_json::to_value(object).map_err(|source| Error::Decode {
        what: what.clone(),
        source,
    })?;
    serde_json::from_value(value).map_err(|source| Error::Decode { what, source })
}
