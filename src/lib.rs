//! callbridge library.
