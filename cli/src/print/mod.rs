//! What the CLI prints: server Tables as aligned columns (`table`) and objects as YAML,
//! JSON or names (`object`).

pub mod object;
pub mod table;
