//! `drover edit KIND NAME`: the object as YAML in $KUBE_EDITOR, $EDITOR or vi, then a
//! PUT carrying the resourceVersion it was read at. A rejected edit reopens the file
//! with the server's error as a comment at the top, as kubectl does.

use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

use crate::client::resources::{object_ref, select_named, Scope};
use crate::client::ApiError;
use crate::cmd::{block_on, ConnectArgs};
use crate::print::object::{to_yaml, without_managed_fields};

#[derive(clap::Args, Debug)]
pub struct EditArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// KIND NAME, or KIND/NAME
    #[arg(required = true, value_name = "KIND NAME")]
    targets: Vec<String>,
}

const INSTRUCTIONS: &str = "\
# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

pub fn run(args: EditArgs) -> anyhow::Result<()> {
    block_on(edit(args))
}

async fn edit(args: EditArgs) -> anyhow::Result<()> {
    let named = select_named(&args.targets, "edit")?;
    let [(info, name)] = named.objects.as_slice() else {
        bail!("edit one object at a time");
    };
    let client = args.connect.client()?;
    let scope = Scope::new(info, Some(client.namespace.as_str()));
    let path = scope.item(name);
    let original = without_managed_fields(client.get(&path, &[]).await?);
    let original_yaml = to_yaml(&original)?;
    let file = tempfile::Builder::new()
        .prefix("drover-edit-")
        .suffix(".yaml")
        .tempfile()
        .context("creating the file to edit")?
        .into_temp_path();
    let mut presented = original_yaml.clone();
    let mut error_header = String::new();
    loop {
        std::fs::write(&file, format!("{error_header}{INSTRUCTIONS}{presented}"))
            .with_context(|| format!("writing {}", file.display()))?;
        run_editor(&file)?;
        let edited = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let edited = without_comments(&edited);
        if edited.trim().is_empty() {
            println!("Edit cancelled, saved file was empty.");
            return Ok(());
        }
        if edited == without_comments(&presented) {
            if error_header.is_empty() {
                println!("Edit cancelled, no changes made.");
                return Ok(());
            }
            let kept = file.keep().context("keeping the edited file")?;
            bail!(
                "edit of {} failed and the file was not changed; your changes are in {}",
                object_ref(info, name),
                kept.display()
            );
        }
        let attempt = serde_yaml::from_str::<Value>(&edited)
            .map_err(|e| anyhow!("the edited file is not valid YAML: {e}"));
        let failure = match attempt {
            Ok(object) if object == original => {
                println!("Edit cancelled, no changes made.");
                return Ok(());
            }
            Ok(object) => match client.put(&path, &object).await {
                Ok(_) => {
                    println!("{} edited", object_ref(info, name));
                    return Ok(());
                }
                Err(e) => match e.downcast_ref::<ApiError>() {
                    Some(api) => api.message.clone(),
                    None => return Err(e),
                },
            },
            Err(e) => format!("{e:#}"),
        };
        eprintln!("drover: {failure}");
        error_header = format!(
            "# {}\n#\n",
            failure.lines().collect::<Vec<_>>().join("\n# ")
        );
        presented = edited;
    }
}

/// Drops the lines that start with `#` (the instructions and the error).
fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Runs the user's editor on `file` through the shell, so `EDITOR="code --wait"` works.
fn run_editor(file: &Path) -> anyhow::Result<()> {
    let editor = ["KUBE_EDITOR", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".to_string());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("drover-edit")
        .arg(file)
        .status()
        .with_context(|| format!("starting the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_dropped() {
        let text = format!("# error: bad\n#\n{INSTRUCTIONS}a: 1\n  # kept: indented\nb: 2\n");
        assert_eq!(without_comments(&text), "a: 1\n  # kept: indented\nb: 2\n");
    }
}
