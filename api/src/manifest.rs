//! Multi-document YAML/JSON manifests → typed objects, with errors that name the
//! document, the line and column and the field path.

use serde::{Deserialize, Serialize};

use crate::defaults::Defaulting;
use crate::kinds::{
    app::App, constraint::Constraint, event::Event, framework::Framework, job::Job,
    job_run::JobRun, node::Node, quota::Quota, release::Release, task::Task, volume::Volume,
};
use crate::meta::{ObjectMeta, API_VERSION};
use crate::resource::{DroverKind, KindInfo};
use crate::validation::{Validate, ValidationErrors};

/// Why a manifest could not be read. Documents are numbered from 1.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// YAML syntax error, or a field of the wrong type (serde_yaml's message carries the
    /// field path and `at line L column C`).
    #[error("document {document}: {message}")]
    Syntax {
        /// Document number (1-based).
        document: usize,
        /// 1-based line in the whole text, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// The document is not a mapping.
    #[error("document {document}: expected a mapping with apiVersion and kind")]
    NotAnObject {
        /// Document number.
        document: usize,
    },
    /// `apiVersion` is absent.
    #[error("document {document}: missing apiVersion")]
    MissingApiVersion {
        /// Document number.
        document: usize,
    },
    /// `kind` is absent.
    #[error("document {document}: missing kind")]
    MissingKind {
        /// Document number.
        document: usize,
    },
    /// `apiVersion` is not Drover's.
    #[error("document {document}: unknown apiVersion {api_version:?} (expected {API_VERSION})")]
    UnknownApiVersion {
        /// Document number.
        document: usize,
        /// As written.
        api_version: String,
    },
    /// No such kind.
    #[error("document {document}: unknown kind {kind:?} in apiVersion {api_version}")]
    UnknownKind {
        /// Document number.
        document: usize,
        /// As written.
        kind: String,
        /// As written.
        api_version: String,
    },
    /// Fields the schema does not know (strict loading only).
    #[error("document {document}: unknown fields: {}", fields.join(", "))]
    UnknownFields {
        /// Document number.
        document: usize,
        /// Their paths.
        fields: Vec<String>,
    },
    /// The object parsed but is not valid.
    #[error("document {document}: {kind} {name:?} is invalid:\n{errors}")]
    Invalid {
        /// Document number.
        document: usize,
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// Every problem.
        errors: ValidationErrors,
    },
}

macro_rules! any_object {
    ($($kind:ident),* $(,)?) => {
        /// An object of any Drover kind.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum AnyObject {
            $(
                #[doc = concat!("A ", stringify!($kind), ".")]
                $kind($kind),
            )*
        }

        impl AnyObject {
            /// The registry entry of its kind.
            pub fn info(&self) -> KindInfo {
                match self {
                    $(AnyObject::$kind(_) => KindInfo::of::<$kind>(),)*
                }
            }

            /// Its metadata.
            pub fn metadata(&self) -> &ObjectMeta {
                match self {
                    $(AnyObject::$kind(o) => o.metadata(),)*
                }
            }

            /// Its metadata, mutably.
            pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(AnyObject::$kind(o) => o.metadata_mut(),)*
                }
            }

            /// Applies the kind's defaults.
            pub fn apply_defaults(&mut self) {
                match self {
                    $(AnyObject::$kind(o) => o.apply_defaults(),)*
                }
            }

            /// Validates it, returning every problem.
            pub fn validate(&self) -> Result<(), ValidationErrors> {
                match self {
                    $(AnyObject::$kind(o) => o.validate(),)*
                }
            }

            /// Deserializes an object of the kind named `kind`; None for an unknown kind.
            pub fn deserialize_kind<'de, D: serde::Deserializer<'de>>(
                kind: &str,
                d: D,
            ) -> Option<Result<AnyObject, D::Error>> {
                match kind {
                    $(k if k == <$kind as DroverKind>::KIND => {
                        Some($kind::deserialize(d).map(AnyObject::$kind))
                    })*
                    _ => None,
                }
            }
        }

        $(
            impl From<$kind> for AnyObject {
                fn from(o: $kind) -> Self {
                    AnyObject::$kind(o)
                }
            }
        )*
    };
}

