//! Drover's resource types (group `drover.dev`, version `v1alpha1`).
