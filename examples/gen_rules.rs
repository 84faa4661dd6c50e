//! Writes the kit's Prometheus rules, `alerts.yml` and `recording.yml`, from the settings in
//! `deploy/prometheus/config.yml` and, optionally, a file of overrides. Not part of the
//! shipped binary.
//!
//! Usage: cargo run --example gen_rules -- [--config OVERRIDES.yml] OUT_DIR

mod mixin;

use std::path::{Path, PathBuf};

/// The defaults, the kit's own settings.
const DEFAULTS: &str = include_str!("../deploy/prometheus/config.yml");

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (overrides, out) = match args.as_slice() {
        [flag, file, out] if flag == "--config" => (read(Path::new(file)), out),
        [out] => (String::new(), out),
        _ => fail("usage: gen_rules [--config OVERRIDES.yml] OUT_DIR"),
    };
    let config = mixin::Config::new(DEFAULTS, &overrides).unwrap_or_else(|e| fail(&e));
    let out = PathBuf::from(out);
    for (name, text) in [
        ("alerts.yml", config.alerts()),
        ("recording.yml", config.recording()),
    ] {
        let text = text.unwrap_or_else(|e| fail(&e));
        let path = out.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| fail(&format!("write {}: {e}", path.display())));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| fail(&format!("read {}: {e}", path.display())))
}

fn fail(message: &str) -> ! {
    eprintln!("gen_rules: {message}");
    std::process::exit(2);
}
