//! The OpenAPI v2 (Swagger 2.0) document `/openapi/v2` serves, protobuf-encoded as
//! gnostic's `openapi.v2.Document`: kubectl < 1.29 downloads it (protobuf only) for
//! `kubectl explain` and client-side apply validation.
//!
//! It is derived from the v3 documents ([`v3_document`], [`v3_core_document`]): the same
//! paths and schemas, rewritten to what Swagger 2.0 and kubectl's v2 parser
//! (`k8s.io/kube-openapi/pkg/util/proto`) accept. That parser is strict: an array needs
//! exactly one `items` schema, a `$ref` may carry neither `type` nor `properties`, an
//! object without `properties` is a map, one with `properties` rejects unknown fields.
//! Swagger 2.0 has no `anyOf` / `oneOf` / `nullable`, so such schemas become free-form
//! (no `type`, description kept), which the validator accepts whatever they hold.

use drover_api::meta::VERSION;
use prost::Message;
use serde_json::{json, Map, Value};

use crate::apiserver::openapi::{v3_core_document, v3_document};

const V3_REF_PREFIX: &str = "#/components/schemas/";
const V2_REF_PREFIX: &str = "#/definitions/";
const PRIMITIVES: [&str; 4] = ["string", "integer", "number", "boolean"];

/// The served document: the protobuf bytes and their ETag.
pub struct V2Document {
    pub bytes: Vec<u8>,
    pub etag: String,
}

/// Builds the encoded document (do it once: it walks every schema).
pub fn v2_served() -> V2Document {
    let bytes = v2_protobuf();
    let etag = format!("\"{:016X}\"", crate::fingerprint::fnv1a64(&bytes));
    V2Document { bytes, etag }
}

/// The document as gnostic's `openapi.v2.Document`, encoded.
pub fn v2_protobuf() -> Vec<u8> {
    pb_document(&v2_document()).encode_to_vec()
}

/// The Swagger 2.0 document as JSON: every path and schema of the v3 documents of
/// `drover.dev/v1alpha1` and core `v1` (Events).
pub fn v2_document() -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for doc in [v3_document(), v3_core_document()] {
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            paths.insert(path.clone(), path_item(item));
        }
        for (name, schema) in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            definitions
                .entry(name.clone())
                .or_insert_with(|| convert_schema(schema, false));
        }
    }
    json!({
        "swagger": "2.0",
        "info": { "title": "Drover", "version": VERSION },
        "paths": paths,
        "definitions": definitions,
    })
}

// ---------------------------------------------------------------------------------------
// Schemas: OpenAPI 3.0 → Swagger 2.0
// ---------------------------------------------------------------------------------------

/// The definition name `schema` refers to: `$ref`, or `allOf: [$ref]` (how the v3
/// document keeps a description beside a reference).
fn reference(obj: &Map<String, Value>) -> Option<&str> {
    let target = match obj.get("$ref") {
        Some(r) => r,
        None => match obj
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            Some([only]) => only.get("$ref")?,
            _ => return None,
        },
    };
    target.as_str()?.strip_prefix(V3_REF_PREFIX)
}

fn is_nullable(schema: &Value) -> bool {
    schema.get("nullable") == Some(&Value::Bool(true))
}

