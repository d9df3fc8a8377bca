pub mod ledger;
pub mod policy;
pub mod redact;
