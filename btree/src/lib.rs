//! Optimistic-lock-coupling B+tree over buffer-manager pages (issue 3; not yet built).
#![deny(unsafe_code)]
