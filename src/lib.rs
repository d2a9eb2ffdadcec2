//! airlock: a sidecar forward proxy that puts a human before an AI agent's
//! irreversible actions.
//!
//! Data flows one way: [`server`] starts the proxy workers, each of which
//! accepts agent connections and serves them with [`proxy`], which classifies each request with [`rules`] and then tunnels,
//! forwards (through [`upstream`]), refuses, or holds it in [`holds`] for a
//! reviewer to decide through [`review`]. [`tls`] mints the
//! certificates interception needs; [`config`] reads `airlock.toml`;
//! [`commands`] implements the command line that `main.rs` parses.

pub mod canonical;
pub mod commands;
pub mod config;
pub mod error;
pub mod holds;
pub mod metrics;
pub mod notify;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod review;
pub mod rules;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod window;
