//! The OpenAPI v3 documents `/openapi/v3…` serves, built from the kind registry: what
//! `kubectl explain` walks and what `kubectl apply` reads to trust server-side validation.

use drover_api::meta::{GROUP, VERSION};
use drover_api::registry::KINDS;
use drover_api::resource::KindInfo;
use drover_api::schema::openapi_schema;
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::Event as CoreEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, ObjectMeta, Status};
use serde_json::{json, Map, Value};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// The only patch types kubectl may send: listing strategic-merge-patch would make it
/// send one, which custom resources do not support.
pub const PATCH_CONTENT_TYPES: [&str; 3] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this \
    representation of an object. Servers should convert recognized schemas to the latest \
    internal value, and may reject unrecognized values. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this \
    object represents. Servers may infer this from the endpoint the client submits requests \
    to. Cannot be updated. In CamelCase. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const OBJECT_META_DESCRIPTION: &str = "Standard object's metadata. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_META_DESCRIPTION: &str = "Standard list metadata. More info: \
    https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// One group-version as the document builder sees it.
struct GroupVersion {
    /// API group (`""` for core).
    group: &'static str,
    /// Version within the group.
    version: &'static str,
    /// URL prefix, e.g. `/apis/drover.dev/v1alpha1`.
    url: &'static str,
    /// Prefix of component schema names, e.g. `dev.drover.v1alpha1`.
    schema_prefix: &'static str,
    /// Middle of operation ids, e.g. `DroverDevV1alpha1`.
    op_infix: &'static str,
    /// Operation tag, e.g. `droverDev_v1alpha1`.
    tag: &'static str,
}

const DROVER: GroupVersion = GroupVersion {
    group: GROUP,
    version: VERSION,
    url: "/apis/drover.dev/v1alpha1",
    schema_prefix: "dev.drover.v1alpha1",
    op_infix: "DroverDevV1alpha1",
    tag: "droverDev_v1alpha1",
};

const CORE: GroupVersion = GroupVersion {
    group: "",
    version: "v1",
    url: "/api/v1",
    schema_prefix: "io.k8s.api.core.v1",
    op_infix: "CoreV1",
    tag: "core_v1",
};

/// What paths to generate for one kind.
struct KindPaths<'a> {
    kind: &'a str,
    plural: &'a str,
    namespaced: bool,
    has_status: bool,
    has_scale: bool,
    /// Only get and list (core Events are read-only here).
    read_only: bool,
}

impl<'a> KindPaths<'a> {
    fn of(info: &'a KindInfo) -> Self {
        KindPaths {
            kind: info.kind,
            plural: info.plural,
            namespaced: info.namespaced,
            has_status: info.has_status,
            has_scale: info.scale.is_some(),
            read_only: false,
        }
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({ "group": group, "version": version, "kind": kind })
}

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

fn query(name: &str, description: &str, type_: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": { "type": type_, "uniqueItems": true },
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": { "type": "string", "uniqueItems": true },
    })
}

fn pretty() -> Value {
    query(
        "pretty",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the \
         user-agent indicates a browser or command-line HTTP tool (curl and wget).",
        "string",
    )
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "When present, indicates that modifications should not be persisted. An invalid or \
         unrecognized dryRun directive will result in an error response and no further \
         processing of the request. Valid values are: - All: all dry run stages will be \
         processed",
        "string",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these \
         changes. The value must be less than or 128 characters long, and only contain \
         printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint. This \
         field is required for apply requests (application/apply-patch) but optional for \
         non-apply patch types (JsonPatch, MergePatch).",
        "string",
    )
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request \
         (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: \
         This will ignore any unknown fields that are silently dropped from the object, and \
         will ignore all but the last duplicate field that the decoder encounters. - Warn: \
         This will send a warning via the standard warning response header for each unknown \
         field that is dropped from the object, and for each duplicate field that is \
         encountered. The request will still succeed if there are no other errors, and will \
         only persist the last of any duplicate fields. This is the default. - Strict: This \
         will fail the request with a BadRequest error if any unknown fields would be dropped \
         from the object, or if any duplicate fields are present. The error returned from the \
         server will contain all unknown and duplicate fields encountered.",
        "string",
    )
}

fn force() -> Value {
    query(
        "force",
        "Force is going to \"force\" Apply requests. It means user will re-acquire \
         conflicting fields owned by other people. Force flag must be unset for non-apply \
         patch requests.",
        "boolean",
    )
}

