//! harvest-exporter: exports a trading system's harvest proposals, kept as Redis hashes, as
//! Prometheus metrics. Data flows one way: `source` (Redis) -> `proposal` (typed values) ->
//! `snapshot` (one refresh's state) -> `render` (exposition bytes) -> `server` (HTTP);
//! `refresh` runs that pipeline on a timer, `config` and `webconfig` read the settings.

pub mod config;
pub mod process;
pub mod proposal;
pub mod refresh;
pub mod render;
pub mod server;
pub mod simulate;
pub mod snapshot;
pub mod source;
pub mod webconfig;
