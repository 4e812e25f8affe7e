//! An API server on 127.0.0.1:0 over an embedded store in a temp dir (or a real etcd),
//! and a minimal
//! HTTP/1.1 client to talk to it byte for byte.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use drover_store::{EmbeddedStore, Store};

pub struct TestServer {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
    _etcd: Option<drover_store::EtcdServer>,
    _runtime: tokio::runtime::Runtime,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(Default::default())
    }

    /// The same server on a real etcd started for this test.
    pub fn start_on_etcd() -> TestServer {
        let etcd = drover_store::EtcdServer::start().unwrap_or_else(|e| panic!("{e}"));
        Self::start_on(Default::default(), Some(etcd))
    }

    /// With authentication (and/or TLS) as `drover up` serves.
    pub fn start_with(security: drover_controller::apiserver::secure::Security) -> TestServer {
        Self::start_on(security, None)
    }

    /// On `etcd` if given, else on an embedded store in a temp dir.
    fn start_on(
        security: drover_controller::apiserver::secure::Security,
        etcd: Option<drover_store::EtcdServer>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let store: Arc<dyn Store> = match &etcd {
            Some(e) => Arc::new(
                runtime
                    .block_on(drover_store::EtcdStore::connect(&[e
                        .endpoint()
                        .to_string()]))
                    .expect("connect to etcd"),
            ),
            None => Arc::new(EmbeddedStore::open(dir.path()).expect("store")),
        };
        let (addr, store) = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let s = store.clone();
            tokio::spawn(async move {
                let _ = drover_controller::apiserver::secure::serve_with(
                    s,
                    listener,
                    security,
                    std::future::pending(),
                )
                .await;
            });
            (addr, store)
        });
        TestServer {
            addr,
            store,
            _dir: dir,
            _etcd: etcd,
            _runtime: runtime,
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        // A server may answer (413) before reading a huge body: ignore write errors then.
        let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        Reply::parse(&raw)
    }

    pub fn json(&self, method: &str, path: &str, body: &str) -> Reply {
        self.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    /// How many objects are stored under the prefix.
    pub fn count(&self, prefix: &str) -> usize {
        let store = self.store.clone();
        let prefix = prefix.to_string();
        self._runtime.block_on(async move {
            store
                .list(&prefix, Default::default())
                .await
                .expect("list")
                .items
                .len()
        })
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
