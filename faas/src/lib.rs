//! Faaslet runtime (issue 5; not yet built).
