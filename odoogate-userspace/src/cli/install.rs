//! `odoogate install`: sets up a host without the Debian package.
//!
//! Writes the systemd unit (with `ExecStart=` pointing at this binary), a
//! default observe-mode configuration unless one exists, and the state
//! directory (mode 0700), all under `--prefix` (default `/`). It prints
//! each path it wrote or kept, and never overwrites a configuration.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The packaged unit, with `ExecStart=` naming `/usr/bin/odoogate`.
pub const UNIT: &str = include_str!("../../../packaging/odoogate.service");
/// The packaged default configuration (observe mode).
pub const DEFAULT_CONFIG_TEXT: &str = include_str!("../../../packaging/odoogate.toml");
/// Binary path the packaged unit names, replaced by the installed binary.
const PACKAGED_BINARY: &str = "/usr/bin/odoogate";

#[derive(clap::Args, Debug)]
pub struct InstallArgs {
    /// Root directory to install under (for images and tests).
    #[arg(long, default_value = "/")]
    pub prefix: PathBuf,
    /// Binary that the unit runs; defaults to this executable.
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

/// An installation step that failed, with the path involved.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {}: {source}", path.display())]
pub struct InstallError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// The result of installing one path.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Wrote(PathBuf),
    Kept(PathBuf),
}

pub fn install(args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let binary = match &args.binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe()?,
    };
    for outcome in install_into(&args.prefix, &binary)? {
        match outcome {
            Outcome::Wrote(path) => println!("wrote {}", path.display()),
            Outcome::Kept(path) => println!("kept {} (it exists)", path.display()),
        }
    }
    println!("next: edit the configuration, then `systemctl daemon-reload && systemctl enable --now odoogate`");
    Ok(ExitCode::SUCCESS)
}

/// Installs the unit, the configuration and the state directory under
/// `prefix`, with the unit running `binary`.
pub fn install_into(prefix: &Path, binary: &Path) -> Result<Vec<Outcome>, InstallError> {
    let unit_path = prefix.join("etc/systemd/system/odoogate.service");
    let config_path = prefix.join("etc/odoogate/odoogate.toml");
    let state_dir = prefix.join("var/lib/odoogate");

    let unit = UNIT.replace(PACKAGED_BINARY, &binary.display().to_string());
    let mut outcomes = vec![write_file(&unit_path, &unit, 0o644, true)?];
    outcomes.push(write_file(&config_path, DEFAULT_CONFIG_TEXT, 0o640, false)?);
    outcomes.push(create_state_dir(&state_dir)?);
    Ok(outcomes)
}

/// Writes `text` to `path` with `mode`. Without `replace`, an existing file
/// is kept untouched (`create_new`, so no race with another writer).
fn write_file(path: &Path, text: &str, mode: u32, replace: bool) -> Result<Outcome, InstallError> {
    let error = |action, source| InstallError { action, path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| error("create the directory of", source))?;
    }
    let mut options = OpenOptions::new();
    options.write(true).mode(mode);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(source) if !replace && source.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(Outcome::Kept(path.to_owned()));
        }
        Err(source) => return Err(error("open", source)),
    };
    file.write_all(text.as_bytes()).map_err(|source| error("write", source))?;
    // `mode` is filtered by the umask at creation; set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| error("set the mode of", source))?;
    Ok(Outcome::Wrote(path.to_owned()))
}

fn create_state_dir(path: &Path) -> Result<Outcome, InstallError> {
    let error = |action, source| InstallError { action, path: path.to_owned(), source };
    let existed = path.is_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| error("create", source))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|source| error("set the mode of", source))?;
    Ok(if existed { Outcome::Kept(path.to_owned()) } else { Outcome::Wrote(path.to_owned()) })
}