fn list_params() -> Vec<Value> {
    vec![
        query(
            "allowWatchBookmarks",
            "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do \
             not implement bookmarks may ignore this flag.",
            "boolean",
        ),
        query(
            "continue",
            "The continue option should be set when retrieving more results from the server. \
             Since this value is server defined, clients may only use the continue value from \
             a previous query result with identical query parameters (except for the value of \
             continue). An expired token answers 410 ResourceExpired.",
            "string",
        ),
        query(
            "fieldSelector",
            "A selector to restrict the list of returned objects by their fields. Defaults to \
             everything.",
            "string",
        ),
        query(
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels. Defaults to \
             everything.",
            "string",
        ),
        query(
            "limit",
            "limit is a maximum number of responses to return for a list call. If more items \
             exist, the server will set the `continue` field on the list metadata to a value \
             that can be used with the same initial query to retrieve the next set of results.",
            "integer",
        ),
        query(
            "resourceVersion",
            "resourceVersion sets a constraint on what resource versions a request may be \
             served from. Defaults to unset.",
            "string",
        ),
        query(
            "resourceVersionMatch",
            "resourceVersionMatch determines how resourceVersion is applied to list calls. \
             Defaults to unset.",
            "string",
        ),
        query(
            "sendInitialEvents",
            "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the \
             watch stream will begin with synthetic events to produce the current state of \
             objects in the collection.",
            "boolean",
        ),
        query(
            "timeoutSeconds",
            "Timeout for the list/watch call. This limits the duration of the call, regardless \
             of any activity or inactivity.",
            "integer",
        ),
        query(
            "watch",
            "Watch for changes to the described resources and return them as a stream of add, \
             update, and remove notifications. Specify resourceVersion.",
            "boolean",
        ),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query(
            "gracePeriodSeconds",
            "The duration in seconds before the object should be deleted. Value must be \
             non-negative integer. The value zero indicates delete immediately.",
            "integer",
        ),
        query(
            "orphanDependents",
            "Deprecated: please use the PropagationPolicy, this field will be deprecated in \
             1.7. Should the dependent objects be orphaned.",
            "boolean",
        ),
        query(
            "propagationPolicy",
            "Whether and how garbage collection will be performed. Either this field or \
             OrphanDependents may be set, but not both. Acceptable values are: 'Orphan', \
             'Background', 'Foreground'.",
            "string",
        ),
    ]
}

// ---------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------

/// The verbs of the paths: `x-kubernetes-action` and the operation id's first word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Get,
    List,
    Post,
    Put,
    Patch,
    Delete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Get => "get",
            Action::List => "list",
            Action::Post => "post",
            Action::Put => "put",
            Action::Patch => "patch",
            Action::Delete => "delete",
        }
    }

    fn op_verb(self) -> &'static str {
        match self {
            Action::Get => "read",
            Action::List => "list",
            Action::Post => "create",
            Action::Put => "replace",
            Action::Patch => "patch",
            Action::Delete => "delete",
        }
    }

    fn describe(self, what: &str) -> String {
        match self {
            Action::Get => format!("read the specified {what}"),
            Action::List => format!("list or watch objects of kind {what}"),
            Action::Post => format!("create {what}"),
            Action::Put => format!("replace the specified {what}"),
            Action::Patch => format!("partially update the specified {what}"),
            Action::Delete => format!("delete {what}"),
        }
    }
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn responses(action: Action, body: &str) -> Value {
    let ok = |desc: &str, schema: &str| json!({ "description": desc, "content": json_content(schema_ref(schema)) });
    let mut r = Map::new();
    match action {
        Action::Get | Action::List => {
            r.insert("200".into(), ok("OK", body));
        }
        Action::Post => {
            r.insert("200".into(), ok("OK", body));
            r.insert("201".into(), ok("Created", body));
            r.insert("202".into(), ok("Accepted", body));
        }
        Action::Put | Action::Patch => {
            r.insert("200".into(), ok("OK", body));
            r.insert("201".into(), ok("Created", body));
        }
        Action::Delete => {
            r.insert("200".into(), ok("OK", STATUS));
            r.insert("202".into(), ok("Accepted", STATUS));
        }
    }
    r.insert("401".into(), json!({ "description": "Unauthorized" }));
    Value::Object(r)
}

