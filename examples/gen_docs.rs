//! Writes the man pages and the shell completions of `harvest-exporter`, made from the same
//! clap definition as `--help`, for the Debian package (scripts/package-deb). Not part of the
//! shipped binary.
//!
//! Usage: cargo run --example gen_docs -- OUT_DIR
//! Writes OUT_DIR/man/harvest-exporter.1, one page per subcommand (harvest-exporter-status.1,
//! harvest-exporter-simulate.1), and OUT_DIR/completions/harvest-exporter.bash,
//! _harvest-exporter (zsh) and harvest-exporter.fish.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;
use harvest_exporter::config::Cli;

const NAME: &str = "harvest-exporter";

/// Where the packaged service finds its settings, and where the documentation is.
const FILES: &str = r#".SH FILES
.TP
\fI/etc/quantum/harvest\-metrics\-exporter.env\fR
The settings of the quantum\-harvest\-metrics\-exporter service, as environment variables
(owner root, group harvest\-exporter, mode 0640).
.TP
\fI/lib/systemd/system/quantum\-harvest\-metrics\-exporter.service\fR
The systemd unit; local changes belong in a drop\-in
(\fBsystemctl edit quantum\-harvest\-metrics\-exporter\fR).
.TP
\fI/usr/share/doc/harvest\-exporter/\fR
The deployment guide (README.md), the exporter's README (exporter.md) and the alerts'
runbooks (runbooks/).
"#;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: gen_docs OUT_DIR");
        std::process::exit(2);
    };
    let out = PathBuf::from(out);
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;

    // The man pages leave out the generated `help` subcommand: it only repeats --help.
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();

    let page = clap_mangen::Man::new(command.clone());
    let mut file = create(&man.join(format!("{NAME}.1")))?;
    page.render_title(&mut file)?;
    page.render_name_section(&mut file)?;
    page.render_synopsis_section(&mut file)?;
    page.render_description_section(&mut file)?;
    page.render_options_section(&mut file)?;
    page.render_subcommands_section(&mut file)?;
    file.write_all(FILES.as_bytes())?;
    page.render_version_section(&mut file)?;
    file.flush()?;

    for sub in command.get_subcommands() {
        let name = sub
            .get_display_name()
            .map_or_else(|| format!("{NAME}-{}", sub.get_name()), str::to_owned);
        let mut file = create(&man.join(format!("{name}.1")))?;
        clap_mangen::Man::new(sub.clone()).render(&mut file)?;
        file.flush()?;
    }

    // The completions offer every subcommand the binary has, `help` included.
    let mut command = Cli::command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut command, NAME, &completions)?;
    }
    Ok(())
}

fn create(path: &Path) -> std::io::Result<BufWriter<File>> {
    Ok(BufWriter::new(File::create(path)?))
}
