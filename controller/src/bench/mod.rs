//! Benchmark engines the `drover bench …` commands drive: they print nothing and
//! return their figures, so tests can check them.

pub mod schedule;
