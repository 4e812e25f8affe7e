//! GET of one object (or its scale) and of lists — paginated, filtered by label and
//! field selectors, as JSON lists or as `kubectl get` Tables.

use std::collections::BTreeMap;

use drover_api::KindInfo;
use drover_store::{ListOptions, StoreError};
use serde_json::{json, Value};

use crate::apiserver::objects::{collection_prefix, from_stored, key, meta};
use crate::apiserver::request::Target;
use crate::apiserver::selector::{
    parse_field_selector, parse_label_selector, FieldSelector, LabelSelector,
};
use crate::apiserver::server::{ApiState, Query};
use crate::apiserver::status::{ApiError, ApiResult};

/// Field selectors every kind supports, plus what the agent and the CLI need.
pub fn allowed_fields(info: &KindInfo) -> Vec<&'static str> {
    let mut f = vec!["metadata.name", "metadata.namespace"];
    if info.kind == "Task" {
        f.extend(["spec.nodeName", "status.phase"]);
    }
    if info.kind == "Event" {
        f.extend([
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "type",
            "source",
        ]);
    }
    f
}

pub struct Selectors {
    pub labels: Option<LabelSelector>,
    pub fields: Option<FieldSelector>,
}

impl Selectors {
    pub fn parse(info: &KindInfo, q: &Query) -> ApiResult<Self> {
        let labels =
            match q.get("labelSelector").filter(|s| !s.is_empty()) {
                Some(s) => Some(parse_label_selector(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
            Some(s) => Some(
                parse_field_selector(s, &allowed_fields(info))
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            None => None,
        };
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(l) = &self.labels {
            let labels: BTreeMap<String, String> = meta(obj)
                .and_then(|m| m.get("labels"))
                .and_then(Value::as_object)
                .map(|l| {
                    l.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if !l.matches(&labels) {
                return false;
            }
        }
        self.fields.as_ref().is_none_or(|f| f.matches(obj))
    }
}

pub async fn get_object(state: &ApiState, t: &Target) -> ApiResult<(Value, i64)> {
    let name = t.name.as_deref().unwrap_or_default();
    let k = key(t.info, t.namespace.as_deref(), name);
    match state.store.get(&k).await.map_err(store_error)? {
        Some(kv) => Ok((from_stored(&kv)?, kv.mod_revision)),
        None => Err(ApiError::not_found(t.info, name)),
    }
}

/// A page of a list: the matching objects, the revision they were read at, and the
/// continue token if more follow.
pub struct ListResult {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
}

pub async fn list_objects(
    state: &ApiState,
    t: &Target,
    q: &Query,
    selectors: &Selectors,
) -> ApiResult<ListResult> {
    let limit: usize = match q.get("limit") {
        Some(l) => l
            .parse()
            .map_err(|_| ApiError::bad_request(format!("limit must be a number, got {l:?}")))?,
        None => 0,
    };
    let prefix = collection_prefix(t.info, t.namespace.as_deref());
    let mut opts = ListOptions {
        limit,
        continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
        revision: None,
    };
    let mut items = Vec::new();
    // Filtered lists may need several store pages to fill one API page.
    loop {
        let page = state.store.list(&prefix, opts.clone()).await.map_err(|e| match e {
            StoreError::Compacted { .. } => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. \
                 You can start a new list without the continue parameter.",
            ),
            StoreError::InvalidContinue(m) => ApiError::bad_request(format!("invalid continue token: {m}")),
            other => store_error(other),
        })?;
        for kv in &page.items {
            let obj = from_stored(kv)?;
            if selectors.matches(&obj) {
                items.push(obj);
            }
        }
        let full = limit > 0 && items.len() >= limit;
        match page.continue_token {
            Some(token) if !full => opts.continue_token = Some(token),
            token => {
                return Ok(ListResult {
                    items,
                    revision: page.revision,
                    continue_token: token,
                })
            }
        }
    }
}

pub fn list_body(info: &KindInfo, result: ListResult) -> Value {
    let mut metadata = json!({"resourceVersion": result.revision.to_string()});
    if let Some(c) = result.continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "apiVersion": "drover.dev/v1alpha1",
        "kind": format!("{}List", info.kind),
        "metadata": metadata,
        "items": result.items,
    })
}

/// `autoscaling/v1` Scale of an object with a scale subresource.
pub fn scale_of(info: &KindInfo, obj: &Value) -> Value {
    let replicas = obj
        .pointer("/spec/instances")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let observed = obj
        .pointer("/status/instances")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta(obj).and_then(|m| m.get(f)) {
            metadata[f] = v.clone();
        }
    }
    let name = meta(obj)
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": replicas},
        "status": {"replicas": observed, "selector": format!("drover.dev/{}={name}", info.singular)},
    })
}

/// Store failures that are not the caller's fault.
pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Closed | StoreError::CommitFailed(_) => {
            ApiError::unavailable(format!("the store is unavailable: {e}"))
        }
        other => ApiError::internal(format!("store: {other}")),
    }
}
