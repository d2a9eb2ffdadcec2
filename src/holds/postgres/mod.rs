//! The hold store on PostgreSQL, for a fleet of sidecars sharing one queue
//! (`[store] url`). This module owns the schema and its migrations; it must
//! never be required by the embedded default (sled), and never log the
//! database URL, which may carry a password.
//!
//! - [`migrate`]: versioned migrations from `migrations/postgres/`, applied
//!   by airlock itself on start, safe when instances start together.

pub mod migrate;
