//! callbridge library.

pub mod store;
