//! TCP check: the task passes if a connection to its port is accepted.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::probe::Outcome;

/// Connects to `addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpProbe {
    addr: SocketAddr,
}

impl TcpProbe {
    /// A probe of `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// "TCP connect to 127.0.0.1:31006".
    pub fn describe(&self) -> String {
        format!("TCP connect to {}", self.addr)
    }

    /// Connects once and closes the connection.
    pub async fn run(&self) -> Outcome {
        match TcpStream::connect(self.addr).await {
            Ok(_) => Outcome::Pass,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                Outcome::Fail(format!("{} refused", self.describe()))
            }
            Err(e) => Outcome::Fail(format!("{} failed: {e}", self.describe())),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn open_port_passes() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let probe = TcpProbe::new(listener.local_addr()?);
        assert_eq!(probe.run().await, Outcome::Pass);
        Ok(())
    }

    #[tokio::test]
    async fn closed_port_is_refused() -> io::Result<()> {
        let addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
        // The listener is dropped: nothing listens on addr any more.
        let probe = TcpProbe::new(addr);
        assert_eq!(
            probe.run().await,
            Outcome::Fail(format!("TCP connect to {addr} refused"))
        );
        Ok(())
    }
}
