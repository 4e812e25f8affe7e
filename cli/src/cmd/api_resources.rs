//! `drover api-resources`: the kinds the server serves, read from discovery
//! (`/apis/drover.dev/v1alpha1`), as NAME SHORTNAMES APIVERSION NAMESPACED KIND.

use serde_json::Value;

use crate::cmd::{block_on, ConnectArgs};
use crate::print::table::format_rows;

#[derive(clap::Args, Debug)]
pub struct ApiResourcesArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

pub fn run(args: ApiResourcesArgs) -> anyhow::Result<()> {
    block_on(async move {
        let client = args.connect.client()?;
        let list = client.get("/apis/drover.dev/v1alpha1", &[]).await?;
        print!("{}", render(&list));
        Ok(())
    })
}

/// The table of an `APIResourceList`, subresources left out, sorted by name.
fn render(list: &Value) -> String {
    let group_version = list
        .get("groupVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = list
        .get("resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|r| {
            let name = r.get("name").and_then(Value::as_str)?;
            if name.contains('/') {
                return None;
            }
            let short: Vec<&str> = r
                .get("shortNames")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            Some(vec![
                name.to_string(),
                short.join(","),
                group_version.to_string(),
                r.get("namespaced")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
                r.get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ])
        })
        .collect();
    rows.sort();
    let header = ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"];
    rows.insert(0, header.iter().map(|h| h.to_string()).collect());
    format_rows(&rows, &mut Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subresources_are_left_out() {
        let list = json!({"groupVersion": "drover.dev/v1alpha1", "resources": [
            {"name": "nodes", "namespaced": false, "kind": "Node"},
            {"name": "apps", "shortNames": ["ap"], "namespaced": true, "kind": "App"},
            {"name": "apps/scale", "namespaced": true, "kind": "Scale"},
        ]});
        assert_eq!(
            render(&list),
            "NAME    SHORTNAMES   APIVERSION            NAMESPACED   KIND\n\
             apps    ap           drover.dev/v1alpha1   true         App\n\
             nodes                drover.dev/v1alpha1   false        Node\n"
        );
    }
}
