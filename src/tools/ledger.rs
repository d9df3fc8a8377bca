//! Tool-call ledger.