/// One operation. `body` names the schema of the object read and written (the kind,
/// its list, or Scale); `gvk` is the operation's `x-kubernetes-group-version-kind`.
fn operation(
    gv: &GroupVersion,
    action: Action,
    op_id: String,
    what: &str,
    body: &str,
    gvk: Value,
) -> Value {
    let mut op = Map::new();
    op.insert("tags".into(), json!([gv.tag]));
    op.insert("description".into(), Value::String(action.describe(what)));
    op.insert("operationId".into(), Value::String(op_id));
    let (params, request) = match action {
        Action::Get => (vec![], None),
        Action::List => (list_params(), None),
        Action::Post | Action::Put => (
            vec![dry_run(), field_manager(), field_validation()],
            Some(json!({ "content": { "*/*": { "schema": schema_ref(body) } }, "required": true })),
        ),
        Action::Patch => {
            let content: Map<String, Value> = PATCH_CONTENT_TYPES
                .iter()
                .map(|t| (t.to_string(), json!({ "schema": schema_ref(PATCH) })))
                .collect();
            (
                vec![dry_run(), field_manager(), field_validation(), force()],
                Some(json!({ "content": content, "required": true })),
            )
        }
        Action::Delete => (
            delete_params(),
            Some(json!({ "content": { "*/*": { "schema": schema_ref(DELETE_OPTIONS) } } })),
        ),
    };
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(request) = request {
        op.insert("requestBody".into(), request);
    }
    op.insert("responses".into(), responses(action, body));
    op.insert(
        "x-kubernetes-action".into(),
        Value::String(action.name().into()),
    );
    op.insert("x-kubernetes-group-version-kind".into(), gvk);
    Value::Object(op)
}

/// Adds the paths of one kind to `paths`.
fn kind_paths(gv: &GroupVersion, k: &KindPaths<'_>, paths: &mut Map<String, Value>) {
    let kind_gvk = gvk(gv.group, gv.version, k.kind);
    let kind_schema = format!("{}.{}", gv.schema_prefix, k.kind);
    let list_schema = format!("{kind_schema}List");
    let scope = if k.namespaced { "Namespaced" } else { "" };
    let id = |action: Action, suffix: &str| {
        format!(
            "{}{}{scope}{}{suffix}",
            action.op_verb(),
            gv.op_infix,
            k.kind
        )
    };
    let collection = if k.namespaced {
        format!("{}/namespaces/{{namespace}}/{}", gv.url, k.plural)
    } else {
        format!("{}/{}", gv.url, k.plural)
    };
    let item = format!("{collection}/{{name}}");
    let ns_param = || {
        path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        )
    };
    let scoped = |mut extra: Vec<Value>| {
        let mut params = Vec::new();
        params.append(&mut extra);
        if k.namespaced {
            params.push(ns_param());
        }
        params.push(pretty());
        Value::Array(params)
    };
    let name_param = |what: &str| path_param("name", &format!("name of the {what}"));

    let mut coll = Map::new();
    coll.insert("parameters".into(), scoped(vec![]));
    coll.insert(
        "get".into(),
        operation(
            gv,
            Action::List,
            id(Action::List, ""),
            k.kind,
            &list_schema,
            kind_gvk.clone(),
        ),
    );
    if !k.read_only {
        coll.insert(
            "post".into(),
            operation(
                gv,
                Action::Post,
                id(Action::Post, ""),
                k.kind,
                &kind_schema,
                kind_gvk.clone(),
            ),
        );
    }
    paths.insert(collection, Value::Object(coll));

    let mut it = Map::new();
    it.insert("parameters".into(), scoped(vec![name_param(k.kind)]));
    let mut item_actions = vec![Action::Get];
    if !k.read_only {
        item_actions.extend([Action::Put, Action::Patch, Action::Delete]);
    }
    for action in item_actions {
        let method = match action {
            Action::Put => "put",
            Action::Patch => "patch",
            Action::Delete => "delete",
            _ => "get",
        };
        it.insert(
            method.into(),
            operation(
                gv,
                action,
                id(action, ""),
                k.kind,
                &kind_schema,
                kind_gvk.clone(),
            ),
        );
    }
    paths.insert(item.clone(), Value::Object(it));

    let mut subresource = |sub: &str, suffix: &str, body: &str, sub_gvk: &Value| {
        let mut p = Map::new();
        p.insert("parameters".into(), scoped(vec![name_param(k.kind)]));
        let what = format!("{} of the specified {}", sub, k.kind);
        for (method, action) in [
            ("get", Action::Get),
            ("put", Action::Put),
            ("patch", Action::Patch),
        ] {
            let mut op = operation(
                gv,
                action,
                id(action, suffix),
                k.kind,
                body,
                sub_gvk.clone(),
            );
            if let Some(obj) = op.as_object_mut() {
                let desc = match action {
                    Action::Get => format!("read {what}"),
                    Action::Put => format!("replace {what}"),
                    _ => format!("partially update {what}"),
                };
                obj.insert("description".into(), Value::String(desc));
            }
            p.insert(method.into(), op);
        }
        paths.insert(format!("{item}/{sub}"), Value::Object(p));
    };
    if k.has_status && !k.read_only {
        subresource("status", "Status", &kind_schema, &kind_gvk);
    }
    if k.has_scale && !k.read_only {
        // As Kubernetes does: scale operations are about autoscaling/v1 Scale.
        subresource("scale", "Scale", SCALE, &gvk("autoscaling", "v1", "Scale"));
    }

    if k.namespaced {
        let mut all = Map::new();
        all.insert("parameters".into(), Value::Array(vec![pretty()]));
        all.insert(
            "get".into(),
            operation(
                gv,
                Action::List,
                format!("list{}{}ForAllNamespaces", gv.op_infix, k.kind),
                k.kind,
                &list_schema,
                kind_gvk,
            ),
        );
        paths.insert(format!("{}/{}", gv.url, k.plural), Value::Object(all));
    }
}

