//! Writes the man pages and shell completions the Debian packages install, generated from
//! the binaries' clap definitions: `cargo run --example package_assets -- DIR` fills
//! `DIR/man/` (one page per binary and one per subcommand, `invsite-serve.1`, uncompressed:
//! scripts/package.sh gzips them as Debian wants) and `DIR/completions/{bash,zsh,fish}/`.
//! scripts/package.sh runs it with `target/assets` before cargo-deb.

use std::fs;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| "target/assets".into());
    let commands = [
        invsync_site::cli::command(),
        invsync_agent::cli::command(),
        invsync_admin::invsync::command(),
        invsync_admin::setevnt::command(),
    ];
    for command in commands {
        write_man_pages(&out.join("man"), command.clone())?;
        write_completions(&out.join("completions"), command)?;
    }
    Ok(())
}

/// The binary's page and, for a binary with subcommands, a page per subcommand named the way
/// git names its pages (`invsite-serve(1)`), since the top page only lists them.
fn write_man_pages(dir: &Path, command: clap::Command) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    let name = command.get_name().to_string();
    let version = command.get_version().unwrap_or_default().to_string();
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        let sub_name = format!("{name}-{}", sub.get_name());
        let page = sub.clone().name(sub_name.clone()).version(version.clone());
        render(dir, &sub_name, page)?;
    }
    render(dir, &name, command)
}

fn render(dir: &Path, name: &str, command: clap::Command) -> anyhow::Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command).render(&mut page)?;
    fs::write(dir.join(format!("{name}.1")), page)?;
    Ok(())
}

/// One file per shell as clap_complete's `generate_to` names them (`NAME.bash`, `_NAME`,
/// `NAME.fish`); the packages install the bash one as plain `NAME`, the name bash-completion
/// loads on demand.
fn write_completions(dir: &Path, mut command: clap::Command) -> anyhow::Result<()> {
    let name = command.get_name().to_string();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let shell_dir = dir.join(shell.to_string());
        fs::create_dir_all(&shell_dir)?;
        clap_complete::generate_to(shell, &mut command, &name, &shell_dir)?;
    }
    Ok(())
}
