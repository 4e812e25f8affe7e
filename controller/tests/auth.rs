//! Authentication and authorization answered as Kubernetes does: 401 without a valid
//! token (health and version stay public), 403 with a Status naming user and verb.

mod common;

use std::sync::Arc;

use common::TestServer;
use drover_controller::apiserver::auth::{Authenticator, Role, TokenEntry};
use drover_controller::apiserver::secure::Security;

fn server() -> TestServer {
    let entry = |token: &str, user: &str, role| TokenEntry {
        token: token.into(),
        user: user.into(),
        role,
        node: None,
    };
    TestServer::start_with(Security {
        tls: None,
        auth: Some(Arc::new(Authenticator::new(&[
            entry("admin-t", "admin", Role::Admin),
            entry("viewer-t", "vera", Role::Viewer),
        ]))),
    })
}

const APPS: &str = "/apis/drover.dev/v1alpha1/namespaces/default/apps";
const WEB: &str = r#"{"apiVersion":"drover.dev/v1alpha1","kind":"App","metadata":{"name":"web"},"spec":{"container":{"cmd":"sleep 1"}}}"#;

#[test]
fn no_token_or_a_bad_one_is_401_but_health_is_public() {
    let s = server();
    let r = s.request("GET", APPS, &[], b"");
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.value()["reason"], "Unauthorized");
    let r = s.request("GET", "/apis", &[("Authorization", "Bearer wrong")], b"");
    assert_eq!(r.status, 401);
    let r = s.request(
        "GET",
        APPS,
        &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert_eq!(s.request("GET", "/healthz", &[], b"").status, 200);
    assert_eq!(s.request("GET", "/version", &[], b"").status, 200);
    let r = s.request("GET", APPS, &[("Authorization", "Bearer admin-t")], b"");
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn a_viewer_cannot_write() {
    let s = server();
    let admin = [
        ("Authorization", "Bearer admin-t"),
        ("Content-Type", "application/json"),
    ];
    let viewer = [
        ("Authorization", "Bearer viewer-t"),
        ("Content-Type", "application/json"),
    ];
    assert_eq!(s.request("POST", APPS, &admin, WEB.as_bytes()).status, 201);
    let r = s.request("DELETE", &format!("{APPS}/web"), &viewer, b"");
    assert_eq!(r.status, 403, "{}", r.body);
    let v = r.value();
    assert_eq!(v["reason"], "Forbidden");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("User \"vera\" cannot delete resource \"apps\""),
        "{}",
        r.body
    );
    let r = s.request(
        "POST",
        APPS,
        &viewer,
        WEB.replace("\"web\"", "\"web2\"").as_bytes(),
    );
    assert_eq!(r.status, 403);
    assert_eq!(
        s.request("GET", &format!("{APPS}/web"), &viewer, b"")
            .status,
        200
    );
    assert_eq!(
        s.count("/registry/drover.dev/apps/"),
        1,
        "nothing the viewer did was stored"
    );
}
