//! Capability traits and the vendor connectors that implement them.
