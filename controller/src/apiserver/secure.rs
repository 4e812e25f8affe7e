//! Serving over TLS with bearer-token authentication: the rustls configuration from
//! the cluster's PKI, the middleware that turns a token into an [`Identity`] (401
//! without one), and the accept loop. Authorization happens per request in `server`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::apiserver::auth::Authenticator;
use crate::apiserver::pki::Pki;
use crate::apiserver::server::{router, ApiState};
use drover_store::Store;

/// How the API is served: TLS and authentication each on or off (both on in
/// `drover up` / `drover server`; off only with `--insecure` and in in-process tests).
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<Arc<ServerConfig>>,
    pub auth: Option<Arc<Authenticator>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the serving certificate: {0}")]
    Pem(#[from] rustls::pki_types::pem::Error),
    #[error("configuring TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

pub fn tls_config(pki: &Pki) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes())?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Paths anyone may read, as Kubernetes' `system:public-info-viewer` allows.
fn public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version")
}

async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    if public(req.uri().path()) {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    match auth.authenticate(header) {
        Ok(identity) => {
            req.extensions_mut().insert(identity);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// Serves the API with `security` until `shutdown` resolves.
pub async fn serve_with(
    store: Arc<dyn Store>,
    listener: tokio::net::TcpListener,
    security: Security,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_state_with(ApiState::new(store), listener, security, shutdown).await
}

/// [`serve_with`] for a configured [`ApiState`] (e.g. its node lease duration).
pub async fn serve_state_with(
    state: ApiState,
    listener: tokio::net::TcpListener,
    security: Security,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut state = state;
    state.auth = security.auth.clone();
    let mut app = router(state);
    if let Some(auth) = security.auth.clone() {
        app = app.layer(axum::middleware::from_fn_with_state(auth, authenticate));
    }
    let Some(tls) = security.tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let acceptor = TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = TowerToHyperService::new(app);
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