/// Converts one schema. `property` says it is a property of an object: there a null
/// value is skipped by kubectl's validator, so a `nullable` schema keeps its type (and
/// `explain` can walk into it); anywhere else a nullable schema becomes free-form.
fn convert_schema(schema: &Value, property: bool) -> Value {
    let Some(obj) = schema.as_object() else {
        return json!({});
    };
    // Description and vendor extensions (x-kubernetes-group-version-kind, …) always stay.
    let mut out = Map::new();
    if let Some(d) = obj.get("description").filter(|d| d.is_string()) {
        out.insert("description".into(), d.clone());
    }
    for (k, v) in obj {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(target) = reference(obj) {
        out.insert(
            "$ref".into(),
            Value::String(format!("{V2_REF_PREFIX}{target}")),
        );
        return Value::Object(out);
    }
    let combined = ["anyOf", "oneOf", "allOf", "not", "$ref"]
        .iter()
        .any(|k| obj.contains_key(*k));
    if combined || (is_nullable(schema) && !property) {
        return Value::Object(out);
    }
    let declared = match obj.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        Some(Value::Array(types)) => {
            let mut non_null = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null");
            match (non_null.next(), non_null.next()) {
                (Some(t), None) => Some(t),
                _ => return Value::Object(out),
            }
        }
        _ => None,
    };
    let ty = declared.or_else(|| {
        if obj.contains_key("properties") || obj.contains_key("additionalProperties") {
            Some("object")
        } else if obj.contains_key("items") {
            Some("array")
        } else {
            None
        }
    });
    let preserve_unknown =
        obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match ty {
        Some("object") => {
            out.insert("type".into(), Value::from("object"));
            let props = obj
                .get("properties")
                .and_then(Value::as_object)
                .filter(|p| !p.is_empty() && !preserve_unknown);
            let open = matches!(
                obj.get("additionalProperties"),
                Some(Value::Object(_)) | Some(Value::Bool(true))
            );
            match props {
                // A struct: kubectl rejects fields it does not list, as the server does.
                Some(props) if !open => {
                    let converted: Map<String, Value> = props
                        .iter()
                        .map(|(k, v)| (k.clone(), convert_schema(v, true)))
                        .collect();
                    let required: Vec<Value> = obj
                        .get("required")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .filter(|r| props.get(*r).is_some_and(|p| !is_nullable(p)))
                        .map(Value::from)
                        .collect();
                    out.insert("properties".into(), Value::Object(converted));
                    if !required.is_empty() {
                        out.insert("required".into(), Value::Array(required));
                    }
                }
                // A map (or properties beside open additional ones: accept any key).
                _ => {
                    let values = match obj.get("additionalProperties") {
                        Some(ap @ Value::Object(_)) if props.is_none() && !preserve_unknown => {
                            convert_schema(ap, false)
                        }
                        _ => json!({}),
                    };
                    out.insert("additionalProperties".into(), values);
                }
            }
        }
        Some("array") => {
            out.insert("type".into(), Value::from("array"));
            let items = match obj.get("items") {
                Some(items @ Value::Object(_)) if !preserve_unknown => convert_schema(items, false),
                _ => json!({}),
            };
            out.insert("items".into(), items);
            for k in ["maxItems", "minItems", "uniqueItems"] {
                if let Some(v) = obj.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
        }
        Some(t) if PRIMITIVES.contains(&t) => {
            out.insert("type".into(), Value::from(t));
            for k in [
                "format",
                "enum",
                "minimum",
                "maximum",
                "maxLength",
                "minLength",
                "pattern",
            ] {
                if let Some(v) = obj.get(k) {
                    out.insert(k.into(), v.clone());
                }
            }
        }
        // No type, "null", or something Swagger 2.0 cannot say: free-form.
        _ => {}
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// Paths: OpenAPI 3.0 → Swagger 2.0
// ---------------------------------------------------------------------------------------

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn path_item(item: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in item.as_object().into_iter().flatten() {
        if k == "parameters" {
            let params: Vec<Value> = v.as_array().into_iter().flatten().map(parameter).collect();
            out.insert(k.clone(), Value::Array(params));
        } else if METHODS.contains(&k.as_str()) {
            out.insert(k.clone(), operation(v));
        }
    }
    Value::Object(out)
}

/// A query or path parameter: the v3 `schema` flattened into the parameter.
fn parameter(p: &Value) -> Value {
    let mut out = Map::new();
    for k in ["name", "in", "description", "required"] {
        if let Some(v) = p.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    for k in ["type", "uniqueItems"] {
        if let Some(v) = p["schema"].get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Value::Object(out)
}

fn operation(op: &Value) -> Value {
    let mut out = Map::new();
    for k in ["tags", "description", "operationId"] {
        if let Some(v) = op.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    let mut params = Vec::new();
    if let Some(body) = op.get("requestBody") {
        let content = body["content"].as_object();
        let consumes: Vec<Value> = content
            .into_iter()
            .flatten()
            .map(|(t, _)| Value::String(t.clone()))
            .collect();
        let schema = content
            .into_iter()
            .flatten()
            .next()
            .map(|(_, c)| convert_schema(&c["schema"], false))
            .unwrap_or_else(|| json!({}));
        out.insert("consumes".into(), Value::Array(consumes));
        params.push(json!({
            "name": "body",
            "in": "body",
            "required": body["required"].as_bool().unwrap_or(false),
            "schema": schema,
        }));
    }
    params.extend(
        op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(parameter),
    );
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert(
        "produces".into(),
        json!(["application/json", "application/yaml"]),
    );
    out.insert("schemes".into(), json!(["https"]));
    let mut responses = Map::new();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let mut resp = Map::new();
        resp.insert(
            "description".into(),
            r.get("description").cloned().unwrap_or_else(|| json!("")),
        );
        if let Some(schema) = r["content"]
            .as_object()
            .and_then(|c| c.values().next())
            .and_then(|c| c.get("schema"))
        {
            resp.insert("schema".into(), convert_schema(schema, false));
        }
        responses.insert(code.clone(), Value::Object(resp));
    }
    out.insert("responses".into(), Value::Object(responses));
    for (k, v) in op.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------
// Protobuf: gnostic `openapiv2/OpenAPIv2.proto`, the subset this document uses
// ---------------------------------------------------------------------------------------

/// The messages of package `openapi.v2` (field numbers as in gnostic-models'
/// `openapiv2/OpenAPIv2.proto`); fields this document never sets are left out. Shaped
/// like prost-build output: oneofs hold their messages inline.
#[allow(clippy::large_enum_variant)]
pub mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Document {
        #[prost(string, tag = "1")]
        pub swagger: String,
        #[prost(message, optional, tag = "2")]
        pub info: Option<Info>,
        #[prost(string, repeated, tag = "6")]
        pub consumes: Vec<String>,
        #[prost(string, repeated, tag = "7")]
        pub produces: Vec<String>,
        #[prost(message, optional, tag = "8")]
        pub paths: Option<Paths>,
        #[prost(message, optional, tag = "9")]
        pub definitions: Option<Definitions>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Info {
        #[prost(string, tag = "1")]
        pub title: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(string, tag = "3")]
        pub description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Paths {
        #[prost(message, repeated, tag = "1")]
        pub vendor_extension: Vec<NamedAny>,
        #[prost(message, repeated, tag = "2")]
        pub path: Vec<NamedPathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedPathItem {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<PathItem>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PathItem {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(message, optional, tag = "2")]
        pub get: Option<Operation>,
        #[prost(message, optional, tag = "3")]
        pub put: Option<Operation>,
        #[prost(message, optional, tag = "4")]
        pub post: Option<Operation>,
        #[prost(message, optional, tag = "5")]
        pub delete: Option<Operation>,
        #[prost(message, optional, tag = "8")]
        pub patch: Option<Operation>,
        #[prost(message, repeated, tag = "9")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, repeated, tag = "10")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Operation {
        #[prost(string, repeated, tag = "1")]
        pub tags: Vec<String>,
        #[prost(string, tag = "2")]
        pub summary: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "5")]
        pub operation_id: String,
        #[prost(string, repeated, tag = "6")]
        pub produces: Vec<String>,
        #[prost(string, repeated, tag = "7")]
        pub consumes: Vec<String>,
        #[prost(message, repeated, tag = "8")]
        pub parameters: Vec<ParametersItem>,
        #[prost(message, optional, tag = "9")]
        pub responses: Option<Responses>,
        #[prost(string, repeated, tag = "10")]
        pub schemes: Vec<String>,
        #[prost(bool, tag = "11")]
        pub deprecated: bool,
        #[prost(message, repeated, tag = "13")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ParametersItem {
        #[prost(oneof = "parameters_item::Oneof", tags = "1, 2")]
        pub oneof: Option<parameters_item::Oneof>,
    }

    pub mod parameters_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Parameter(super::Parameter),
            #[prost(message, tag = "2")]
            JsonReference(super::JsonReference),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct JsonReference {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub description: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Parameter {
        #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
        pub oneof: Option<parameter::Oneof>,
    }

    pub mod parameter {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            BodyParameter(super::BodyParameter),
            #[prost(message, tag = "2")]
            NonBodyParameter(super::NonBodyParameter),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct BodyParameter {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(string, tag = "2")]
        pub name: String,
        #[prost(string, tag = "3")]
        pub r#in: String,
        #[prost(bool, tag = "4")]
        pub required: bool,
        #[prost(message, optional, tag = "5")]
        pub schema: Option<Schema>,
        #[prost(message, repeated, tag = "6")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NonBodyParameter {
        #[prost(oneof = "non_body_parameter::Oneof", tags = "3, 4")]
        pub oneof: Option<non_body_parameter::Oneof>,
    }

    pub mod non_body_parameter {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "3")]
            QueryParameterSubSchema(super::QueryParameterSubSchema),
            #[prost(message, tag = "4")]
            PathParameterSubSchema(super::PathParameterSubSchema),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct QueryParameterSubSchema {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "6")]
        pub r#type: String,
        #[prost(bool, tag = "20")]
        pub unique_items: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PathParameterSubSchema {
        #[prost(bool, tag = "1")]
        pub required: bool,
        #[prost(string, tag = "2")]
        pub r#in: String,
        #[prost(string, tag = "3")]
        pub description: String,
        #[prost(string, tag = "4")]
        pub name: String,
        #[prost(string, tag = "5")]
        pub r#type: String,
        #[prost(bool, tag = "19")]
        pub unique_items: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Responses {
        #[prost(message, repeated, tag = "1")]
        pub response_code: Vec<NamedResponseValue>,
        #[prost(message, repeated, tag = "2")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedResponseValue {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<ResponseValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResponseValue {
        #[prost(oneof = "response_value::Oneof", tags = "1, 2")]
        pub oneof: Option<response_value::Oneof>,
    }

    pub mod response_value {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Response(super::Response),
            #[prost(message, tag = "2")]
            JsonReference(super::JsonReference),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Response {
        #[prost(string, tag = "1")]
        pub description: String,
        #[prost(message, optional, tag = "2")]
        pub schema: Option<SchemaItem>,
        #[prost(message, repeated, tag = "5")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SchemaItem {
        #[prost(oneof = "schema_item::Oneof", tags = "1")]
        pub oneof: Option<schema_item::Oneof>,
    }

    pub mod schema_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Schema(super::Schema),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Definitions {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedSchema {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Schema {
        #[prost(string, tag = "1")]
        pub xref: String,
        #[prost(string, tag = "2")]
        pub format: String,
        #[prost(string, tag = "3")]
        pub title: String,
        #[prost(string, tag = "4")]
        pub description: String,
        #[prost(double, tag = "7")]
        pub maximum: f64,
        #[prost(double, tag = "9")]
        pub minimum: f64,
        #[prost(int64, tag = "11")]
        pub max_length: i64,
        #[prost(int64, tag = "12")]
        pub min_length: i64,
        #[prost(string, tag = "13")]
        pub pattern: String,
        #[prost(int64, tag = "14")]
        pub max_items: i64,
        #[prost(int64, tag = "15")]
        pub min_items: i64,
        #[prost(bool, tag = "16")]
        pub unique_items: bool,
        #[prost(string, repeated, tag = "19")]
        pub required: Vec<String>,
        #[prost(message, repeated, tag = "20")]
        pub r#enum: Vec<Any>,
        #[prost(message, optional, boxed, tag = "21")]
        pub additional_properties: Option<Box<AdditionalPropertiesItem>>,
        #[prost(message, optional, tag = "22")]
        pub r#type: Option<TypeItem>,
        #[prost(message, optional, tag = "23")]
        pub items: Option<ItemsItem>,
        #[prost(message, optional, tag = "25")]
        pub properties: Option<Properties>,
        #[prost(bool, tag = "27")]
        pub read_only: bool,
        #[prost(message, repeated, tag = "31")]
        pub vendor_extension: Vec<NamedAny>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AdditionalPropertiesItem {
        #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
        pub oneof: Option<additional_properties_item::Oneof>,
    }

    pub mod additional_properties_item {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Oneof {
            #[prost(message, tag = "1")]
            Schema(super::Schema),
            #[prost(bool, tag = "2")]
            Boolean(bool),
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TypeItem {
        #[prost(string, repeated, tag = "1")]
        pub value: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ItemsItem {
        #[prost(message, repeated, tag = "1")]
        pub schema: Vec<Schema>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Properties {
        #[prost(message, repeated, tag = "1")]
        pub additional_properties: Vec<NamedSchema>,
    }

    /// `openapi.v2.Any`: the value as YAML text (field 1, a `google.protobuf.Any`, is
    /// never set: kubectl reads `yaml`).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "2")]
        pub yaml: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NamedAny {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, optional, tag = "2")]
        pub value: Option<Any>,
    }
}

// ---------------------------------------------------------------------------------------
// JSON → protobuf
// ---------------------------------------------------------------------------------------

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// A value as gnostic carries it: YAML text (JSON would parse too; YAML is what the
/// Kubernetes API server writes).
fn any(v: &Value) -> pb::Any {
    let yaml = serde_yaml::to_string(v).unwrap_or_else(|_| v.to_string());
    pb::Any { yaml }
}

fn extensions(v: &Value) -> Vec<pb::NamedAny> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| pb::NamedAny {
            name: k.clone(),
            value: Some(any(v)),
        })
        .collect()
}

fn named_schemas(v: Option<&Value>) -> Vec<pb::NamedSchema> {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, s)| pb::NamedSchema {
            name: name.clone(),
            value: Some(pb_schema(s)),
        })
        .collect()
}

fn pb_schema(s: &Value) -> pb::Schema {
    use pb::additional_properties_item::Oneof as Ap;
    let int = |k: &str| s.get(k).and_then(Value::as_i64).unwrap_or_default();
    let float = |k: &str| s.get(k).and_then(Value::as_f64).unwrap_or_default();
    let additional_properties = match s.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Ap::Boolean(*b)),
        Some(ap @ Value::Object(_)) => Some(Ap::Schema(pb_schema(ap))),
        _ => None,
    }
    .map(|oneof| Box::new(pb::AdditionalPropertiesItem { oneof: Some(oneof) }));
    pb::Schema {
        xref: text(s, "$ref"),
        format: text(s, "format"),
        title: text(s, "title"),
        description: text(s, "description"),
        maximum: float("maximum"),
        minimum: float("minimum"),
        max_length: int("maxLength"),
        min_length: int("minLength"),
        pattern: text(s, "pattern"),
        max_items: int("maxItems"),
        min_items: int("minItems"),
        unique_items: s.get("uniqueItems") == Some(&Value::Bool(true)),
        required: strings(s, "required"),
        r#enum: s
            .get("enum")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(any)
            .collect(),
        additional_properties,
        r#type: s.get("type").and_then(Value::as_str).map(|t| pb::TypeItem {
            value: vec![t.to_string()],
        }),
        items: s
            .get("items")
            .filter(|i| i.is_object())
            .map(|i| pb::ItemsItem {
                schema: vec![pb_schema(i)],
            }),
        properties: s.get("properties").map(|p| pb::Properties {
            additional_properties: named_schemas(Some(p)),
        }),
        read_only: s.get("readOnly") == Some(&Value::Bool(true)),
        vendor_extension: extensions(s),
    }
}

fn pb_parameter(p: &Value) -> pb::ParametersItem {
    use pb::non_body_parameter::Oneof as NonBody;
    use pb::parameter::Oneof as Param;
    let required = p.get("required") == Some(&Value::Bool(true));
    let unique_items = p.get("uniqueItems") == Some(&Value::Bool(true));
    let param = match p.get("in").and_then(Value::as_str) {
        Some("body") => Param::BodyParameter(pb::BodyParameter {
            description: text(p, "description"),
            name: text(p, "name"),
            r#in: "body".into(),
            required,
            schema: p.get("schema").map(pb_schema),
            vendor_extension: Vec::new(),
        }),
        Some("path") => Param::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::PathParameterSubSchema(
                pb::PathParameterSubSchema {
                    required,
                    r#in: "path".into(),
                    description: text(p, "description"),
                    name: text(p, "name"),
                    r#type: text(p, "type"),
                    unique_items,
                },
            )),
        }),
        _ => Param::NonBodyParameter(pb::NonBodyParameter {
            oneof: Some(NonBody::QueryParameterSubSchema(
                pb::QueryParameterSubSchema {
                    required,
                    r#in: "query".into(),
                    description: text(p, "description"),
                    name: text(p, "name"),
                    r#type: text(p, "type"),
                    unique_items,
                },
            )),
        }),
    };
    pb::ParametersItem {
        oneof: Some(pb::parameters_item::Oneof::Parameter(pb::Parameter {
            oneof: Some(param),
        })),
    }
}

