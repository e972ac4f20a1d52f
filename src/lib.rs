//! mydocker: a Docker-Engine-compatible container daemon.
//!
//! A tour of the crate, from the wire inwards:
//! - [`api`] speaks HTTP only: it parses requests, validates them, calls one
//!   engine function and shapes dockerd's JSON. Nothing below it knows HTTP.
//! - [`image`] is the image engine: references, registry pulls, the
//!   content-addressed blob and layer store, import/save/load.
//! - [`container`] is the container engine: create, start, stop, wait,
//!   logs, remove, on top of [`runtime`]'s per-container monitors.
//! - [`volume`] is the volume engine (the `local` driver); containers
//!   mount volumes through [`container`]'s mounts.
//! - [`store`] owns the SQLite database: schema, migrations, and one file per
//!   kind of row. Every call runs off the async threads.
//! - [`events`] is the single broadcaster behind `GET /events`.
//! - [`config`] merges command-line flags with `daemon.json` like dockerd.
//! - [`daemon`] wires it all together: start-up reconciliation, the socket,
//!   graceful shutdown.

#![recursion_limit = "256"]

pub mod api;
pub mod config;
pub mod container;
pub mod daemon;
pub mod disk_usage;
pub mod duration;
pub mod error;
pub mod events;
pub mod filters;
pub mod image;
pub mod logs;
pub mod network;
pub mod runtime;
pub mod signal;
pub mod store;
pub mod system;
#[cfg(test)]
mod test_tar;
pub mod volume;
