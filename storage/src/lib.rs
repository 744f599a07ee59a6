//! Durable storage: Db, transactions, WAL, checkpoints, recovery (issue 4; not yet built).
