//! Health and readiness checks (`http`, `tcp`, `exec`) with Marathon's timing defaults.
//! Checks run on the agent, never centrally.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults::{self, or_set};
use crate::ports::PortSpec;
use crate::validation::{Path, ValidationErrors};

/// Scheme of an HTTP check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Scheme {
    /// Plain HTTP (the default).
    #[default]
    Http,
    /// HTTPS without certificate verification.
    Https,
}

/// HTTP GET; a status 200–399 passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// Port number (on the task's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Name of one of the App's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    /// Request path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
}

/// A TCP connect; success passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TcpCheck {
    /// Port number (on the task's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Name of one of the App's ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
}

/// A command run in the task's environment; exit status 0 passes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecCheck {
    /// Executable and arguments.
    pub command: Vec<String>,
}

/// One health or readiness check: exactly one of `http`, `tcp`, `exec`, plus timing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// HTTP GET check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// Command check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecCheck>,
    /// Seconds after the task starts before the first check (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<i64>,
    /// Seconds between checks (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<i64>,
    /// Seconds before a check counts as failed (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Failures before the first success are ignored for this long (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<i64>,
    /// Consecutive failures after which the task is killed and replaced (default 3;
    /// 0 = never kill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_consecutive_failures: Option<i32>,
}

impl HealthCheck {
    /// Sets the timing defaults and the HTTP path/scheme defaults.
    pub fn apply_defaults(&mut self) {
        or_set(&mut self.delay_seconds, defaults::HEALTH_DELAY_SECONDS);
        or_set(
            &mut self.interval_seconds,
            defaults::HEALTH_INTERVAL_SECONDS,
        );
        or_set(&mut self.timeout_seconds, defaults::HEALTH_TIMEOUT_SECONDS);
        or_set(
            &mut self.grace_period_seconds,
            defaults::HEALTH_GRACE_PERIOD_SECONDS,
        );
        or_set(
            &mut self.max_consecutive_failures,
            defaults::HEALTH_MAX_CONSECUTIVE_FAILURES,
        );
        if let Some(http) = &mut self.http {
            or_set(&mut http.path, defaults::HEALTH_HTTP_PATH.to_string());
            or_set(&mut http.scheme, Scheme::Http);
        }
    }

    /// Checks one check at `path`; `ports` are the App's ports, for `portName`.
    pub fn validate_into(&self, path: &Path, ports: &[PortSpec], errors: &mut ValidationErrors) {
        let set = [self.http.is_some(), self.tcp.is_some(), self.exec.is_some()]
            .iter()
            .filter(|s| **s)
            .count();
        if set == 0 {
            errors.required(path, "exactly one of http, tcp or exec must be set");
        } else if set > 1 {
            errors.forbidden(path, "exactly one of http, tcp or exec may be set");
        }
        if let Some(http) = &self.http {
            let p = path.child("http");
            validate_port_ref(http.port, http.port_name.as_deref(), &p, ports, errors);
            if let Some(request_path) = &http.path {
                if !request_path.starts_with('/') {
                    errors.invalid(&p.child("path"), "must start with '/'");
                }
            }
        }
        if let Some(tcp) = &self.tcp {
            let p = path.child("tcp");
            validate_port_ref(tcp.port, tcp.port_name.as_deref(), &p, ports, errors);
        }
        if let Some(exec) = &self.exec {
            if exec.command.is_empty() || exec.command[0].is_empty() {
                errors.required(&path.child("exec").child("command"), "");
            }
        }
        positive(
            self.interval_seconds,
            &path.child("intervalSeconds"),
            errors,
        );
        positive(self.timeout_seconds, &path.child("timeoutSeconds"), errors);
        non_negative(self.delay_seconds, &path.child("delaySeconds"), errors);
        non_negative(
            self.grace_period_seconds,
            &path.child("gracePeriodSeconds"),
            errors,
        );
        if self.max_consecutive_failures.is_some_and(|n| n < 0) {
            errors.invalid(
                &path.child("maxConsecutiveFailures"),
                "must be >= 0 (0 = never kill)",
            );
        }
    }
}

fn positive(v: Option<i64>, path: &Path, errors: &mut ValidationErrors) {
    if v.is_some_and(|v| v <= 0) {
        errors.invalid(path, "must be > 0");
    }
}

fn non_negative(v: Option<i64>, path: &Path, errors: &mut ValidationErrors) {
    if v.is_some_and(|v| v < 0) {
        errors.invalid(path, "must be >= 0");
    }
}

fn validate_port_ref(
    port: Option<i32>,
    port_name: Option<&str>,
    path: &Path,
    ports: &[PortSpec],
    errors: &mut ValidationErrors,
) {
    match (port, port_name) {
        (Some(_), Some(_)) => errors.forbidden(
            &path.child("portName"),
            "port and portName are mutually exclusive",
        ),
        (Some(p), None) => {
            if !(1..=65535).contains(&p) {
                errors.invalid(&path.child("port"), "must be between 1 and 65535");
            }
        }
        (None, Some(name)) => {
            if !ports.iter().any(|p| p.name.as_deref() == Some(name)) {
                errors.invalid(
                    &path.child("portName"),
                    format!("no port named {name:?} in spec.ports"),
                );
            }
        }
        (None, None) => {
            if ports.is_empty() {
                errors.required(
                    &path.child("port"),
                    "set port or portName (there are no ports to default to)",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timing_default_is_applied() {
        let mut hc = HealthCheck {
            http: Some(HttpCheck::default()),
            ..Default::default()
        };
        hc.apply_defaults();
        assert_eq!(hc.delay_seconds, Some(15));
        assert_eq!(hc.interval_seconds, Some(10));
        assert_eq!(hc.timeout_seconds, Some(20));
        assert_eq!(hc.grace_period_seconds, Some(10));
        assert_eq!(hc.max_consecutive_failures, Some(3));
        let http = hc.http.clone().unwrap_or_default();
        assert_eq!(http.path.as_deref(), Some("/"));
        assert_eq!(http.scheme, Some(Scheme::Http));
        let before = hc.clone();
        hc.apply_defaults();
        assert_eq!(hc, before, "defaulting is idempotent");
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut hc = HealthCheck {
            tcp: Some(TcpCheck {
                port: Some(80),
                port_name: None,
            }),
            max_consecutive_failures: Some(0),
            interval_seconds: Some(3),
            ..Default::default()
        };
        hc.apply_defaults();
        assert_eq!(hc.max_consecutive_failures, Some(0));
        assert_eq!(hc.interval_seconds, Some(3));
    }
}
