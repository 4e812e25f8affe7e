//! A real HTTP server for tests: answers every request with a status that the test
//! can change, and remembers the last request it got.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub(crate) struct HttpServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    last_request: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl HttpServer {
    pub(crate) async fn start(status: u16) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let status = Arc::new(AtomicU16::new(status));
        let last_request = Arc::new(Mutex::new(String::new()));
        let (s, r) = (status.clone(), last_request.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let _ = answer(stream, &s, &r).await;
                });
            }
        });
        Ok(Self {
            addr,
            status,
            last_request,
            task,
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    pub(crate) fn last_request(&self) -> String {
        self.last_request
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    mut stream: TcpStream,
    status: &AtomicU16,
    last_request: &Mutex<String>,
) -> io::Result<()> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    if let Ok(mut last) = last_request.lock() {
        *last = String::from_utf8_lossy(&request).into_owned();
    }
    let code = status.load(Ordering::SeqCst);
    let response =
        format!("HTTP/1.1 {code} Test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
