//! Build information for `--version` and `quantum_harvest_exporter_build_info`: the git revision
//! and branch (`unknown` in a tarball without git), the build date (SOURCE_DATE_EPOCH when set,
//! for reproducible builds) and the compiler's version.

use std::process::Command;

fn main() {
    let output = |program: &str, args: &[&str]| -> Option<String> {
        let out = Command::new(program).args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
        (out.status.success() && !text.is_empty()).then_some(text)
    };
    let git = |args: &[&str]| output("git", args).unwrap_or_else(|| "unknown".to_owned());
    let revision = git(&["rev-parse", "--short=12", "HEAD"]);
    let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"]);
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = output(&rustc, &["--version"])
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());

    println!("cargo:rustc-env=HARVEST_REVISION={revision}");
    println!("cargo:rustc-env=HARVEST_BRANCH={branch}");
    println!(
        "cargo:rustc-env=HARVEST_BUILD_DATE={}Z",
        civil::format_utc(epoch)
    );
    println!("cargo:rustc-env=HARVEST_RUSTC_VERSION={rustc_version}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_owned());
    println!("cargo:rustc-env=HARVEST_TARGET={target}");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // The revision changes with HEAD and with the branch it points at.
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

// The crate's calendar arithmetic; the build script needs only its formatting.
#[path = "src/civil.rs"]
#[allow(dead_code)]
mod civil;
