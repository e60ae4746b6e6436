//! Man pages and shell completions, generated from the clap definition in
//! [`super::command`], so they list exactly the options the binary parses.
//!
//! `odoogate generate-manual` (hidden) writes them; `cargo xtask man` and
//! `cargo xtask deb` run it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap_complete::Shell;

/// Shells that get a completion script, with the file name each expects.
const COMPLETIONS: [(Shell, &str); 3] =
    [(Shell::Bash, "odoogate.bash"), (Shell::Zsh, "_odoogate"), (Shell::Fish, "odoogate.fish")];

#[derive(clap::Args, Debug)]
pub struct ManualArgs {
    /// Directory for the man pages (section 1).
    #[arg(long, default_value = "target/man")]
    pub man_dir: PathBuf,
    /// Directory for the bash, zsh and fish completion scripts.
    #[arg(long, default_value = "target/completions")]
    pub completions_dir: PathBuf,
}

/// A file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("failed to write {}: {source}", path.display())]
pub struct ManualError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

pub fn generate(args: &ManualArgs) -> anyhow::Result<ExitCode> {
    let mut written = write_man_pages(&args.man_dir)?;
    written.extend(write_completions(&args.completions_dir)?);
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `odoogate.1` and one `odoogate-SUBCOMMAND.1` per visible
/// subcommand into `dir`, and returns their paths.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>, ManualError> {
    let command = super::command();
    create_dir(dir)?;
    let mut written = vec![write_man_page(dir, "odoogate", command.clone())?];
    for subcommand in command.get_subcommands().filter(|subcommand| !subcommand.is_hide_set()) {
        let name = format!("odoogate-{}", subcommand.get_name());
        // The page's title is `odoogate-SUBCOMMAND`, its synopsis
        // `odoogate SUBCOMMAND`.
        let bin_name = format!("odoogate {}", subcommand.get_name());
        let subcommand = subcommand.clone().display_name(name.clone()).bin_name(bin_name);
        written.push(write_man_page(dir, &name, subcommand)?);
    }
    Ok(written)
}

/// Writes the bash, zsh and fish completion scripts into `dir`, and returns
/// their paths.
pub fn write_completions(dir: &Path) -> Result<Vec<PathBuf>, ManualError> {
    create_dir(dir)?;
    let mut written = Vec::new();
    for (shell, file_name) in COMPLETIONS {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut completed_command(), "odoogate", &mut script);
        let path = dir.join(file_name);
        fs::write(&path, script).map_err(|source| ManualError { path: path.clone(), source })?;
        written.push(path);
    }
    Ok(written)
}

/// Returns the command line without its hidden subcommands, which
/// clap_complete would otherwise offer.
fn completed_command() -> clap::Command {
    let command = super::command();
    let visible = command.get_subcommands().filter(|subcommand| !subcommand.is_hide_set()).cloned();
    clap::Command::new("odoogate")
        .version(env!("CARGO_PKG_VERSION"))
        .about(command.get_about().cloned().unwrap_or_default())
        .args(command.get_arguments().cloned())
        .subcommand_required(command.is_subcommand_required_set())
        .subcommands(visible)
}

fn write_man_page(dir: &Path, name: &str, command: clap::Command) -> Result<PathBuf, ManualError> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .map_err(|source| ManualError { path: path.clone(), source })?;
    fs::write(&path, page).map_err(|source| ManualError { path: path.clone(), source })?;
    Ok(path)
}

fn create_dir(dir: &Path) -> Result<(), ManualError> {
    fs::create_dir_all(dir).map_err(|source| ManualError { path: dir.to_owned(), source })
}
