//! One module per Drover kind: its spec, status, defaults and validation.

pub mod app;
pub mod constraint;
pub mod event;
pub mod framework;
pub mod job;
pub mod job_run;
pub mod node;
pub mod quota;
pub mod release;
pub mod task;
pub mod volume;

use crate::resource::DroverKind;

/// Fills an empty `apiVersion`/`kind` with the kind's own.
pub(crate) fn default_type_meta<K: DroverKind>(api_version: &mut String, kind: &mut String) {
    if api_version.is_empty() {
        *api_version = K::API_VERSION.to_string();
    }
    if kind.is_empty() {
        *kind = K::KIND.to_string();
    }
}

/// Writes the boilerplate constructor shared by every kind with spec and status.
macro_rules! kind_constructor {
    ($kind:ident, $spec:ty) => {
        impl $kind {
            /// An object with this name (and namespace, ignored for cluster-scoped kinds)
            /// and spec.
            pub fn new(namespace: &str, name: &str, spec: $spec) -> Self {
                use $crate::resource::DroverKind;
                $kind {
                    api_version: Self::API_VERSION.to_string(),
                    kind: Self::KIND.to_string(),
                    metadata: $crate::meta::ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Self::NAMESPACED.then(|| namespace.to_string()),
                        ..Default::default()
                    },
                    spec,
                    status: None,
                }
            }
        }
    };
}
pub(crate) use kind_constructor;

/// Writes `DroverKind::metadata{,_mut}`.
macro_rules! metadata_accessors {
    () => {
        fn metadata(&self) -> &$crate::meta::ObjectMeta {
            &self.metadata
        }
        fn metadata_mut(&mut self) -> &mut $crate::meta::ObjectMeta {
            &mut self.metadata
        }
    };
}
pub(crate) use metadata_accessors;
