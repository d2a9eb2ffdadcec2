//! airlock: a sidecar forward proxy that puts a human before an AI agent's
//! irreversible actions.
//!
//! Data flows one way: [`server`] accepts agent connections and hands them to
//! [`proxy`], which classifies each request with [`rules`] and then tunnels,
//! forwards (through [`upstream`]) or refuses it. [`tls`] mints the
//! certificates interception needs; [`config`] reads `airlock.toml`;
//! [`commands`] implements the command line that `main.rs` parses.

pub mod commands;
pub mod config;
pub mod error;
pub mod proxy;
pub mod rules;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod window;
