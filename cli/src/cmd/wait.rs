//! `drover wait KIND/NAME --for=condition=Available[=True]` or `--for=delete`: list and
//! watch with `fieldSelector=metadata.name=NAME` until the condition holds. A condition
//! counts only when it describes the current generation, as kubectl's wait decides.

use std::time::Duration;

use anyhow::{anyhow, bail};
use serde_json::Value;

use crate::client::resources::{object_ref, select_named, Scope};
use crate::client::{ApiError, Client};
use crate::cmd::{block_on, parse_duration, report, AlreadyReported, ConnectArgs};

#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// KIND/NAME…, or KIND NAME…
    #[arg(required = true, value_name = "KIND/NAME")]
    targets: Vec<String>,
    /// `condition=TYPE[=STATUS]` (STATUS defaults to True) or `delete`.
    #[arg(long = "for", value_name = "CONDITION")]
    for_: String,
    /// Give up after this long (30s, 2m, …).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// What to wait for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Goal {
    Condition { type_: String, status: String },
    Deleted,
}

fn goal_of(text: &str) -> anyhow::Result<Goal> {
    if text.eq_ignore_ascii_case("delete") {
        return Ok(Goal::Deleted);
    }
    let Some(rest) = text.strip_prefix("condition=") else {
        bail!("--for={text}: use condition=TYPE[=STATUS] or delete");
    };
    let (type_, status) = rest.split_once('=').unwrap_or((rest, "True"));
    if type_.is_empty() {
        bail!("--for={text}: the condition type is empty");
    }
    Ok(Goal::Condition {
        type_: type_.to_string(),
        status: status.to_string(),
    })
}

pub fn run(args: WaitArgs) -> anyhow::Result<()> {
    block_on(wait(args))
}

async fn wait(args: WaitArgs) -> anyhow::Result<()> {
    let goal = goal_of(&args.for_)?;
    let named = select_named(&args.targets, "wait")?;
    let client = args.connect.client()?;
    let mut failed = false;
    for (info, name) in &named.objects {
        let scope = Scope::new(info, Some(client.namespace.as_str()));
        let reference = object_ref(info, name);
        let waited = tokio::time::timeout(args.timeout, until(&client, &scope, name, &goal)).await;
        let result = match waited {
            Ok(r) => r,
            Err(_) => Err(anyhow!(
                "timed out waiting for the condition on {}/{name}",
                info.plural
            )),
        };
        match result {
            Ok(()) => println!("{reference} condition met"),
            Err(e) => {
                report(&e);
                failed = true;
            }
        }
    }
    if failed {
        return Err(AlreadyReported.into());
    }
    Ok(())
}

/// Lists, checks, then watches from the list's revision; a closed or expired watch
/// starts over with a new list.
async fn until(client: &Client, scope: &Scope<'_>, name: &str, goal: &Goal) -> anyhow::Result<()> {
    let selector = format!("metadata.name={name}");
    loop {
        let list = client
            .get(&scope.collection(), &[("fieldSelector", &selector)])
            .await?;
        let object = list
            .get("items")
            .and_then(Value::as_array)
            .and_then(|items| items.first());
        match (object, goal) {
            (None, Goal::Deleted) => return Ok(()),
            (None, Goal::Condition { .. }) => {
                bail!("{}.drover.dev \"{name}\" not found", scope.info.plural)
            }
            (Some(o), Goal::Condition { type_, status }) if condition_met(o, type_, status) => {
                return Ok(())
            }
            _ => {}
        }
        let revision = list
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut events = client
            .watch(
                &scope.collection(),
                &[("fieldSelector", &selector), ("resourceVersion", &revision)],
            )
            .await?;
        loop {
            let event = match events.next().await {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(e) if e.downcast_ref::<ApiError>().is_some_and(|a| a.code == 410) => break,
                Err(e) => return Err(e),
            };
            match (event.kind.as_str(), goal) {
                ("DELETED", Goal::Deleted) => return Ok(()),
                ("DELETED", Goal::Condition { .. }) => {
                    bail!("{} was deleted while waiting", object_ref(scope.info, name))
                }
                ("ADDED" | "MODIFIED", Goal::Condition { type_, status })
                    if condition_met(&event.object, type_, status) =>
                {
                    return Ok(())
                }
                _ => {}
            }
        }
    }
}

/// True when `status.conditions` has `type_` (case-insensitive) with `status`, and the
/// condition (or the status) was observed at the object's current generation.
fn condition_met(object: &Value, type_: &str, status: &str) -> bool {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let status_observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let conditions = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    conditions.iter().any(|c| {
        let same_type = c
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case(type_));
        let same_status = c
            .get("status")
            .and_then(Value::as_str)
            .is_some_and(|s| s.eq_ignore_ascii_case(status));
        let observed = c
            .get("observedGeneration")
            .and_then(Value::as_i64)
            .or(status_observed);
        let current = match (observed, generation) {
            (Some(o), Some(g)) => o >= g,
            _ => true,
        };
        same_type && same_status && current
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn goals() {
        assert_eq!(
            goal_of("condition=Available").ok(),
            Some(Goal::Condition {
                type_: "Available".into(),
                status: "True".into()
            })
        );
        assert_eq!(
            goal_of("condition=Ready=false").ok(),
            Some(Goal::Condition {
                type_: "Ready".into(),
                status: "false".into()
            })
        );
        assert_eq!(goal_of("delete").ok(), Some(Goal::Deleted));
        assert!(goal_of("jsonpath={.x}").is_err());
    }

    #[test]
    fn stale_conditions_do_not_count() {
        let obj = |cond_gen: Option<i64>, status_gen: Option<i64>| {
            let mut c = json!({"type": "Available", "status": "True"});
            if let Some(g) = cond_gen {
                c["observedGeneration"] = json!(g);
            }
            let mut o = json!({"metadata": {"generation": 2}, "status": {"conditions": [c]}});
            if let Some(g) = status_gen {
                o["status"]["observedGeneration"] = json!(g);
            }
            o
        };
        assert!(condition_met(&obj(Some(2), None), "available", "true"));
        assert!(!condition_met(&obj(Some(1), None), "Available", "True"));
        assert!(!condition_met(&obj(None, Some(1)), "Available", "True"));
        assert!(condition_met(&obj(None, Some(2)), "Available", "True"));
        // The condition's own observedGeneration wins over the status'.
        assert!(condition_met(&obj(Some(2), Some(1)), "Available", "True"));
        assert!(condition_met(&obj(None, None), "Available", "True"));
        assert!(!condition_met(&obj(Some(2), None), "Available", "False"));
        assert!(!condition_met(&obj(Some(2), None), "Progressing", "True"));
    }
}
