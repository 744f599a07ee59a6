//! Benchmark harness (issue 7; not yet built).