// ---------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------

/// Replaces an inlined `metadata` property by a reference to `target`, the way
/// Kubernetes publishes it (`allOf: [$ref]` keeps the description beside the reference).
fn ref_metadata(schema: &mut Value, target: &str, fallback_description: &str) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    let description = props
        .get("metadata")
        .and_then(|m| m.get("description"))
        .and_then(Value::as_str)
        .unwrap_or(fallback_description)
        .to_string();
    props.insert(
        "metadata".into(),
        json!({
            "allOf": [schema_ref(target)],
            "default": {},
            "description": description,
        }),
    );
}

fn with_gvks(mut schema: Value, gvks: Vec<Value>) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("title");
        obj.insert("x-kubernetes-group-version-kind".into(), Value::Array(gvks));
    }
    schema
}

/// The `<Kind>List` schema.
fn list_schema(gv: &GroupVersion, kind: &str, plural: &str) -> Value {
    let item = format!("{}.{kind}", gv.schema_prefix);
    with_gvks(
        json!({
            "description": format!("{kind}List is a list of {kind}"),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": { "description": API_VERSION_DESCRIPTION, "type": "string" },
                "kind": { "description": KIND_DESCRIPTION, "type": "string" },
                "metadata": {
                    "allOf": [schema_ref(LIST_META)],
                    "default": {},
                    "description": LIST_META_DESCRIPTION,
                },
                "items": {
                    "description": format!("List of {plural}."),
                    "type": "array",
                    "items": schema_ref(&item),
                },
            },
        }),
        vec![gvk(gv.group, gv.version, &format!("{kind}List"))],
    )
}

/// The kind schema with its gvk list and a referenced ObjectMeta.
fn kind_schema(gv: &GroupVersion, kind: &str, mut schema: Value) -> Value {
    ref_metadata(&mut schema, OBJECT_META, OBJECT_META_DESCRIPTION);
    with_gvks(schema, vec![gvk(gv.group, gv.version, kind)])
}

