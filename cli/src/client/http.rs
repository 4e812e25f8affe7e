//! The HTTP side of the client: one reqwest client configured from a kubeconfig context
//! (TLS roots, insecure mode, bearer token), JSON requests whose failures become
//! [`ApiError`]s read from Kubernetes `Status` bodies, and watch streams.

use std::pin::Pin;

use anyhow::Context as _;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::client::kubeconfig::ClientConfig;

/// What `kubectl get` asks for to receive a server-side Table.
pub const ACCEPT_TABLE: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

/// The body types of PATCH.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";
pub const MERGE_PATCH: &str = "application/merge-patch+json";

/// An error answer of the API server, read from its `Status` body when it sent one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `reason` (`NotFound`, `Invalid`, …), or the HTTP reason phrase.
    pub reason: String,
    /// The Status message, which names the object and the field.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Reads a `Status` body, or describes a body that is not one.
    pub fn from_body(code: StatusCode, body: &[u8]) -> ApiError {
        let status: Option<Value> = serde_json::from_slice(body).ok();
        let status = status.filter(|s| s.get("kind").and_then(Value::as_str) == Some("Status"));
        match status {
            Some(s) => ApiError {
                code: s
                    .get("code")
                    .and_then(Value::as_u64)
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(code.as_u16()),
                reason: s
                    .get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                message: s
                    .get("message")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("the server answered {code}")),
            },
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                ApiError {
                    code: code.as_u16(),
                    reason: code.canonical_reason().unwrap_or_default().to_string(),
                    message: if text.is_empty() {
                        format!("the server answered {code}")
                    } else {
                        format!("the server answered {code}: {}", truncate(text, 300))
                    },
                }
            }
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// True when `e` is the API server saying the object does not exist.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>().is_some_and(|a| a.code == 404)
}

/// A successful answer: its status code and JSON body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

/// A client of one API server.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    /// The namespace commands use when none is given.
    pub namespace: String,
    /// Whether `-n` was given explicitly.
    pub namespace_explicit: bool,
}

impl Client {
    /// A client for `config`'s server, trusting its CA (or nothing, when insecure) and
    /// sending its bearer token.
    pub fn new(config: &ClientConfig) -> anyhow::Result<Client> {
        let mut headers = HeaderMap::new();
        if let Some(token) = &config.bearer_token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the kubeconfig token contains characters not allowed in a header")?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .connect_timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = &config.ca_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem).with_context(|| {
                format!(
                    "the certificate authority of context \"{}\" is not PEM",
                    config.context
                )
            })?;
            if roots.is_empty() {
                anyhow::bail!(
                    "the certificate authority of context \"{}\" holds no certificate",
                    config.context
                );
            }
            builder = builder.tls_certs_only(roots);
        }
        if config.insecure_skip_tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .context("configuring the HTTP client for the API server")?;
        Ok(Client {
            http,
            server: config.server.clone(),
            namespace: config.namespace.clone(),
            namespace_explicit: config.namespace_explicit,
        })
    }

    /// The API server's base URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<reqwest::Url> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.server))
            .with_context(|| format!("{}{path} is not a URL", self.server))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = self.url(path, query)?;
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .header(ACCEPT, accept);
        if let Some((content_type, bytes)) = body {
            request = request.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the API server at {}", self.server))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        Err(ApiError::from_body(status, &bytes).into())
    }

    /// Sends a request and reads a JSON answer.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        accept: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> anyhow::Result<Answer> {
        let response = self.send(method.clone(), path, query, accept, body).await?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("the answer to {method} {path} is not JSON"))?
        };
        Ok(Answer { status, body })
    }

    /// GET as JSON.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        Ok(self
            .request(Method::GET, path, query, "application/json", None)
            .await?
            .body)
    }

    /// GET as a `meta.k8s.io` Table.
    pub async fn get_table(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        Ok(self
            .request(Method::GET, path, query, ACCEPT_TABLE, None)
            .await?
            .body)
    }

    /// PATCH with a body of `content_type`.
    pub async fn patch(
        &self,
        path: &str,
        query: &[(&str, &str)],
        content_type: &str,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        let bytes = serde_json::to_vec(body).context("encoding the patch")?;
        self.request(
            Method::PATCH,
            path,
            query,
            "application/json",
            Some((content_type, bytes)),
        )
        .await
    }

    /// PUT of a whole object.
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let bytes = serde_json::to_vec(body).context("encoding the object")?;
        self.request(
            Method::PUT,
            path,
            &[],
            "application/json",
            Some(("application/json", bytes)),
        )
        .await
    }

    /// DELETE; the answer is the deleted object or a Status.
    pub async fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        let options =
            br#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#;
        self.request(
            Method::DELETE,
            path,
            &[],
            "application/json",
            Some(("application/json", options.to_vec())),
        )
        .await
    }

    /// GET whose answer is read as it arrives (task logs), as raw bytes.
    pub async fn get_stream(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<impl Stream<Item = reqwest::Result<Vec<u8>>> + Send + Unpin + use<>> {
        let response = self
            .send(Method::GET, path, query, "text/plain, */*", None)
            .await?;
        Ok(Box::pin(
            response
                .bytes_stream()
                .map(|chunk| chunk.map(|b| b.to_vec())),
        ))
    }

    /// Starts a watch (`watch=true` is added to `query`).
    pub async fn watch(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<WatchStream> {
        let mut query = query.to_vec();
        query.push(("watch", "true"));
        let response = self
            .send(Method::GET, path, &query, "application/json", None)
            .await?;
        Ok(WatchStream {
            bytes: Box::pin(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map(|b| b.to_vec())),
            ),
            buffer: Vec::new(),
        })
    }
}

