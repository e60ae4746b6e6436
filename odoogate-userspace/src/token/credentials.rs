//! Service credentials: the real Odoo API key (or password) of the shared
//! integration user, which odoogate forwards in place of a scoped token.
//!
//! They live outside the main configuration, in a TOML file that only
//! odoogate can read:
//!
//! ```toml
//! default = "<API key of the shared user>"
//!
//! [integration.import-script]
//! credential = "<API key of another Odoo user, for this integration only>"
//! ```
//!
//! The file is `[tokens] credentials_file` (mode 0600 or 0400, owned by
//! root, the `odoogate` user or the user running odoogate), or else the systemd credential
//! `$CREDENTIALS_DIRECTORY/odoogate-credentials` (`LoadCredential=` in the
//! unit). Values are [`Secret`]s and no error message repeats them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::format;
use crate::config::Config;
use crate::secret::Secret;

/// Name of the systemd credential read when no file is configured.
pub const SYSTEMD_CREDENTIAL: &str = "odoogate-credentials";

/// Largest credentials file read.
const MAX_CREDENTIALS_BYTES: u64 = 64 * 1024;

/// An error from loading service credentials. None carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no service credential: set [tokens] credentials_file, or pass the systemd credential \
         {SYSTEMD_CREDENTIAL} with LoadCredential="
    )]
    NotConfigured,
    #[error("failed to read the credentials file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the credentials file {} is larger than {MAX_CREDENTIALS_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error(
        "the credentials file {} has mode {mode:04o}; it must be 0600 or 0400 (run `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "the credentials file {} is owned by uid {uid}; it must be owned by root, the odoogate user or the user running odoogate",
        path.display()
    )]
    Owner { path: PathBuf, uid: u32 },
    /// A syntax or shape error, by line and column only, since the line
    /// itself may hold a credential.
    #[error("the credentials file {} is invalid at line {line}, column {column}: {message}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
    #[error("the credentials file {} has an empty credential for {what}", path.display())]
    Empty { path: PathBuf, what: String },
    #[error(
        "the credentials file {} holds an odoogate token for {what}; it needs the real Odoo API key or password",
        path.display()
    )]
    TokenAsCredential { path: PathBuf, what: String },
    #[error("the credentials file {} names integration {name:?}, which the configuration does not define", path.display())]
    UnknownIntegration { path: PathBuf, name: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    default: String,
    #[serde(default)]
    integration: HashMap<String, RawOverride>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    credential: String,
}

/// The service credential, with optional per-integration overrides.
#[derive(Clone, Debug)]
pub struct ServiceCredentials {
    default: Secret,
    overrides: HashMap<String, Secret>,
}

impl ServiceCredentials {
    /// Loads the credentials that `config` points to, checking that each
    /// override names a configured integration.
    pub fn load(config: &Config) -> Result<ServiceCredentials, CredentialsError> {
        let path = match &config.tokens.credentials_file {
            Some(path) => path.clone(),
            None => systemd_credential_path().ok_or(CredentialsError::NotConfigured)?,
        };
        let credentials = Self::from_file(&path)?;
        if let Some(name) = credentials.overrides.keys().find(|name| config.integration(name).is_none()) {
            return Err(CredentialsError::UnknownIntegration { path, name: name.clone() });
        }
        Ok(credentials)
    }

    /// Loads the credentials as scoped tokens need them. Tokens are on when
    /// a credential is configured or the token store exists, and `Ok(None)`
    /// means they are off: neither is there.
    pub fn load_for_tokens(config: &Config) -> Result<Option<ServiceCredentials>, CredentialsError> {
        match Self::load(config) {
            Err(CredentialsError::NotConfigured) if !config.tokens.store.exists() => Ok(None),
            result => result.map(Some),
        }
    }

    /// Reads a credentials file after checking its mode and owner.
    pub fn from_file(path: &Path) -> Result<ServiceCredentials, CredentialsError> {
        let read_error = |source| CredentialsError::Read { path: path.to_owned(), source };
        let file = File::open(path).map_err(read_error)?;
        check_permissions(path, &file.metadata().map_err(read_error)?)?;

        let mut text = String::new();
        file.take(MAX_CREDENTIALS_BYTES + 1).read_to_string(&mut text).map_err(read_error)?;
        if text.len() as u64 > MAX_CREDENTIALS_BYTES {
            return Err(CredentialsError::TooLarge { path: path.to_owned() });
        }
        Self::parse(&text, path)
    }

    /// Parses the TOML text of a credentials file; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<ServiceCredentials, CredentialsError> {
        let raw: RawCredentials = toml::from_str(text).map_err(|error| invalid(text, path, &error))?;
        let default = checked(path, "default", raw.default)?;
        let overrides = raw
            .integration
            .into_iter()
            .map(|(name, entry)| {
                let secret = checked(path, &format!("integration.{name}"), entry.credential)?;
                Ok((name, secret))
            })
            .collect::<Result<_, CredentialsError>>()?;
        Ok(ServiceCredentials { default, overrides })
    }

    /// Returns the credential to forward for integration `name`: its
    /// override, or else the default.
    ///
    /// NOTE: it returns `Option` for the interface the proxy uses, but a
    /// loaded value always has a default, so the result is never `None`.
    pub fn for_integration(&self, name: &str) -> Option<&Secret> {
        Some(self.overrides.get(name).unwrap_or(&self.default))
    }
}

fn systemd_credential_path() -> Option<PathBuf> {
    let directory = std::env::var_os("CREDENTIALS_DIRECTORY")?;
    let path = Path::new(&directory).join(SYSTEMD_CREDENTIAL);
    path.exists().then_some(path)
}