any_object!(App, Task, Job, JobRun, Volume, Constraint, Node, Framework, Quota, Release, Event);

impl AnyObject {
    /// Its `kind`.
    pub fn kind(&self) -> &'static str {
        self.info().kind
    }

    /// Its name (empty when unset).
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    /// Parses one JSON object, dispatching on `kind`.
    pub fn from_json(value: serde_json::Value) -> Result<AnyObject, ManifestError> {
        let header = header_of(&value, 1)?;
        AnyObject::deserialize_kind(&header, value)
            .unwrap_or_else(|| unreachable_kind(&header))
            .map_err(|e| ManifestError::Syntax {
                document: 1,
                line: None,
                column: None,
                message: e.to_string(),
            })
    }

    /// Its JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn unreachable_kind<E: serde::de::Error>(kind: &str) -> Result<AnyObject, E> {
    Err(E::custom(format!("unknown kind {kind:?}")))
}

/// Reads apiVersion/kind of one document and checks them against the registry.
fn header_of<V: HeaderSource>(value: &V, document: usize) -> Result<String, ManifestError> {
    if !value.is_mapping() {
        return Err(ManifestError::NotAnObject { document });
    }
    let api_version = value
        .string_field("apiVersion")
        .ok_or(ManifestError::MissingApiVersion { document })?;
    let kind = value
        .string_field("kind")
        .ok_or(ManifestError::MissingKind { document })?;
    if api_version != API_VERSION {
        return Err(ManifestError::UnknownApiVersion {
            document,
            api_version,
        });
    }
    if crate::registry::kind_by_name(&kind).is_none() {
        return Err(ManifestError::UnknownKind {
            document,
            kind,
            api_version,
        });
    }
    Ok(kind)
}

trait HeaderSource {
    fn is_mapping(&self) -> bool;
    fn string_field(&self, key: &str) -> Option<String>;
}

impl HeaderSource for serde_yaml::Value {
    fn is_mapping(&self) -> bool {
        self.is_mapping()
    }
    fn string_field(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.as_str()).map(str::to_string)
    }
}

impl HeaderSource for serde_json::Value {
    fn is_mapping(&self) -> bool {
        self.is_object()
    }
    fn string_field(&self, key: &str) -> Option<String> {
        self.get(key).and_then(|v| v.as_str()).map(str::to_string)
    }
}

fn syntax(document: usize, e: &serde_yaml::Error) -> ManifestError {
    let location = e.location();
    ManifestError::Syntax {
        document,
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        message: e.to_string(),
    }
}

/// One parsed document: its number, its generic value and its kind (None when empty).
struct RawDocument {
    number: usize,
    value: serde_yaml::Value,
    kind: Option<String>,
}

fn raw_documents(text: &str) -> Result<Vec<RawDocument>, ManifestError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let number = i + 1;
        let value = serde_yaml::Value::deserialize(de).map_err(|e| syntax(number, &e))?;
        let kind = if value.is_null() {
            None
        } else {
            Some(header_of(&value, number)?)
        };
        docs.push(RawDocument {
            number,
            value,
            kind,
        });
    }
    Ok(docs)
}

/// Parses multi-document YAML (or a JSON document) into typed objects. Empty documents
/// are skipped; the first problem ends parsing. Neither defaults nor validation are
/// applied (see [`load_manifests`]).
pub fn parse_manifests(text: &str) -> Result<Vec<AnyObject>, ManifestError> {
    let raw = raw_documents(text)?;
    let mut out = Vec::new();
    // Second pass straight from the text, so type errors carry a line and column.
    for (de, doc) in serde_yaml::Deserializer::from_str(text).zip(&raw) {
        let Some(kind) = &doc.kind else {
            continue;
        };
        let object = AnyObject::deserialize_kind(kind, de)
            .unwrap_or_else(|| unreachable_kind(kind))
            .map_err(|e| syntax(doc.number, &e))?;
        out.push(object);
    }
    Ok(out)
}

