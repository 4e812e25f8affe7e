//! Manifest parsing + defaulting + validation must never panic, whatever the bytes:
//! every input ends in objects or in errors. Objects that load must survive a JSON
//! round trip and validate again.
#![no_main]

use drover_api::manifest::{load_manifests, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for strict in [false, true] {
        let opts = LoadOptions {
            default_namespace: Some("default".into()),
            strict,
        };
        if let Ok(objects) = load_manifests(text, &opts) {
            for obj in objects {
                let json = obj.to_json();
                let again = drover_api::AnyObject::from_json(json.clone());
                assert!(again.is_ok(), "a loaded object must parse back from its JSON: {json}");
            }
        }
    }
});
