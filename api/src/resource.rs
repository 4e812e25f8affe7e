//! The `DroverKind` trait: what the API server, the store and the CRD renderer need to
//! know about a kind (names, scope, printer columns, subresources), plus the checks
//! every object shares (apiVersion/kind, metadata.name, metadata.namespace).

use std::fmt::Debug;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::defaults::Defaulting;
use crate::meta::{ObjectMeta, API_VERSION, GROUP, VERSION};
use crate::validation::{check_label, check_subdomain, Path, Validate, ValidationErrors};

/// A column of `kubectl get` / `drover get` output (CRD `additionalPrinterColumns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: &'static str,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: &'static str,
    /// JSONPath into the object, e.g. `.status.running`.
    pub json_path: &'static str,
    /// What the column shows.
    pub description: &'static str,
    /// 0 = always shown, > 0 = only with `-o wide`.
    pub priority: i32,
}

/// The paths of the `scale` subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleSubresource {
    /// Desired replicas (`.spec.instances`).
    pub spec_replicas_path: &'static str,
    /// Observed replicas (`.status.instances`).
    pub status_replicas_path: &'static str,
    /// Label selector string in status, for autoscalers.
    pub label_selector_path: Option<&'static str>,
}

/// The `Age` column every kind has.
pub const AGE_COLUMN: PrinterColumn = PrinterColumn {
    name: "Age",
    type_: "date",
    json_path: ".metadata.creationTimestamp",
    description: "Time since the object was created",
    priority: 0,
};

/// A Drover resource kind.
pub trait DroverKind:
    Serialize
    + DeserializeOwned
    + JsonSchema
    + Clone
    + Debug
    + Defaulting
    + Validate
    + Send
    + Sync
    + 'static
{
    /// `kind`, e.g. `App`.
    const KIND: &'static str;
    /// Plural resource name, e.g. `apps` (URL segment and store key segment).
    const PLURAL: &'static str;
    /// Singular resource name, e.g. `app`.
    const SINGULAR: &'static str;
    /// Short names for the CLI and kubectl (never a kubectl built-in one).
    const SHORT_NAMES: &'static [&'static str];
    /// Categories (`drover`, `all`).
    const CATEGORIES: &'static [&'static str];
    /// Namespaced (true) or cluster-scoped (false).
    const NAMESPACED: bool;
    /// API group.
    const GROUP: &'static str = GROUP;
    /// API version within the group.
    const VERSION: &'static str = VERSION;
    /// `apiVersion`.
    const API_VERSION: &'static str = API_VERSION;
    /// Printer columns (besides the name).
    const PRINTER_COLUMNS: &'static [PrinterColumn];
    /// Whether the kind has a `status` subresource (every kind but Event).
    const HAS_STATUS: bool = true;
    /// The `scale` subresource, if any.
    const SCALE: Option<ScaleSubresource> = None;

    /// The object's metadata.
    fn metadata(&self) -> &ObjectMeta;
    /// The object's metadata, mutably.
    fn metadata_mut(&mut self) -> &mut ObjectMeta;
}

/// Everything the API server needs to serve one kind, without naming its type.
#[derive(Clone, Copy, Debug)]
pub struct KindInfo {
    /// `kind`.
    pub kind: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Singular resource name.
    pub singular: &'static str,
    /// Short names.
    pub short_names: &'static [&'static str],
    /// Categories.
    pub categories: &'static [&'static str],
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Printer columns.
    pub printer_columns: &'static [PrinterColumn],
    /// Has a status subresource.
    pub has_status: bool,
    /// The scale subresource, if any.
    pub scale: Option<ScaleSubresource>,
    /// The OpenAPI v3 schema of the kind (all references inlined).
    pub schema: fn() -> serde_json::Value,
}

impl KindInfo {
    /// The description of `K`.
    pub const fn of<K: DroverKind>() -> KindInfo {
        KindInfo {
            kind: K::KIND,
            plural: K::PLURAL,
            singular: K::SINGULAR,
            short_names: K::SHORT_NAMES,
            categories: K::CATEGORIES,
            namespaced: K::NAMESPACED,
            printer_columns: K::PRINTER_COLUMNS,
            has_status: K::HAS_STATUS,
            scale: K::SCALE,
            schema: crate::schema::openapi_schema::<K>,
        }
    }

    /// `<plural>.<group>`, the CRD name.
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, GROUP)
    }

    /// True when `name` is this kind's kind, plural, singular or a short name
    /// (case-insensitive for the kind, as kubectl does).
    pub fn answers_to(&self, name: &str) -> bool {
        self.kind.eq_ignore_ascii_case(name)
            || self.plural == name
            || self.singular == name
            || self.short_names.contains(&name)
            || name == self.crd_name()
    }
}

/// Checks `apiVersion`, `kind` and the metadata every object shares.
pub fn validate_object_header<K: DroverKind>(
    api_version: &str,
    kind: &str,
    meta: &ObjectMeta,
    errors: &mut ValidationErrors,
) {
    if api_version != K::API_VERSION {
        errors.not_supported(&Path::root("apiVersion"), api_version, &[K::API_VERSION]);
    }
    if kind != K::KIND {
        errors.not_supported(&Path::root("kind"), kind, &[K::KIND]);
    }
    validate_object_meta(meta, K::NAMESPACED, errors);
}

/// Checks `metadata`: name (or generateName) is a DNS-1123 subdomain, namespace is set
/// (and a DNS-1123 label) for namespaced kinds and absent for cluster-scoped ones.
pub fn validate_object_meta(meta: &ObjectMeta, namespaced: bool, errors: &mut ValidationErrors) {
    let path = Path::root("metadata");
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) if !name.is_empty() => check_subdomain(errors, &path.child("name"), name),
        (_, Some(prefix)) if !prefix.is_empty() => {
            // generateName gets a random suffix, so only its characters can be checked.
            let probe = format!("{}a", prefix.trim_end_matches('-'));
            if !crate::validation::dns1123_subdomain_problems(&probe).is_empty() {
                check_subdomain(errors, &path.child("generateName"), prefix);
            }
        }
        _ => errors.required(&path.child("name"), "name or generateName is required"),
    }
    match (&meta.namespace, namespaced) {
        (Some(ns), true) if !ns.is_empty() => check_label(errors, &path.child("namespace"), ns),
        (_, true) => errors.required(&path.child("namespace"), ""),
        (Some(ns), false) if !ns.is_empty() => {
            errors.forbidden(&path.child("namespace"), "not allowed on this type")
        }
        _ => {}
    }
}
