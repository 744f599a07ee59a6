//! Host ABI v1 (`docs/abi.md`) as data: its names, limits, result and
//! error codes, log levels and import table.
//!
//! This is the `rime-abi` crate, re-exported: the host depends on the same
//! crate, so the SDK and the host share one definition of every number.

pub use rime_abi::*;
