//! harvest-exporter: exports a trading system's harvest proposals, kept as Redis hashes, as
//! Prometheus metrics. Data flows one way: `source` (Redis) -> `proposal` (typed values) ->
//! `snapshot` (one refresh's state) -> `render` (exposition bytes) -> `server` (HTTP);
//! `refresh` runs that pipeline on a timer, `config` and `webconfig` read the settings. The
//! operator's page and its JSON are another rendering of the same snapshot (`view` -> `page`),
//! which the `status` command also prints.

pub mod config;
pub mod page;
pub mod process;
pub mod proposal;
pub mod refresh;
pub mod render;
pub mod server;
pub mod simulate;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod view;
pub mod webconfig;