/// The apimachinery and autoscaling types the operations and kind schemas reference.
fn shared_schemas(schemas: &mut Map<String, Value>) {
    let mut object_meta = openapi_schema::<ObjectMeta>();
    if let Some(obj) = object_meta.as_object_mut() {
        obj.remove("title");
    }
    schemas.insert(OBJECT_META.into(), object_meta);

    let mut list_meta = openapi_schema::<ListMeta>();
    if let Some(obj) = list_meta.as_object_mut() {
        obj.remove("title");
    }
    schemas.insert(LIST_META.into(), list_meta);

    let mut status = openapi_schema::<Status>();
    ref_metadata(&mut status, LIST_META, LIST_META_DESCRIPTION);
    schemas.insert(
        STATUS.into(),
        with_gvks(status, vec![gvk("", "v1", "Status")]),
    );

    let delete_gvks = vec![
        gvk("", "v1", "DeleteOptions"),
        gvk("meta.k8s.io", "v1", "DeleteOptions"),
        gvk(GROUP, VERSION, "DeleteOptions"),
    ];
    schemas.insert(
        DELETE_OPTIONS.into(),
        with_gvks(openapi_schema::<DeleteOptions>(), delete_gvks),
    );

    schemas.insert(
        PATCH.into(),
        json!({
            "description": "Patch is provided to give a concrete name and type to the \
                            Kubernetes PATCH request body.",
            "type": "object",
        }),
    );

    let mut scale = openapi_schema::<Scale>();
    ref_metadata(&mut scale, OBJECT_META, OBJECT_META_DESCRIPTION);
    schemas.insert(
        SCALE.into(),
        with_gvks(scale, vec![gvk("autoscaling", "v1", "Scale")]),
    );
}

