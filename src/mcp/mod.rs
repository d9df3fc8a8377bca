//! MCP (Model Context Protocol), spoken through the official Rust SDK (`rmcp`); the protocol is
//! never hand-written here.
//!
//! Owns two roles: [`server`] serves one tenant's tools (and read-only views of its calls) to MCP
//! clients, running them through the same tool runtime as a phone call; [`client`] reaches the
//! external MCP servers an agent names and turns their tools into [`crate::tools::Tool`]s a call
//! offers. It must not authenticate HTTP requests (the HTTP surface does, and hands the tenant
//! over), run tools by a path of its own, or send a request to a URL the egress guard refused.

pub mod client;
pub mod doctor;
pub mod server;
