//! The kubectl-like verbs, one file each, and what they share: the connection flags
//! (`--kubeconfig`, `--context`, `-n`) and the runtime they run on.

pub mod api_resources;
pub mod apply;
pub mod bench;
pub mod delete;
pub mod describe;
pub mod edit;
pub mod get;
pub mod logs;
pub mod node;
pub mod rollout;
pub mod scale;
pub mod version;
pub mod wait;

use std::path::PathBuf;

use crate::client::{kubeconfig, Client};

/// Where to connect, as kubectl's global flags say.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// The kubeconfig file to use (instead of $KUBECONFIG or ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (instead of its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The namespace to use (instead of the context's).
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

impl ConnectArgs {
    /// A client for the selected context.
    pub fn client(&self) -> anyhow::Result<Client> {
        let config = kubeconfig::client_config(&kubeconfig::Selection {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            namespace: self.namespace.clone(),
        })?;
        Client::new(&config)
    }
}

/// An error already printed (per object) by the command; the process just exits 1.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors were reported above")
    }
}

impl std::error::Error for AlreadyReported {}

/// Runs a verb's future on a small runtime of its own.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    future: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?
        .block_on(future)
}

/// Prints an error of one object without stopping the command.
pub fn report(error: &anyhow::Error) {
    eprintln!("drover: {error:#}");
}

/// Parses `30s`, `2m`, `1h`, `500ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (try 30s, 2m, 1h)"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?} is not a duration (try 30s, 2m, 1h)")),
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("{text:?} is not a duration"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