/// Accepts mode 0600 or 0400, owned by root, by the `odoogate` user, or by
/// the user running this process.
fn check_permissions(path: &Path, metadata: &std::fs::Metadata) -> Result<(), CredentialsError> {
    let mode = metadata.mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        return Err(CredentialsError::Permissions { path: path.to_owned(), mode });
    }
    let uid = metadata.uid();
    let odoogate_uid = nix::unistd::User::from_name("odoogate").ok().flatten().map(|user| user.uid.as_raw());
    if uid != 0 && uid != nix::unistd::geteuid().as_raw() && Some(uid) != odoogate_uid {
        return Err(CredentialsError::Owner { path: path.to_owned(), uid });
    }
    Ok(())
}

fn checked(path: &Path, what: &str, value: String) -> Result<Secret, CredentialsError> {
    if value.trim().is_empty() {
        return Err(CredentialsError::Empty { path: path.to_owned(), what: what.to_owned() });
    }
    if format::has_prefix(&value) {
        return Err(CredentialsError::TokenAsCredential { path: path.to_owned(), what: what.to_owned() });
    }
    Ok(Secret::new(value))
}

/// Builds an error from the TOML parser's message and position, without the
/// source excerpt its `Display` would print.
fn invalid(text: &str, path: &Path, error: &toml::de::Error) -> CredentialsError {
    let offset = error.span().map_or(0, |span| span.start.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |line| line.chars().count()) + 1;
    CredentialsError::Invalid { path: path.to_owned(), line, column, message: without_value(error.message()) }
}

/// Removes the value that serde quotes in a type or value error, such as
/// `invalid type: string "…", expected struct RawOverride`, since that
/// value may be a credential written in the wrong place. Keeps its kind
/// and what was expected, naming a struct as the TOML table it reads.
fn without_value(message: &str) -> String {
    let Some((prefix, rest)) =
        ["invalid type: ", "invalid value: "].into_iter().find_map(|prefix| Some((prefix, message.strip_prefix(prefix)?)))
    else {
        return message.to_owned();
    };
    // The value comes first and may itself contain ", expected ".
    let Some(at) = rest.rfind(", expected ") else {
        return format!("{prefix}value not shown");
    };
    let kind = rest[..at].split(['`', '"']).next().unwrap_or_default().trim();
    let expected = &rest[at + ", expected ".len()..];
    let expected = if expected.starts_with("struct ") { "a table" } else { expected };
    format!("{prefix}{kind}, expected {expected}")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef01234567";

    fn parse(text: &str) -> Result<ServiceCredentials, CredentialsError> {
        ServiceCredentials::parse(text, Path::new("/etc/odoogate/credentials.toml"))
    }

    #[test]
    fn default_and_override_are_read() {
        let text = format!("default = \"{KEY}\"\n[integration.import]\ncredential = \"other-secret\"\n");
        let credentials = parse(&text).unwrap();
        assert_eq!(credentials.for_integration("n8n").map(Secret::expose), Some(KEY));
        assert_eq!(credentials.for_integration("import").map(Secret::expose), Some("other-secret"));
    }

    #[test]
    fn missing_default_is_rejected() {
        let error = parse("[integration.import]\ncredential = \"x\"\n").unwrap_err();
        assert!(matches!(error, CredentialsError::Invalid { .. }), "{error}");
    }

    #[test]
    fn syntax_error_does_not_echo_value() {
        let error = parse(&format!("default = \"{KEY}\nother = 1\n")).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, CredentialsError::Invalid { line: 1, .. }), "{message}");
        assert!(!message.contains(KEY), "{message}");
    }

    #[test]
    fn type_error_does_not_echo_value() {
        let cases = [
            ("default = \"x\"\n[integration]\nerp = \"S3CRET, expected\"\n", "invalid type: string, expected a table"),
            ("default = \"x\"\nintegration = \"S3CRET\"\n", "invalid type: string, expected a map"),
            ("default = 12345678\n", "invalid type: integer, expected a string"),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(!message.contains("S3CRET"), "{message}");
            assert!(!message.contains("12345678"), "{message}");
            assert!(message.ends_with(expected), "{message}");
        }
    }

    #[test]
    fn unknown_key_is_rejected_without_value() {
        let error = parse(&format!("default = \"{KEY}\"\npassword = \"{KEY}\"\n")).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, CredentialsError::Invalid { line: 2, .. }), "{message}");
        assert!(!message.contains(KEY), "{message}");
    }

    #[test]
    fn empty_and_token_credentials_are_rejected() {
        assert!(matches!(parse("default = \" \"\n"), Err(CredentialsError::Empty { .. })));
        let token = format::generate().unwrap();
        let text = format!("default = \"{}\"\n", token.expose());
        assert!(matches!(parse(&text), Err(CredentialsError::TokenAsCredential { .. })));
    }

    #[test]
    fn readable_file_is_rejected() {
        let path = std::env::temp_dir().join(format!("odoogate-credentials-{}.toml", std::process::id()));
        std::fs::write(&path, format!("default = \"{KEY}\"\n")).unwrap();

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = ServiceCredentials::from_file(&path).unwrap_err();
        assert!(matches!(error, CredentialsError::Permissions { mode: 0o644, .. }), "{error}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let credentials = ServiceCredentials::from_file(&path).unwrap();
        assert_eq!(credentials.for_integration("any").map(Secret::expose), Some(KEY));
        std::fs::remove_file(&path).unwrap();
    }
}
