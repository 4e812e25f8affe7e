//! Semantic validation: every problem with its field path, never the first only,
//! plus the Kubernetes name rules (DNS-1123 label and subdomain).

use std::fmt;

/// What kind of problem a [`ValidationError`] reports; maps onto the `reason` of a
/// Kubernetes `StatusCause` (`FieldValueInvalid`, `FieldValueRequired`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The value is present but wrong.
    Invalid,
    /// The value is missing.
    Required,
    /// The value must not be set here.
    Forbidden,
    /// The value repeats one that must be unique.
    Duplicate,
    /// The value is not one of the supported values.
    NotSupported,
}

impl ErrorKind {
    /// The Kubernetes `StatusCause.reason` for this kind.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::NotSupported => "FieldValueNotSupported",
        }
    }
}

/// One problem: the field path (`spec.healthChecks[0].intervalSeconds`) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Path of the offending field, dotted, with `[i]` for list items.
    pub field: String,
    /// What kind of problem it is.
    pub kind: ErrorKind,
    /// Human-readable explanation (`must be > 0`).
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one object; `Display` lists them one per line.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors {
    /// The problems, in the order the fields were checked.
    pub errors: Vec<ValidationError>,
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Records a problem of the given kind.
    pub fn push(&mut self, field: &Path, kind: ErrorKind, message: impl Into<String>) {
        self.errors.push(ValidationError {
            field: field.to_string(),
            kind,
            message: message.into(),
        });
    }

    /// Records an invalid value.
    pub fn invalid(&mut self, field: &Path, message: impl Into<String>) {
        self.push(field, ErrorKind::Invalid, message);
    }

    /// Records a missing value (`Required value`, optionally with a detail).
    pub fn required(&mut self, field: &Path, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push(field, ErrorKind::Required, message);
    }

    /// Records a value that must not be set.
    pub fn forbidden(&mut self, field: &Path, detail: &str) {
        self.push(field, ErrorKind::Forbidden, format!("Forbidden: {detail}"));
    }

    /// Records a duplicated value.
    pub fn duplicate(&mut self, field: &Path, value: &str) {
        self.push(
            field,
            ErrorKind::Duplicate,
            format!("Duplicate value: {value:?}"),
        );
    }

    /// Records a value outside a closed set.
    pub fn not_supported(&mut self, field: &Path, value: &str, supported: &[&str]) {
        let list = supported
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.push(
            field,
            ErrorKind::NotSupported,
            format!("Unsupported value: {value:?}: supported values: {list}"),
        );
    }

    /// Appends the problems of another check.
    pub fn extend(&mut self, other: ValidationErrors) {
        self.errors.extend(other.errors);
    }

    /// `Ok(())` when empty, else `Err(self)`.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// A field path under construction; cheap to extend, printed as
/// `spec.healthChecks[0].intervalSeconds`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// A path starting at a top-level field (`spec`, `metadata`).
    pub fn root(field: &str) -> Self {
        Path(field.to_string())
    }

    /// The path of a child field.
    pub fn child(&self, field: &str) -> Self {
        if self.0.is_empty() {
            Path(field.to_string())
        } else {
            Path(format!("{}.{field}", self.0))
        }
    }

    /// The path of a list item.
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry.
    pub fn key(&self, key: &str) -> Self {
        Path(format!("{}[{key}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Semantic validation of one value, reporting into a shared error list.
pub trait Validate {
    /// Checks `self` and returns every problem found.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
/// Maximum length of a DNS-1123 label.
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of a DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// Kubernetes' message for a name that is not a DNS-1123 label.
pub fn dns1123_label_message() -> String {
    format!(
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
         and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', \
         regex used for validation is '{DNS1123_LABEL_FMT}')"
    )
}

/// Kubernetes' message for a name that is not a DNS-1123 subdomain.
pub fn dns1123_subdomain_message() -> String {
    format!(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
         or '.', and must start and end with an alphanumeric character (e.g. 'example.com', \
         regex used for validation is '{DNS1123_SUBDOMAIN_FMT}')"
    )
}

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn label_chars_ok(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_alnum(first) && is_alnum(last) && b.iter().all(|&c| is_label_char(c))
        }
        _ => false,
    }
}

/// Problems with `value` as a DNS-1123 label (empty when it is one).
pub fn dns1123_label_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        out.push(format!(
            "must be no more than {DNS1123_LABEL_MAX_LENGTH} characters"
        ));
    }
    if !label_chars_ok(value) {
        out.push(dns1123_label_message());
    }
    out
}

/// Problems with `value` as a DNS-1123 subdomain (empty when it is one).
pub fn dns1123_subdomain_problems(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        out.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX_LENGTH} characters"
        ));
    }
    if !value.split('.').all(label_chars_ok) {
        out.push(dns1123_subdomain_message());
    }
    out
}

/// Reports every problem of `value` as a DNS-1123 subdomain at `field`.
pub fn check_subdomain(errors: &mut ValidationErrors, field: &Path, value: &str) {
    for p in dns1123_subdomain_problems(value) {
        errors.invalid(field, format!("Invalid value: {value:?}: {p}"));
    }
}

/// Reports every problem of `value` as a DNS-1123 label at `field`.
pub fn check_label(errors: &mut ValidationErrors, field: &Path, value: &str) {
    for p in dns1123_label_problems(value) {
        errors.invalid(field, format!("Invalid value: {value:?}: {p}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(dns1123_label_problems("web-1").is_empty());
        assert!(!dns1123_label_problems("Web").is_empty());
        assert!(!dns1123_label_problems("-web").is_empty());
        assert!(!dns1123_label_problems("a.b").is_empty());
        assert!(dns1123_subdomain_problems("a.b-c.d").is_empty());
        assert!(!dns1123_subdomain_problems("a..b").is_empty());
        assert!(!dns1123_subdomain_problems("").is_empty());
        assert_eq!(dns1123_label_problems(&"a".repeat(64)).len(), 1);
    }

    #[test]
    fn display_lists_every_error_one_per_line() {
        let mut e = ValidationErrors::new();
        let spec = Path::root("spec");
        e.invalid(&spec.child("instances"), "must be >= 0");
        e.required(&spec.child("healthChecks").index(2).child("exec"), "");
        assert_eq!(
            e.to_string(),
            "spec.instances: must be >= 0\nspec.healthChecks[2].exec: Required value"
        );
    }
}
