//! `crds/` must match what drover-api renders; `DROVER_UPDATE_CRDS=1` rewrites it.

use std::collections::BTreeSet;
use std::path::PathBuf;

const STALE: &str = "crds/ is stale: run DROVER_UPDATE_CRDS=1 cargo test -p drover-api --test crds";

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds")
}

fn existing_yaml_files() -> BTreeSet<String> {
    std::fs::read_dir(crds_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".drover.dev.yaml"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn crds_match_the_types() {
    let rendered = drover_api::crd::render_crds();
    let dir = crds_dir();
    if std::env::var_os("DROVER_UPDATE_CRDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let wanted: BTreeSet<&str> = rendered.iter().map(|(n, _)| n.as_str()).collect();
        for old in existing_yaml_files() {
            if !wanted.contains(old.as_str()) {
                let _ = std::fs::remove_file(dir.join(&old));
            }
        }
        for (name, yaml) in &rendered {
            std::fs::write(dir.join(name), yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        return;
    }
    let mut problems = Vec::new();
    for (name, yaml) in &rendered {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(on_disk) if on_disk == *yaml => {}
            Ok(_) => problems.push(format!("{name} differs")),
            Err(_) => problems.push(format!("{name} is missing")),
        }
    }
    let wanted: BTreeSet<&str> = rendered.iter().map(|(n, _)| n.as_str()).collect();
    for extra in existing_yaml_files() {
        if !wanted.contains(extra.as_str()) {
            problems.push(format!("{extra} is not a Drover kind any more"));
        }
    }
    assert!(problems.is_empty(), "{STALE}\n{}", problems.join("\n"));
}

#[test]
fn every_crd_parses_back_as_yaml_with_its_name() {
    for (name, yaml) in drover_api::crd::render_crds() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
        let crd_name = doc["metadata"]["name"].as_str().unwrap_or_default();
        assert_eq!(format!("{crd_name}.yaml"), name);
        assert_eq!(doc["kind"].as_str(), Some("CustomResourceDefinition"));
    }
}
