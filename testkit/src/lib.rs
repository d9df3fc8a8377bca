//! Loopback fakes for tests and load generation.
