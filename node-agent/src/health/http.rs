//! HTTP check: a plain HTTP/1.1 GET; a status 200–399 passes. Only the status line is
//! read, so bodies of any size cost nothing.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::error::HealthError;
use super::probe::Outcome;

/// The most we read looking for the status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// GET `path` from `addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpProbe {
    addr: SocketAddr,
    path: String,
}

impl HttpProbe {
    /// A probe of `http://{addr}{path}`; `path` must be an absolute request target.
    pub fn new(addr: SocketAddr, path: &str) -> Result<Self, HealthError> {
        let plain =
            path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control());
        if !plain {
            return Err(HealthError::InvalidPath(path.to_string()));
        }
        Ok(Self {
            addr,
            path: path.to_string(),
        })
    }

    /// `http://127.0.0.1:31005/healthz`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.path)
    }

    /// "HTTP GET http://127.0.0.1:31005/healthz".
    pub fn describe(&self) -> String {
        format!("HTTP GET {}", self.url())
    }

    /// Sends one GET and judges the status code.
    pub async fn run(&self) -> Outcome {
        match self.status().await {
            Ok(code) if (200..400).contains(&code) => Outcome::Pass,
            Ok(code) => Outcome::Fail(format!("{} returned {code}", self.describe())),
            Err(Failure::Refused) => Outcome::Fail(format!(
                "{} failed: connection to {} refused",
                self.describe(),
                self.addr
            )),
            Err(Failure::Io(e)) => Outcome::Fail(format!("{} failed: {e}", self.describe())),
            Err(Failure::Malformed(why)) => Outcome::Fail(format!("{} got {why}", self.describe())),
        }
    }

    async fn status(&self) -> Result<u16, Failure> {
        let mut stream = TcpStream::connect(self.addr).await.map_err(|e| {
            if e.kind() == io::ErrorKind::ConnectionRefused {
                Failure::Refused
            } else {
                Failure::Io(e)
            }
        })?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: drover-agent/{}\r\nAccept: */*\r\n\
             Connection: close\r\n\r\n",
            self.path,
            self.addr,
            env!("CARGO_PKG_VERSION")
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(Failure::Io)?;
        let line = read_status_line(&mut stream).await?;
        parse_status_line(&line)
    }
}

enum Failure {
    Refused,
    Io(io::Error),
    Malformed(String),
}

async fn read_status_line(stream: &mut TcpStream) -> Result<String, Failure> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.iter().position(|b| *b == b'\n') {
            buf.truncate(end);
            return Ok(String::from_utf8_lossy(&buf).trim_end().to_string());
        }
        if buf.len() >= MAX_STATUS_LINE {
            return Err(Failure::Malformed(format!(
                "no status line in the first {MAX_STATUS_LINE} bytes"
            )));
        }
        let n = stream.read(&mut chunk).await.map_err(Failure::Io)?;
        if n == 0 {
            return Err(Failure::Malformed(
                "no response (connection closed before a status line)".to_string(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `HTTP/1.1 503 Service Unavailable` → 503.
fn parse_status_line(line: &str) -> Result<u16, Failure> {
    let malformed = || Failure::Malformed(format!("a malformed status line {line:?}"));
    let mut parts = line.split_whitespace();
    let version = parts.next().ok_or_else(malformed)?;
    let code = parts.next().ok_or_else(malformed)?;
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return Err(malformed());
    }
    code.parse::<u16>().map_err(|_| malformed())
}

#[cfg(test)]
mod tests {
    use super::super::test_server::HttpServer;
    use super::*;

    #[tokio::test]
    async fn ok_passes_and_sends_host_header() -> io::Result<()> {
        let server = HttpServer::start(200).await?;
        let probe = HttpProbe::new(server.addr(), "/healthz").map_err(io::Error::other)?;
        assert_eq!(probe.run().await, Outcome::Pass);
        let request = server.last_request();
        assert!(
            request.starts_with("GET /healthz HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("\r\nHost: {}\r\n", server.addr())),
            "{request}"
        );
        Ok(())
    }

    #[tokio::test]
    async fn redirect_counts_as_healthy() -> io::Result<()> {
        let server = HttpServer::start(302).await?;
        let probe = HttpProbe::new(server.addr(), "/").map_err(io::Error::other)?;
        assert_eq!(probe.run().await, Outcome::Pass);
        Ok(())
    }

    #[tokio::test]
    async fn server_error_fails_with_the_status() -> io::Result<()> {
        let server = HttpServer::start(503).await?;
        let probe = HttpProbe::new(server.addr(), "/healthz").map_err(io::Error::other)?;
        assert_eq!(
            probe.run().await,
            Outcome::Fail(format!(
                "HTTP GET http://{}/healthz returned 503",
                server.addr()
            ))
        );
        server.set_status(404);
        assert!(matches!(probe.run().await, Outcome::Fail(m) if m.ends_with("returned 404")));
        Ok(())
    }

    #[tokio::test]
    async fn refused_connection_fails() -> io::Result<()> {
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await?
            .local_addr()?;
        let probe = HttpProbe::new(addr, "/").map_err(io::Error::other)?;
        assert_eq!(
            probe.run().await,
            Outcome::Fail(format!(
                "HTTP GET http://{addr}/ failed: connection to {addr} refused"
            ))
        );
        Ok(())
    }

    #[test]
    fn status_lines_are_parsed_strictly() {
        assert!(matches!(
            parse_status_line("HTTP/1.1 204 No Content"),
            Ok(204)
        ));
        assert!(matches!(parse_status_line("HTTP/1.0 500"), Ok(500)));
        assert!(parse_status_line("SSH-2.0-OpenSSH").is_err());
        assert!(parse_status_line("HTTP/1.1 2000 OK").is_err());
        assert!(parse_status_line("").is_err());
    }

    #[test]
    fn request_target_must_be_plain() {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(HttpProbe::new(addr, "/ok?x=1").is_ok());
        assert!(HttpProbe::new(addr, "healthz").is_err());
        assert!(HttpProbe::new(addr, "/a\r\nX-Evil: 1").is_err());
        assert!(HttpProbe::new(addr, "/a b").is_err());
    }
}
