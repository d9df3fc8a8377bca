//! callbridge library.

pub mod connectors;
pub mod tools;