fn pb_parameters(v: &Value) -> Vec<pb::ParametersItem> {
    v.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(pb_parameter)
        .collect()
}

fn pb_operation(op: &Value) -> pb::Operation {
    let response_code = op
        .get("responses")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(code, r)| pb::NamedResponseValue {
            name: code.clone(),
            value: Some(pb::ResponseValue {
                oneof: Some(pb::response_value::Oneof::Response(pb::Response {
                    description: text(r, "description"),
                    schema: r.get("schema").map(|s| pb::SchemaItem {
                        oneof: Some(pb::schema_item::Oneof::Schema(pb_schema(s))),
                    }),
                    vendor_extension: Vec::new(),
                })),
            }),
        })
        .collect();
    pb::Operation {
        tags: strings(op, "tags"),
        summary: String::new(),
        description: text(op, "description"),
        operation_id: text(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: pb_parameters(op),
        responses: Some(pb::Responses {
            response_code,
            vendor_extension: Vec::new(),
        }),
        schemes: strings(op, "schemes"),
        deprecated: false,
        vendor_extension: extensions(op),
    }
}

fn pb_document(doc: &Value) -> pb::Document {
    let path = doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(name, item)| {
            let op = |m: &str| item.get(m).map(pb_operation);
            pb::NamedPathItem {
                name: name.clone(),
                value: Some(pb::PathItem {
                    xref: String::new(),
                    get: op("get"),
                    put: op("put"),
                    post: op("post"),
                    delete: op("delete"),
                    patch: op("patch"),
                    parameters: pb_parameters(item),
                    vendor_extension: Vec::new(),
                }),
            }
        })
        .collect();
    pb::Document {
        swagger: text(doc, "swagger"),
        info: Some(pb::Info {
            title: text(&doc["info"], "title"),
            version: text(&doc["info"], "version"),
            description: String::new(),
        }),
        consumes: Vec::new(),
        produces: Vec::new(),
        paths: Some(pb::Paths {
            vendor_extension: Vec::new(),
            path,
        }),
        definitions: Some(pb::Definitions {
            additional_properties: named_schemas(doc.get("definitions")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_api::registry::KINDS;

    fn decoded() -> pb::Document {
        match pb::Document::decode(v2_protobuf().as_slice()) {
            Ok(d) => d,
            Err(e) => panic!("decode: {e}"),
        }
    }

    fn definitions(doc: &pb::Document) -> std::collections::BTreeMap<String, pb::Schema> {
        doc.definitions
            .iter()
            .flat_map(|d| d.additional_properties.iter())
            .filter_map(|n| Some((n.name.clone(), n.value.clone()?)))
            .collect()
    }

    fn extension(exts: &[pb::NamedAny], name: &str) -> Option<serde_yaml::Value> {
        let e = exts.iter().find(|e| e.name == name)?;
        serde_yaml::from_str(&e.value.as_ref()?.yaml).ok()
    }

    fn property<'a>(s: &'a pb::Schema, name: &str) -> Option<&'a pb::Schema> {
        s.properties
            .as_ref()?
            .additional_properties
            .iter()
            .find(|p| p.name == name)?
            .value
            .as_ref()
    }

    fn types(s: &pb::Schema) -> Vec<&str> {
        s.r#type
            .iter()
            .flat_map(|t| t.value.iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn decodes_with_every_kind_and_its_gvk() {
        let doc = decoded();
        assert_eq!(doc.swagger, "2.0");
        let defs = definitions(&doc);
        for info in KINDS {
            for kind in [info.kind.to_string(), format!("{}List", info.kind)] {
                let name = format!("dev.drover.v1alpha1.{kind}");
                let s = defs.get(&name).unwrap_or_else(|| panic!("missing {name}"));
                let gvk = extension(&s.vendor_extension, "x-kubernetes-group-version-kind");
                let want: serde_yaml::Value = serde_yaml::from_str(&format!(
                    "[{{group: drover.dev, version: v1alpha1, kind: {kind}}}]"
                ))
                .unwrap_or_default();
                assert_eq!(gvk, Some(want), "{name}");
            }
        }
        for shared in [
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            "io.k8s.api.autoscaling.v1.Scale",
            "io.k8s.api.core.v1.Event",
        ] {
            assert!(defs.contains_key(shared), "{shared}");
        }
    }

    #[test]
    fn explain_can_walk_into_app_health_checks() {
        let defs = definitions(&decoded());
        let app = defs.get("dev.drover.v1alpha1.App");
        let meta = app.and_then(|a| property(a, "metadata"));
        assert_eq!(
            meta.map(|m| m.xref.as_str()),
            Some("#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        );
        let hc = app
            .and_then(|a| property(a, "spec"))
            .and_then(|s| property(s, "healthChecks"));
        assert_eq!(hc.map(types), Some(vec!["array"]));
        let item = hc
            .and_then(|h| h.items.as_ref())
            .and_then(|i| i.schema.first());
        assert!(item.and_then(|i| property(i, "intervalSeconds")).is_some());
    }

    #[test]
    fn operations_carry_action_and_gvk_objects() {
        let doc = decoded();
        let paths = doc.paths.map(|p| p.path).unwrap_or_default();
        let item = paths
            .iter()
            .find(|p| p.name == "/apis/drover.dev/v1alpha1/namespaces/{namespace}/apps/{name}")
            .and_then(|p| p.value.clone());
        let patch = item.and_then(|i| i.patch);
        let patch = patch.as_ref();
        let exts = patch
            .map(|p| p.vendor_extension.as_slice())
            .unwrap_or_default();
        assert_eq!(
            extension(exts, "x-kubernetes-action"),
            Some(serde_yaml::Value::from("patch"))
        );
        let gvk = extension(exts, "x-kubernetes-group-version-kind");
        assert_eq!(
            gvk.as_ref()
                .and_then(|g| g.get("kind"))
                .and_then(|k| k.as_str()),
            Some("App")
        );
        let names: Vec<String> = patch
            .into_iter()
            .flat_map(|p| p.parameters.iter())
            .filter_map(|p| match &p.oneof {
                Some(pb::parameters_item::Oneof::Parameter(pb::Parameter {
                    oneof: Some(pb::parameter::Oneof::NonBodyParameter(nb)),
                })) => match &nb.oneof {
                    Some(pb::non_body_parameter::Oneof::QueryParameterSubSchema(q)) => {
                        Some(q.name.clone())
                    }
                    _ => None,
                },
                _ => None,
            })
            .collect();
        assert!(names.contains(&"fieldValidation".to_string()), "{names:?}");
        assert!(!v2_document().to_string().contains("strategic-merge-patch"));
    }

    /// What `k8s.io/kube-openapi/pkg/util/proto` `ParseSchema` rejects, checked on every
    /// schema: kubectl drops the whole document on one error.
    fn check_parseable(
        s: &pb::Schema,
        defs: &std::collections::BTreeMap<String, pb::Schema>,
        path: &str,
    ) {
        let t = types(s);
        let props = s.properties.as_ref();
        if !s.xref.is_empty() {
            assert!(t.is_empty(), "{path}: $ref with a type");
            assert!(
                props.is_none_or(|p| p.additional_properties.is_empty()),
                "{path}: $ref with properties"
            );
            let target = s.xref.strip_prefix("#/definitions/").unwrap_or_default();
            assert!(defs.contains_key(target), "{path}: dangling {}", s.xref);
            return;
        }
        assert!(t.len() <= 1, "{path}: several types");
        match t.first().copied() {
            None if props.is_none() => {
                assert!(s.items.is_none(), "{path}: free-form with items");
            }
            None | Some("object") if props.is_some() => {}
            Some("object") => {}
            Some("array") => {
                let items = s
                    .items
                    .as_ref()
                    .map(|i| i.schema.as_slice())
                    .unwrap_or_default();
                assert_eq!(items.len(), 1, "{path}: array needs one item schema");
            }
            Some(p) => assert!(PRIMITIVES.contains(&p), "{path}: unknown type {p}"),
            None => {}
        }
        for p in props
            .into_iter()
            .flat_map(|p| p.additional_properties.iter())
        {
            if let Some(v) = &p.value {
                check_parseable(v, defs, &format!("{path}.{}", p.name));
            }
        }
        for i in s.items.iter().flat_map(|i| i.schema.iter()) {
            check_parseable(i, defs, &format!("{path}[]"));
        }
        if let Some(pb::additional_properties_item::Oneof::Schema(ap)) = s
            .additional_properties
            .as_ref()
            .and_then(|a| a.oneof.as_ref())
        {
            check_parseable(ap, defs, &format!("{path}{{}}"));
        }
    }

    #[test]
    fn every_definition_parses_as_kubectl_would() {
        let defs = definitions(&decoded());
        for (name, s) in &defs {
            check_parseable(s, &defs, name);
        }
    }

    #[test]
    fn combined_and_nullable_schemas_become_free_form() {
        let any_of = json!({"description": "d", "anyOf": [{"type": "array"}, {"type": "object"}]});
        assert_eq!(convert_schema(&any_of, true), json!({"description": "d"}));
        let nullable = json!({"type": "integer", "nullable": true});
        assert_eq!(convert_schema(&nullable, true), json!({"type": "integer"}));
        assert_eq!(convert_schema(&nullable, false), json!({}));
        let obj = json!({
            "type": "object",
            "required": ["a", "b"],
            "properties": {"a": {"type": "string"}, "b": {"type": "string", "nullable": true}},
        });
        assert_eq!(convert_schema(&obj, false)["required"], json!(["a"]));
        let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(
            convert_schema(&map, false),
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        );
        let array = json!({"type": "array"});
        assert_eq!(convert_schema(&array, false)["items"], json!({}));
    }

    #[test]
    fn served_document_has_a_stable_etag() {
        let a = v2_served();
        let b = v2_served();
        assert_eq!(a.etag, b.etag);
        assert_eq!(a.bytes, b.bytes);
        assert!(a.etag.starts_with('"') && a.etag.len() == 18);
    }
}
