//! harvest-exporter: exports a trading system's harvest proposals, kept as Redis hashes, as
//! Prometheus metrics. Data flows one way:
//!
//! - `source` reads Redis into `fetch`'s plain types; `proposal` turns a hash into typed
//!   values; `snapshot` holds one refresh's state and its transitions; `render` writes it as
//!   exposition text through `exposition`'s typed writer, in pieces that `segments` keeps from
//!   one snapshot to the next; `published` keeps the bytes (`gzip`) and the page (`view` ->
//!   `page`) that `server` answers HTTP with, never touching Redis.
//! - `refresh` runs that pipeline on a timer and on keyspace notifications; `config` and
//!   `webconfig` read the settings; `status` and `simulate` are the two subcommands.
//!
//! Only what the binary, the tests and the benchmark probe use is public. See ARCHITECTURE.md.

#![warn(unreachable_pub)]

mod apply;
mod build_info;
mod civil;
pub mod config;
mod exposition;
mod fetch;
mod gzip;
pub mod history;
pub mod listener;
pub mod logging;
mod page;
mod process;
mod proposal;
mod published;
pub mod refresh;
mod render;
pub mod secret;
mod segments;
pub mod server;
pub mod simulate;
mod snapshot;
pub mod source;
pub mod status;
pub mod streams;
mod thresholds;
mod values;
mod view;
pub mod webconfig;

pub use proposal::keys as proposal_keys;
/// The proposal field table, which the README's field table is checked against.
pub use proposal::{FIELDS as PROPOSAL_FIELDS, Field, FieldSpec, Read, Shown};

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod measure;

// Shared with the integration tests, where its items must be `pub`.
#[cfg(test)]
#[path = "../tests/common/exposition.rs"]
#[allow(unreachable_pub)]
mod exposition_check;