/// How [`load_manifests`] treats what it reads.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Namespace given to namespaced objects that have none (as kubectl does).
    pub default_namespace: Option<String>,
    /// Report fields the schema does not know (`fieldValidation=Strict`).
    pub strict: bool,
}

/// Parses, defaults and validates every document; reports every invalid document (and
/// every problem in each), or the first parse error.
pub fn load_manifests(
    text: &str,
    options: &LoadOptions,
) -> Result<Vec<AnyObject>, Vec<ManifestError>> {
    let objects = parse_manifests(text).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    if options.strict {
        let raw = raw_documents(text).map_err(|e| vec![e])?;
        for doc in raw.iter().filter(|d| d.kind.is_some()) {
            let json = serde_json::to_value(&doc.value).unwrap_or_default();
            let kind = doc.kind.as_deref().unwrap_or_default();
            let fields = crate::schema::unknown_fields(kind, &json);
            if !fields.is_empty() {
                errors.push(ManifestError::UnknownFields {
                    document: doc.number,
                    fields,
                });
            }
        }
    }
    let numbers = document_numbers(text);
    let mut out = Vec::with_capacity(objects.len());
    for (mut object, document) in objects.into_iter().zip(numbers) {
        if let Some(ns) = &options.default_namespace {
            let namespaced = object.info().namespaced;
            let meta = object.metadata_mut();
            if namespaced && meta.namespace.as_deref().is_none_or(str::is_empty) {
                meta.namespace = Some(ns.clone());
            }
        }
        object.apply_defaults();
        if let Err(e) = object.validate() {
            errors.push(ManifestError::Invalid {
                document,
                kind: object.kind(),
                name: object.name().to_string(),
                errors: e,
            });
        }
        out.push(object);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Numbers of the non-empty documents, in order.
fn document_numbers(text: &str) -> Vec<usize> {
    raw_documents(text)
        .map(|docs| {
            docs.iter()
                .filter(|d| d.kind.is_some())
                .map(|d| d.number)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "\
apiVersion: drover.dev/v1alpha1
kind: App
metadata: {name: web, namespace: default}
spec:
  container: {cmd: sleep 100}
---
# comment-only documents are skipped
---
apiVersion: drover.dev/v1alpha1
kind: Node
metadata: {name: node-1}
";

    #[test]
    fn parses_several_documents_of_several_kinds() {
        let objects = parse_manifests(TWO).unwrap_or_else(|e| panic!("{e}"));
        let kinds: Vec<&str> = objects.iter().map(AnyObject::kind).collect();
        assert_eq!(kinds, vec!["App", "Node"]);
        assert_eq!(objects[1].name(), "node-1");
    }

    #[test]
    fn unknown_kind_names_the_document() {
        let text = format!("{TWO}---\napiVersion: drover.dev/v1alpha1\nkind: Foo\n");
        let err = parse_manifests(&text).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("document 4: unknown kind \"Foo\" in apiVersion drover.dev/v1alpha1")
        );
    }

    #[test]
    fn type_errors_carry_path_and_line() {
        let text = "apiVersion: drover.dev/v1alpha1\nkind: App\nmetadata: {name: web}\nspec:\n  instances: three\n";
        let err = parse_manifests(text).err();
        let Some(ManifestError::Syntax { line, message, .. }) = err else {
            panic!("{err:?}");
        };
        assert_eq!(line, Some(5));
        assert!(
            message.starts_with("spec.instances: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn load_defaults_namespace_and_validates() {
        let options = LoadOptions {
            default_namespace: Some("default".into()),
            strict: true,
        };
        let objects = load_manifests(TWO, &options).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(objects[0].metadata().namespace.as_deref(), Some("default"));
        assert_eq!(objects[1].metadata().namespace, None);
    }
}
