//! callbridge library.

pub mod audio;
