//! Bad input gets the right Status — code, reason, message, field — and stores nothing.

mod common;

use common::TestServer;

/// Every case runs on the embedded store and on a real etcd.
macro_rules! on_both_stores {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $( #[test] fn $case() { super::$case(&super::TestServer::start()); } )*
        }
        mod etcd {
            $( #[test] fn $case() { super::$case(&super::TestServer::start_on_etcd()); } )*
        }
    };
}

on_both_stores!(
    malformed_json_and_yaml_are_400,
    unknown_fields_follow_field_validation,
    wrong_group_or_kind_is_400,
    a_10_mib_body_is_413,
    invalid_names_and_fields_are_422_with_causes,
    stale_or_missing_resource_version_on_put,
    bad_queries_and_media_types,
);
use serde_json::Value;

const APPS: &str = "/apis/drover.dev/v1alpha1/namespaces/default/apps";
const STORED: &str = "/registry/drover.dev/apps/";

fn app(name: &str, extra_spec: &str) -> String {
    format!(
        r#"{{"apiVersion":"drover.dev/v1alpha1","kind":"App","metadata":{{"name":"{name}"}},"spec":{{"instances":2,"container":{{"cmd":"sleep 100"}}{extra_spec}}}}}"#
    )
}

fn assert_status(r: &common::Reply, code: u16, reason: &str) -> Value {
    assert_eq!(r.status, code, "{}", r.body);
    let v = r.value();
    assert_eq!(v["kind"], "Status", "{}", r.body);
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["code"], code);
    assert_eq!(v["reason"], reason, "{}", r.body);
    v
}

fn malformed_json_and_yaml_are_400(s: &TestServer) {
    let r = s.json(
        "POST",
        APPS,
        r#"{"apiVersion": "drover.dev/v1alpha1", "kind": "App", "metadata": {"#,
    );
    let v = assert_status(&r, 400, "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "{}",
        r.body
    );
    let r = s.request(
        "POST",
        APPS,
        &[("Content-Type", "application/yaml")],
        b"apiVersion: [unclosed\n  kind: :",
    );
    assert_status(&r, 400, "BadRequest");
    assert_eq!(s.count(STORED), 0);
}

