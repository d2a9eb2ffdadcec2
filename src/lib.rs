//! airlock: a sidecar forward proxy that puts a human before an AI agent's
//! irreversible actions.
//!
//! Data flows one way: [`server`] starts the proxy workers, each of which
//! accepts agent connections and serves them with [`proxy`], which reads
//! each request one way ([`canonical`]), classifies that reading with
//! [`rules`] and then tunnels, forwards
//! (through [`upstream`]), refuses, or holds it in [`holds`] for a reviewer
//! to decide through [`review`]; the two sides meet only in the store.
//! [`tls`] mints the certificates interception needs; [`reload`] swaps the
//! rule set in force; [`notify`] tells reviewers from the audit log;
//! [`report`] and [`metrics`] read figures; [`window`] is time as rules
//! write it; [`slack`] talks to the Slack app's Web API and checks its
//! signatures; [`error`] maps proxy errors to statuses; [`config`] reads
//! `airlock.toml`; [`credentials`] sets the secrets agents never hold on
//! requests going upstream; [`commands`] implements the command line that `main.rs`
//! parses. `docs/ARCHITECTURE.md` has the map, who owns which state, and
//! where each SPEC section lives.

pub mod canonical;
pub mod commands;
pub mod config;
pub mod credentials;
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
pub mod slack;
pub mod tls;
pub mod upstream;
pub mod window;
