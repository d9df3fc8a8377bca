//! callbridge library.

pub mod store;
pub mod tenant;
