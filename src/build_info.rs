//! What this binary was built from, as `build.rs` recorded it: shown by `--version` and exported
//! as the labels of `quantum_harvest_exporter_build_info`.

pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");
pub(crate) const REVISION: &str = env!("HARVEST_REVISION");
pub(crate) const BRANCH: &str = env!("HARVEST_BRANCH");
pub(crate) const BUILD_DATE: &str = env!("HARVEST_BUILD_DATE");
pub(crate) const RUSTC_VERSION: &str = env!("HARVEST_RUSTC_VERSION");
pub(crate) const TARGET: &str = env!("HARVEST_TARGET");

/// `--version`'s text after the program name.
pub(crate) const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("HARVEST_REVISION"),
    ", branch ",
    env!("HARVEST_BRANCH"),
    ")\n  build date: ",
    env!("HARVEST_BUILD_DATE"),
    "\n  rustc: ",
    env!("HARVEST_RUSTC_VERSION"),
    "\n  target: ",
    env!("HARVEST_TARGET"),
);

/// The build_info labels, in Prometheus's order (`goversion` becomes `rustc_version`).
pub(crate) fn labels() -> [(&'static str, &'static str); 6] {
    [
        ("version", VERSION),
        ("revision", REVISION),
        ("branch", BRANCH),
        ("build_date", BUILD_DATE),
        ("rustc_version", RUSTC_VERSION),
        ("target", TARGET),
    ]
}