/// One watch event.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED` or `BOOKMARK`.
    pub kind: String,
    pub object: Value,
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// The events of a watch, one JSON object per line.
pub struct WatchStream {
    bytes: ByteStream,
    buffer: Vec<u8>,
}

impl WatchStream {
    /// The next event; `None` when the server closed the stream. An `ERROR` event (for
    /// instance 410 Expired) is returned as an [`ApiError`].
    pub async fn next(&mut self) -> anyhow::Result<Option<WatchEvent>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_event(&line).map(Some);
            }
            match self.bytes.next().await {
                Some(chunk) => self
                    .buffer
                    .extend_from_slice(&chunk.context("reading the watch stream")?),
                None if self.buffer.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => {
                    let line = std::mem::take(&mut self.buffer);
                    return parse_event(&line).map(Some);
                }
            }
        }
    }
}

fn parse_event(line: &[u8]) -> anyhow::Result<WatchEvent> {
    let mut event: Value =
        serde_json::from_slice(line).context("the watch stream sent a line that is not JSON")?;
    let kind = event
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let object = event.get_mut("object").map(Value::take).unwrap_or_default();
    if kind == "ERROR" {
        let code = object
            .get("code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&object).unwrap_or_default();
        return Err(ApiError::from_body(code, &body).into());
    }
    Ok(WatchEvent { kind, object })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::{mpsc, Arc};

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    const CA: &str = include_str!("testdata/ca.pem");
    const OTHER_CA: &str = include_str!("testdata/other-ca.pem");
    const SERVER_CERT: &str = include_str!("testdata/server.pem");
    const SERVER_KEY: &str = include_str!("testdata/server.key");

    /// An HTTPS server on 127.0.0.1 with a certificate signed by `CA`; it answers every
    /// request with a `/version` body and reports the request head it read.
    fn https_server() -> (String, mpsc::Receiver<String>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = CertificateDer::pem_slice_iter(SERVER_CERT.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("server certificate");
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).expect("server key");
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .expect("server TLS config"),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (heads, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, stream);
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if head.is_empty() {
                    continue; // the client refused the handshake
                }
                let _ = heads.send(String::from_utf8_lossy(&head).into_owned());
                let body = r#"{"major":"1","minor":"30","gitVersion":"v1.30.0-test"}"#;
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        (format!("https://127.0.0.1:{port}"), received)
    }

    fn config(server: &str, ca: Option<&str>, insecure: bool, token: Option<&str>) -> ClientConfig {
        ClientConfig {
            context: "test".into(),
            server: server.into(),
            ca_pem: ca.map(|c| c.as_bytes().to_vec()),
            insecure_skip_tls_verify: insecure,
            bearer_token: token.map(str::to_string),
            namespace: "default".into(),
            namespace_explicit: false,
        }
    }

    #[tokio::test]
    async fn trusts_the_kubeconfig_ca_and_sends_the_bearer_token() {
        let (server, heads) = https_server();
        let client =
            Client::new(&config(&server, Some(CA), false, Some("s3cret"))).expect("client");
        let version = client
            .get("/version", &[])
            .await
            .expect("GET /version over TLS");
        assert_eq!(version["gitVersion"], "v1.30.0-test");
        let head = heads.recv().expect("request head").to_ascii_lowercase();
        assert!(head.starts_with("get /version http/1.1"), "{head}");
        assert!(head.contains("authorization: bearer s3cret"), "{head}");
    }

    #[tokio::test]
    async fn refuses_a_server_another_ca_signed() {
        let (server, _heads) = https_server();
        let client = Client::new(&config(&server, Some(OTHER_CA), false, None)).expect("client");
        let err = client
            .get("/version", &[])
            .await
            .err()
            .map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(err.contains("cannot reach the API server"), "{err}");
        assert!(err.to_ascii_lowercase().contains("certificate"), "{err}");
    }

    #[tokio::test]
    async fn insecure_skip_tls_verify_accepts_any_certificate() {
        let (server, _heads) = https_server();
        let client = Client::new(&config(&server, None, true, None)).expect("client");
        assert!(client.get("/version", &[]).await.is_ok());
    }

    #[test]
    fn a_ca_without_certificates_is_an_error() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let err = Client::new(&config("https://x", Some("not a pem"), false, None))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("certificate authority of context \"test\""),
            "{err}"
        );
    }

    #[test]
    fn status_bodies_become_api_errors() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"App.drover.dev \"web\" is invalid: spec.instances: Invalid value: -1: must be >= 0","reason":"Invalid","code":422}"#;
        let e = ApiError::from_body(StatusCode::UNPROCESSABLE_ENTITY, body);
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        assert!(e.message.contains("spec.instances"));
        let e = ApiError::from_body(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(
            e.message,
            "the server answered 502 Bad Gateway: upstream down"
        );
    }

    #[test]
    fn watch_error_events_are_errors() {
        let line = br#"{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410,"message":"too old resource version: 5 (1000)"}}"#;
        let e = parse_event(line).expect_err("an error");
        let api = e.downcast_ref::<ApiError>().expect("an ApiError");
        assert_eq!((api.code, api.reason.as_str()), (410, "Expired"));
        let ok = parse_event(br#"{"type":"ADDED","object":{"kind":"App"}}"#).expect("event");
        assert_eq!(ok.kind, "ADDED");
    }
}
