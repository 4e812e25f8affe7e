//! Where a check connects: the task's host address and its host ports, by name
//! (`portName`) and by index (PORT0..n; a check without a port uses PORT0).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use drover_api::kinds::task::TaskPort;

use super::error::HealthError;

/// The task's address and ports, as the agent allocated them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskTarget {
    host: IpAddr,
    by_name: BTreeMap<String, u16>,
    by_index: Vec<u16>,
}

impl Default for TaskTarget {
    fn default() -> Self {
        Self::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

impl TaskTarget {
    /// A target at `host` with no ports yet.
    pub fn new(host: IpAddr) -> Self {
        Self {
            host,
            by_name: BTreeMap::new(),
            by_index: Vec::new(),
        }
    }

    /// The task's resolved ports at 127.0.0.1 (tasks share the agent's network).
    pub fn from_task_ports(ports: &[TaskPort]) -> Result<Self, HealthError> {
        ports.iter().try_fold(Self::default(), |target, p| {
            Ok(target.with_port(p.name.as_deref(), port_number(i64::from(p.host_port))?))
        })
    }

    /// Adds the next port (PORTn, n = ports so far), named or not.
    pub fn with_port(mut self, name: Option<&str>, host_port: u16) -> Self {
        if let Some(name) = name {
            self.by_name.insert(name.to_string(), host_port);
        }
        self.by_index.push(host_port);
        self
    }

    /// The address checks connect to.
    pub fn host(&self) -> IpAddr {
        self.host
    }

    /// PORT`index`, if the task has that many ports.
    pub fn port_index(&self, index: usize) -> Option<u16> {
        self.by_index.get(index).copied()
    }

    /// Resolves a check's `port` / `portName` (neither: PORT0) to a socket address.
    pub fn resolve(
        &self,
        port: Option<i32>,
        port_name: Option<&str>,
    ) -> Result<SocketAddr, HealthError> {
        let port = match (port, port_name) {
            (Some(_), Some(_)) => return Err(HealthError::AmbiguousPort),
            (Some(p), None) => port_number(i64::from(p))?,
            (None, Some(name)) => {
                *self
                    .by_name
                    .get(name)
                    .ok_or_else(|| HealthError::UnknownPortName {
                        name: name.to_string(),
                        known: self.known_names(),
                    })?
            }
            (None, None) => self.port_index(0).ok_or(HealthError::NoPort)?,
        };
        Ok(SocketAddr::new(self.host, port))
    }

    fn known_names(&self) -> String {
        if self.by_name.is_empty() {
            "none".to_string()
        } else {
            self.by_name.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

fn port_number(p: i64) -> Result<u16, HealthError> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or(HealthError::InvalidPort(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> TaskTarget {
        TaskTarget::default()
            .with_port(Some("http"), 31005)
            .with_port(None, 31006)
            .with_port(Some("admin"), 31007)
    }

    #[test]
    fn port_name_resolves_to_its_host_port() {
        let addr = target().resolve(None, Some("admin"));
        assert_eq!(addr, Ok("127.0.0.1:31007".parse().unwrap()));
    }

    #[test]
    fn unknown_port_name_is_an_error_that_lists_the_known_names() {
        let err = target().resolve(None, Some("metrics"));
        assert_eq!(
            err,
            Err(HealthError::UnknownPortName {
                name: "metrics".into(),
                known: "admin, http".into()
            })
        );
        let message = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("\"metrics\""), "{message}");
    }

    #[test]
    fn explicit_port_is_used_as_is_and_checked() {
        assert_eq!(
            target().resolve(Some(8080), None),
            Ok("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            target().resolve(Some(70000), None),
            Err(HealthError::InvalidPort(70000))
        );
        assert_eq!(
            target().resolve(Some(0), None),
            Err(HealthError::InvalidPort(0))
        );
        assert_eq!(
            target().resolve(Some(80), Some("http")),
            Err(HealthError::AmbiguousPort)
        );
    }

    #[test]
    fn no_port_defaults_to_port0() {
        assert_eq!(
            target().resolve(None, None),
            Ok("127.0.0.1:31005".parse().unwrap())
        );
        assert_eq!(
            TaskTarget::default().resolve(None, None),
            Err(HealthError::NoPort)
        );
        assert_eq!(target().port_index(1), Some(31006));
    }

    #[test]
    fn task_ports_are_indexed_in_order_and_validated() {
        let ports = vec![
            TaskPort {
                name: Some("web".into()),
                host_port: 31010,
                ..Default::default()
            },
            TaskPort {
                host_port: 31011,
                ..Default::default()
            },
        ];
        let t = TaskTarget::from_task_ports(&ports);
        assert_eq!(
            t.as_ref().map(|t| t.port_index(1)),
            Ok(Some(31011)),
            "{t:?}"
        );
        assert_eq!(
            t.and_then(|t| t.resolve(None, Some("web"))),
            Ok("127.0.0.1:31010".parse().unwrap())
        );
        let bad = vec![TaskPort {
            host_port: -1,
            ..Default::default()
        }];
        assert_eq!(
            TaskTarget::from_task_ports(&bad),
            Err(HealthError::InvalidPort(-1))
        );
    }
}