fn unknown_fields_follow_field_validation(s: &TestServer) {
    let body = app("web", r#","replicaz":3"#);
    let r = s.json("POST", &format!("{APPS}?fieldValidation=Strict"), &body);
    let v = assert_status(&r, 400, "BadRequest");
    assert_eq!(
        v["message"],
        "strict decoding error: unknown field \"spec.replicaz\""
    );
    assert_eq!(s.count(STORED), 0);

    let r = s.json("POST", &format!("{APPS}?fieldValidation=Warn"), &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.header("warning"),
        Some("299 - \"unknown field \\\"spec.replicaz\\\"\"")
    );
    assert!(
        r.value()["spec"].get("replicaz").is_none(),
        "the unknown field is dropped"
    );

    let r = s.json(
        "POST",
        &format!("{APPS}?fieldValidation=Ignore"),
        &app("web2", r#","replicaz":3"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.header("warning").is_none());
    let r = s.json(
        "POST",
        &format!("{APPS}?fieldValidation=Sometimes"),
        &app("web3", ""),
    );
    assert_status(&r, 400, "BadRequest");
    assert_eq!(s.count(STORED), 2);
}

fn wrong_group_or_kind_is_400(s: &TestServer) {
    let r = s.json(
        "POST",
        APPS,
        &app("web", "").replace("drover.dev/v1alpha1", "apps/v1"),
    );
    let v = assert_status(&r, 400, "BadRequest");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("apps/v1"),
        "{}",
        r.body
    );
    let r = s.json("POST", APPS, &app("web", "").replace("\"App\"", "\"Task\""));
    let v = assert_status(&r, 400, "BadRequest");
    assert!(
        v["message"].as_str().unwrap_or_default().contains("Task"),
        "{}",
        r.body
    );
    let r = s.json(
        "POST",
        "/apis/drover.dev/v1alpha1/namespaces/default/widgets",
        &app("web", ""),
    );
    assert_status(&r, 404, "NotFound");
    assert_eq!(s.count(STORED), 0);
}

fn a_10_mib_body_is_413(s: &TestServer) {
    let big = format!(
        r#"{{"apiVersion":"drover.dev/v1alpha1","kind":"App","metadata":{{"name":"big","annotations":{{"x":"{}"}}}}}}"#,
        "a".repeat(10 << 20)
    );
    let r = s.json("POST", APPS, &big);
    assert_status(&r, 413, "RequestEntityTooLarge");
    assert_eq!(s.count(STORED), 0);
}

fn invalid_names_and_fields_are_422_with_causes(s: &TestServer) {
    let r = s.json("POST", APPS, &app("Web_1", ""));
    let v = assert_status(&r, 422, "Invalid");
    assert_eq!(
        v["details"]["causes"][0]["field"], "metadata.name",
        "{}",
        r.body
    );
    let r = s.json(
        "POST",
        APPS,
        &app("web", "").replace("\"instances\":2", "\"instances\":-1"),
    );
    let v = assert_status(&r, 422, "Invalid");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.instances");
    assert_eq!(v["details"]["kind"], "App");
    assert_eq!(v["details"]["name"], "web");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("App.drover.dev \"web\" is invalid: spec.instances: Invalid value: -1"),
        "{}",
        r.body
    );
    let r = s.json(
        "POST",
        APPS,
        &app("web", "").replace("\"instances\":2", "\"instances\":\"two\""),
    );
    assert_status(&r, 422, "Invalid");
    assert_eq!(s.count(STORED), 0);
}

fn stale_or_missing_resource_version_on_put(s: &TestServer) {
    let r = s.json("POST", APPS, &app("web", ""));
    assert_eq!(r.status, 201, "{}", r.body);
    let mut obj = r.value();
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    obj["spec"]["instances"] = 5.into();
    let r = s.json("PUT", &format!("{APPS}/web"), &obj.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    // The same (now stale) resourceVersion again: 409.
    obj["spec"]["instances"] = 6.into();
    obj["metadata"]["resourceVersion"] = Value::from(rv);
    let r = s.json("PUT", &format!("{APPS}/web"), &obj.to_string());
    let v = assert_status(&r, 409, "Conflict");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the object has been modified"),
        "{}",
        r.body
    );
    // None at all: 422.
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let r = s.json("PUT", &format!("{APPS}/web"), &obj.to_string());
    let v = assert_status(&r, 422, "Invalid");
    assert_eq!(
        v["details"]["causes"][0]["field"],
        "metadata.resourceVersion"
    );
    let now = s.json("GET", &format!("{APPS}/web"), "").value();
    assert_eq!(now["spec"]["instances"], 5, "only the good write landed");
}

fn bad_queries_and_media_types(s: &TestServer) {
    assert_eq!(s.json("POST", APPS, &app("web", "")).status, 201);
    let r = s.json("GET", &format!("{APPS}?labelSelector=a%20in%20(b"), "");
    assert_status(&r, 400, "BadRequest");
    let r = s.json(
        "GET",
        &format!("{APPS}?fieldSelector=spec.instances%3D2"),
        "",
    );
    let v = assert_status(&r, 400, "BadRequest");
    assert_eq!(v["message"], "\"spec.instances\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"");
    let r = s.json("GET", &format!("{APPS}?limit=1&continue=garbage"), "");
    assert_status(&r, 400, "BadRequest");
    let r = s.request(
        "PATCH",
        &format!("{APPS}/web"),
        &[("Content-Type", "application/strategic-merge-patch+json")],
        b"{}",
    );
    assert_status(&r, 415, "UnsupportedMediaType");
    let r = s.json(
        "GET",
        "/apis/drover.dev/v1alpha1/namespaces/default/apps/nope",
        "",
    );
    let v = assert_status(&r, 404, "NotFound");
    assert_eq!(v["message"], "apps.drover.dev \"nope\" not found");
    let r = s.json("POST", APPS, &app("web", ""));
    assert_status(&r, 409, "AlreadyExists");
    let r = s.json("DELETE", APPS, "");
    assert_status(&r, 405, "MethodNotAllowed");
}
