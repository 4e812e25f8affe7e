//! The Rust `kube` crate, unchanged, as a client: over TLS with the CA and a bearer
//! token from a kubeconfig, it lists, watches and patches (merge and server-side apply).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use drover_controller::apiserver::auth::{Authenticator, Role, TokenEntry};
use drover_controller::apiserver::pki;
use drover_controller::apiserver::secure::{serve_with, tls_config, Security};
use drover_store::{EmbeddedStore, Store};
use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

/// What keeps a test's store alive.
struct Backing {
    _dir: tempfile::TempDir,
    _etcd: Option<drover_store::EtcdServer>,
}

async fn start(on_etcd: bool) -> (kube::Client, Backing) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (store, etcd): (Arc<dyn Store>, _) = if on_etcd {
        let etcd = tokio::task::spawn_blocking(drover_store::EtcdServer::start)
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("{e}"));
        let store = drover_store::EtcdStore::connect(&[etcd.endpoint().to_string()])
            .await
            .expect("etcd");
        (Arc::new(store), Some(etcd))
    } else {
        (
            Arc::new(EmbeddedStore::open(dir.path().join("store")).expect("store")),
            None,
        )
    };
    let pki = pki::ensure(&dir.path().join("pki"), &[]).expect("pki");
    let security = Security {
        tls: Some(tls_config(&pki).expect("tls")),
        auth: Some(Arc::new(Authenticator::new(&[TokenEntry {
            token: "kube-test-token".into(),
            user: "admin".into(),
            role: Role::Admin,
            node: None,
        }]))),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve_with(
        store,
        listener,
        security,
        std::future::pending(),
    ));
    let ca = base64::engine::general_purpose::STANDARD.encode(&pki.ca_cert_pem);
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: d\n  cluster:\n    server: https://{addr}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: kube-test-token\ncontexts:\n- name: d\n  context: {{cluster: d, user: u, namespace: default}}\ncurrent-context: d\n"
    );
    let kc = Kubeconfig::from_yaml(&kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    (
        kube::Client::try_from(config).expect("client"),
        Backing {
            _dir: dir,
            _etcd: etcd,
        },
    )
}

fn apps(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("drover.dev", "v1alpha1", "App");
    Api::namespaced_with(client.clone(), "default", &ApiResource::from_gvk(&gvk))
}

fn app(name: &str, instances: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "drover.dev/v1alpha1",
        "kind": "App",
        "metadata": {"name": name, "labels": {"tier": "web"}},
        "spec": {"instances": instances, "container": {"cmd": "sleep 100"}}
    }))
    .expect("object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kube_lists_watches_and_patches() {
    lists_watches_and_patches(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_kube_lists_watches_and_patches() {
    lists_watches_and_patches(true).await;
}

async fn lists_watches_and_patches(on_etcd: bool) {
    let (client, _backing) = start(on_etcd).await;
    let api = apps(&client);
    api.create(&PostParams::default(), &app("web", 2))
        .await
        .expect("create");
    api.create(&PostParams::default(), &app("db", 1))
        .await
        .expect("create");

    let list = api
        .list(&ListParams::default().labels("tier=web"))
        .await
        .expect("list");
    let mut names: Vec<String> = list
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, vec!["db", "web"]);
    let rv = list
        .metadata
        .resource_version
        .clone()
        .expect("list resourceVersion");

    let paged = api
        .list(&ListParams::default().limit(1))
        .await
        .expect("page");
    assert_eq!(paged.items.len(), 1);
    assert!(
        paged.metadata.continue_.is_some(),
        "a continue token for the second page"
    );

    let mut events = api
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instances": 5}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(patched.data["spec"]["instances"], 5);
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await {
        Ok(Ok(Some(WatchEvent::Modified(obj)))) => {
            assert_eq!(obj.metadata.name.as_deref(), Some("web"));
            assert_eq!(obj.data["spec"]["instances"], 5);
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }

    let applied = api
        .patch(
            "cache",
            &PatchParams::apply("kube-test"),
            &Patch::Apply(json!({
                "apiVersion": "drover.dev/v1alpha1",
                "kind": "App",
                "metadata": {"name": "cache"},
                "spec": {"instances": 3, "container": {"cmd": "sleep 100"}}
            })),
        )
        .await
        .expect("server-side apply creates");
    assert_eq!(applied.data["spec"]["instances"], 3);
    let managers: Vec<String> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, vec!["kube-test"]);
    match tokio::time::timeout(Duration::from_secs(10), events.try_next()).await {
        Ok(Ok(Some(WatchEvent::Added(obj)))) => {
            assert_eq!(obj.metadata.name.as_deref(), Some("cache"))
        }
        other => panic!("expected ADDED, got {other:?}"),
    }

    let err = api.get("nope").await.expect_err("missing");
    match err {
        kube::Error::Api(status) => assert_eq!(status.code, 404),
        other => panic!("expected an API error, got {other:?}"),
    }
}
