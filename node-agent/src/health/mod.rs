//! Health and readiness checks (being written).
