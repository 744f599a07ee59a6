//! vmcache-style buffer manager (work in progress: the I/O layer first).
pub mod io;
