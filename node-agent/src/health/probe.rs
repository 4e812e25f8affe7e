//! A check resolved against its task (address, path, command) and the trait the
//! monitor drives, so the schedule can be tested with a double.

use async_trait::async_trait;
use drover_api::health::{HealthCheck, Scheme};

use super::error::HealthError;
use super::exec::{ExecContext, ExecProbe};
use super::http::HttpProbe;
use super::target::TaskTarget;
use super::tcp::TcpProbe;

/// The result of running a check once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The check passed.
    Pass,
    /// The check failed; a sentence a person understands
    /// ("HTTP GET http://127.0.0.1:31005/healthz returned 503").
    Fail(String),
}

/// Something that probes a task once. Timeouts are the caller's: a probe may take
/// as long as it likes and is dropped (and must clean up) when it is cancelled.
#[async_trait]
pub trait Prober: Send + Sync {
    /// What is probed, for messages ("TCP connect to 127.0.0.1:31006").
    fn describe(&self) -> String;
    /// Runs the check once.
    async fn probe(&self) -> Outcome;
}

/// A real check: HTTP GET, TCP connect or a command.
#[derive(Clone, Debug)]
pub enum Probe {
    /// HTTP GET, 200–399 passes.
    Http(HttpProbe),
    /// TCP connect.
    Tcp(TcpProbe),
    /// A command, exit 0 passes.
    Exec(ExecProbe),
}

impl Probe {
    /// Resolves `check` against the task's ports and sandbox.
    pub fn resolve(
        check: &HealthCheck,
        target: &TaskTarget,
        exec: &ExecContext,
    ) -> Result<Self, HealthError> {
        match (&check.http, &check.tcp, &check.exec) {
            (Some(http), None, None) => {
                let addr = target.resolve(http.port, http.port_name.as_deref())?;
                let path = http.path.as_deref().unwrap_or("/");
                let probe = HttpProbe::new(addr, path)?;
                if http.scheme == Some(Scheme::Https) {
                    return Err(HealthError::HttpsUnsupported {
                        url: format!("https://{addr}{path}"),
                    });
                }
                Ok(Probe::Http(probe))
            }
            (None, Some(tcp), None) => Ok(Probe::Tcp(TcpProbe::new(
                target.resolve(tcp.port, tcp.port_name.as_deref())?,
            ))),
            (None, None, Some(cmd)) => Ok(Probe::Exec(ExecProbe::new(
                cmd.command.clone(),
                exec.clone(),
            )?)),
            (h, t, e) => Err(HealthError::CheckKind(
                usize::from(h.is_some()) + usize::from(t.is_some()) + usize::from(e.is_some()),
            )),
        }
    }
}

#[async_trait]
impl Prober for Probe {
    fn describe(&self) -> String {
        match self {
            Probe::Http(p) => p.describe(),
            Probe::Tcp(p) => p.describe(),
            Probe::Exec(p) => p.describe(),
        }
    }

    async fn probe(&self) -> Outcome {
        match self {
            Probe::Http(p) => p.run().await,
            Probe::Tcp(p) => p.run().await,
            Probe::Exec(p) => p.run().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use drover_api::health::{ExecCheck, HttpCheck, TcpCheck};

    use super::*;

    fn target() -> TaskTarget {
        TaskTarget::default().with_port(Some("http"), 31005)
    }

    #[test]
    fn http_check_resolves_port_name_and_default_path() {
        let check = HealthCheck {
            http: Some(HttpCheck {
                port_name: Some("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let probe = Probe::resolve(&check, &target(), &ExecContext::default());
        assert_eq!(
            probe.map(|p| p.describe()),
            Ok("HTTP GET http://127.0.0.1:31005/".to_string())
        );
    }

    #[test]
    fn https_is_reported_as_unsupported() {
        let check = HealthCheck {
            http: Some(HttpCheck {
                scheme: Some(Scheme::Https),
                path: Some("/healthz".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = Probe::resolve(&check, &target(), &ExecContext::default()).err();
        assert_eq!(
            err,
            Some(HealthError::HttpsUnsupported {
                url: "https://127.0.0.1:31005/healthz".into()
            })
        );
    }

    #[test]
    fn exactly_one_kind_is_required() {
        let none = HealthCheck::default();
        assert_eq!(
            Probe::resolve(&none, &target(), &ExecContext::default()).err(),
            Some(HealthError::CheckKind(0))
        );
        let two = HealthCheck {
            tcp: Some(TcpCheck::default()),
            exec: Some(ExecCheck {
                command: vec!["true".into()],
            }),
            ..Default::default()
        };
        assert_eq!(
            Probe::resolve(&two, &target(), &ExecContext::default()).err(),
            Some(HealthError::CheckKind(2))
        );
    }

    #[test]
    fn unknown_port_name_fails_resolution() {
        let check = HealthCheck {
            tcp: Some(TcpCheck {
                port: None,
                port_name: Some("nope".into()),
            }),
            ..Default::default()
        };
        assert!(matches!(
            Probe::resolve(&check, &target(), &ExecContext::default()),
            Err(HealthError::UnknownPortName { .. })
        ));
    }
}