fn document(
    gv: &GroupVersion,
    title: &str,
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
) -> Value {
    json!({
        "openapi": "3.0.0",
        "info": { "title": title, "version": gv.version },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

/// The OpenAPI 3.0 document of `drover.dev/v1alpha1`: paths for every kind (collection,
/// all-namespaces list, item, `/status`, `/scale`) and the schemas they reference.
pub fn v3_document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for info in KINDS {
        kind_paths(&DROVER, &KindPaths::of(info), &mut paths);
        schemas.insert(
            format!("{}.{}", DROVER.schema_prefix, info.kind),
            kind_schema(&DROVER, info.kind, (info.schema)()),
        );
        schemas.insert(
            format!("{}.{}List", DROVER.schema_prefix, info.kind),
            list_schema(&DROVER, info.kind, info.plural),
        );
    }
    shared_schemas(&mut schemas);
    document(&DROVER, "Drover", paths, schemas)
}

/// The OpenAPI 3.0 document of core `v1` as far as Drover serves it: Events, read-only
/// (what `kubectl describe` lists).
pub fn v3_core_document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let events = KindPaths {
        kind: "Event",
        plural: "events",
        namespaced: true,
        has_status: false,
        has_scale: false,
        read_only: true,
    };
    kind_paths(&CORE, &events, &mut paths);
    schemas.insert(
        format!("{}.Event", CORE.schema_prefix),
        kind_schema(&CORE, "Event", openapi_schema::<CoreEvent>()),
    );
    schemas.insert(
        format!("{}.EventList", CORE.schema_prefix),
        list_schema(&CORE, "Event", "events"),
    );
    shared_schemas(&mut schemas);
    document(&CORE, "Drover core", paths, schemas)
}

/// The `/openapi/v3` index. `hash` is [`document_hash`] of [`v3_document`]; the core
/// document's hash is computed here (the document is small).
pub fn v3_index(hash: &str) -> Value {
    let core_hash = document_hash(&v3_core_document());
    json!({
        "paths": {
            "apis/drover.dev/v1alpha1": {
                "serverRelativeURL": format!("/openapi/v3/apis/drover.dev/v1alpha1?hash={hash}"),
            },
            "api/v1": {
                "serverRelativeURL": format!("/openapi/v3/api/v1?hash={core_hash}"),
            },
        }
    })
}

/// A stable hex digest of `doc` (FNV-1a 64 of its serialisation), for the index's
/// `?hash=` and the ETag: clients cache a document under it.
pub fn document_hash(doc: &Value) -> String {
    use crate::fingerprint::fnv1a64;
    format!("{:016X}", fnv1a64(doc.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "/apis/drover.dev/v1alpha1";

    fn doc() -> Value {
        v3_document()
    }

    fn path<'a>(doc: &'a Value, p: &str) -> &'a Value {
        match doc["paths"].get(p) {
            Some(v) => v,
            None => panic!("missing path {p}"),
        }
    }

    fn item_path(info: &KindInfo) -> String {
        if info.namespaced {
            format!("{BASE}/namespaces/{{namespace}}/{}/{{name}}", info.plural)
        } else {
            format!("{BASE}/{}/{{name}}", info.plural)
        }
    }

    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (p, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if method != "parameters" {
                    out.push((p.clone(), method.clone(), op.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn every_kind_has_its_paths() {
        let doc = doc();
        for info in KINDS {
            let item = item_path(info);
            let collection = item.trim_end_matches("/{name}").to_string();
            let c = path(&doc, &collection);
            assert_eq!(c["get"]["x-kubernetes-action"], "list", "{collection}");
            assert_eq!(c["post"]["x-kubernetes-action"], "post", "{collection}");
            let i = path(&doc, &item);
            for (method, action) in [
                ("get", "get"),
                ("put", "put"),
                ("patch", "patch"),
                ("delete", "delete"),
            ] {
                assert_eq!(i[method]["x-kubernetes-action"], action, "{item} {method}");
            }
            let status = doc["paths"].get(format!("{item}/status"));
            assert_eq!(status.is_some(), info.has_status, "{}", info.kind);
            if let Some(status) = status {
                for method in ["get", "put", "patch"] {
                    assert_eq!(
                        status[method]["x-kubernetes-group-version-kind"]["kind"],
                        info.kind
                    );
                }
            }
            let scale = doc["paths"].get(format!("{item}/scale"));
            assert_eq!(scale.is_some(), info.scale.is_some(), "{}", info.kind);
            if let Some(scale) = scale {
                assert_eq!(
                    scale["get"]["responses"]["200"]["content"]["application/json"]["schema"]
                        ["$ref"],
                    "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
                );
            }
            // The all-namespaces list (for cluster-scoped kinds, the collection itself).
            let all = path(&doc, &format!("{BASE}/{}", info.plural));
            assert_eq!(all["get"]["x-kubernetes-action"], "list");
        }
        assert!(doc["paths"]
            .get(format!(
                "{BASE}/namespaces/{{namespace}}/apps/{{name}}/scale"
            ))
            .is_some());
        assert!(doc["paths"]
            .get(format!("{BASE}/nodes/{{name}}/status"))
            .is_some());
        assert!(doc["paths"]
            .get(format!("{BASE}/namespaces/{{namespace}}/nodes"))
            .is_none());
    }

    #[test]
    fn every_operation_is_identified() {
        let doc = doc();
        let mut ids = std::collections::BTreeSet::new();
        for (p, method, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(!id.is_empty(), "{p} {method}");
            assert!(ids.insert(id.clone()), "duplicate operationId {id}");
            assert!(
                ["get", "list", "post", "put", "patch", "delete"]
                    .contains(&op["x-kubernetes-action"].as_str().unwrap_or_default()),
                "{p} {method}"
            );
            let g = &op["x-kubernetes-group-version-kind"];
            assert!(g.is_object(), "{p} {method}: gvk must be an object");
            if p.ends_with("/scale") {
                assert_eq!(
                    g,
                    &json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                );
            } else {
                assert_eq!(g["group"], "drover.dev");
                assert_eq!(g["version"], "v1alpha1");
                let kind = g["kind"].as_str().unwrap_or_default();
                assert!(KINDS.iter().any(|k| k.kind == kind), "{p} {method}: {kind}");
            }
        }
        assert!(ids.contains("listDroverDevV1alpha1NamespacedApp"));
        assert!(ids.contains("patchDroverDevV1alpha1NamespacedAppStatus"));
        assert!(ids.contains("readDroverDevV1alpha1NamespacedAppScale"));
        assert!(ids.contains("listDroverDevV1alpha1AppForAllNamespaces"));
        assert!(ids.contains("replaceDroverDevV1alpha1Node"));
    }

    #[test]
    fn patch_bodies_list_exactly_three_content_types() {
        let doc = doc();
        let mut patches = 0;
        for (p, method, op) in operations(&doc) {
            if method != "patch" {
                continue;
            }
            patches += 1;
            let mut types: Vec<&str> = op["requestBody"]["content"]
                .as_object()
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default();
            types.sort_unstable();
            assert_eq!(
                types,
                [
                    "application/apply-patch+yaml",
                    "application/json-patch+json",
                    "application/merge-patch+json"
                ],
                "{p}"
            );
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|q| q["in"] == "query")
                .filter_map(|q| q["name"].as_str())
                .collect();
            for want in ["fieldValidation", "fieldManager", "force", "dryRun"] {
                assert!(names.contains(&want), "{p} lacks {want}");
            }
        }
        assert!(patches >= KINDS.len());
        assert!(!doc.to_string().contains("strategic-merge-patch"));
    }

    #[test]
    fn writes_declare_server_side_validation_parameters() {
        let doc = doc();
        for (p, method, op) in operations(&doc) {
            if !["post", "put", "patch"].contains(&method.as_str()) {
                continue;
            }
            let names: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|q| q["name"].as_str())
                .collect();
            for want in ["dryRun", "fieldManager", "fieldValidation"] {
                assert!(names.contains(&want), "{p} {method} lacks {want}");
            }
        }
    }

    #[test]
    fn components_have_kind_and_list_schemas() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        for info in KINDS {
            let name = format!("dev.drover.v1alpha1.{}", info.kind);
            let s = &schemas[&name];
            assert_eq!(
                s["x-kubernetes-group-version-kind"],
                json!([{"group": "drover.dev", "version": "v1alpha1", "kind": info.kind}]),
                "{name}"
            );
            assert_eq!(
                s["properties"]["metadata"]["allOf"],
                json!([{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}])
            );
            let list = &schemas[&format!("{name}List")];
            assert_eq!(
                list["x-kubernetes-group-version-kind"][0]["kind"],
                format!("{}List", info.kind)
            );
            assert_eq!(
                list["properties"]["items"]["items"]["$ref"],
                format!("#/components/schemas/{name}")
            );
            assert_eq!(
                list["properties"]["metadata"]["allOf"][0]["$ref"],
                "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
            );
        }
        for shared in [OBJECT_META, LIST_META, STATUS, DELETE_OPTIONS, PATCH, SCALE] {
            assert!(schemas.get(shared).is_some(), "{shared}");
        }
        assert!(schemas[OBJECT_META]["properties"]["labels"].is_object());
    }

    #[test]
    fn every_reference_resolves() {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.clone());
                    }
                    m.values().for_each(|c| refs(c, out));
                }
                Value::Array(a) => a.iter().for_each(|c| refs(c, out)),
                _ => {}
            }
        }
        for doc in [v3_document(), v3_core_document()] {
            let mut found = Vec::new();
            refs(&doc, &mut found);
            assert!(!found.is_empty());
            for r in found {
                let name = r.trim_start_matches("#/components/schemas/");
                assert!(doc["components"]["schemas"].get(name).is_some(), "{r}");
            }
        }
    }

    #[test]
    fn explain_can_walk_into_app_health_checks() {
        let doc = doc();
        // kubectl explain finds the schema by its gvk list, then walks properties.
        let app = doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
            .find(|(_, s)| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|l| {
                        l.iter()
                            .any(|g| g["kind"] == "App" && g["group"] == "drover.dev")
                    })
            })
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let hc = &app["properties"]["spec"]["properties"]["healthChecks"];
        assert_eq!(hc["type"], "array");
        assert!(hc["description"].as_str().is_some_and(|d| !d.is_empty()));
        assert!(hc["items"]["properties"]["http"]["description"].is_string());
        assert!(app["description"].is_string());
    }

    #[test]
    fn index_and_hash() {
        let doc = doc();
        let hash = document_hash(&doc);
        assert_eq!(hash.len(), 16);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(hash, document_hash(&v3_document()), "stable across builds");
        assert_ne!(hash, document_hash(&v3_core_document()));
        let index = v3_index(&hash);
        assert_eq!(
            index["paths"]["apis/drover.dev/v1alpha1"]["serverRelativeURL"],
            format!("/openapi/v3/apis/drover.dev/v1alpha1?hash={hash}")
        );
        assert!(index["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("/openapi/v3/api/v1?hash=")));
        assert_eq!(index["paths"].as_object().map(Map::len), Some(2));
    }

    #[test]
    fn core_document_serves_events_read_only() {
        let doc = v3_core_document();
        let list = path(&doc, "/api/v1/namespaces/{namespace}/events");
        assert_eq!(
            list["get"]["x-kubernetes-group-version-kind"],
            json!({"group": "", "version": "v1", "kind": "Event"})
        );
        assert!(list.get("post").is_none());
        assert!(path(&doc, "/api/v1/events")["get"].is_object());
        let item = path(&doc, "/api/v1/namespaces/{namespace}/events/{name}");
        assert!(item.get("patch").is_none());
        assert_eq!(
            doc["components"]["schemas"]["io.k8s.api.core.v1.Event"]
                ["x-kubernetes-group-version-kind"][0]["kind"],
            "Event"
        );
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.EventList"].is_object());
    }
}
