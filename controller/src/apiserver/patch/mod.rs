//! Write-side patching for the API server, as pure functions over `serde_json::Value`:
//! JSON merge patch (`merge`), JSON Patch (`json_patch`), and server-side apply with
//! field ownership (`apply`, over the field sets of `fieldset` and the
//! `metadata.managedFields` entries of `managed`).

mod apply;
mod fieldset;
mod json_patch;
mod managed;
mod merge;
mod value;

pub use apply::{apply, record_update, ApplyError, Conflict, BEFORE_FIRST_APPLY};
pub use fieldset::{field_set, FieldPath, FieldSet, FieldSetError, PathElement};
pub use json_patch::{json_patch, PatchError, PatchFailure};
pub use managed::{
    parse_managed_fields, read_managed_fields, write_managed_fields, ManagedFieldsEntry,
    ManagedFieldsError, Operation,
};
pub use merge::merge_patch;
