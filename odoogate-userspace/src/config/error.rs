//! Configuration errors and how they find their line, column and key path.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// An error from loading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read the configuration {}: {source}{}", path.display(), read_hint(path, source))]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the configuration {} is larger than {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{0}")]
    Invalid(Box<InvalidConfig>),
}

/// Returns the next step for a default configuration file that does not
/// exist, else nothing.
fn read_hint(path: &Path, error: &io::Error) -> &'static str {
    if error.kind() == io::ErrorKind::NotFound && path == Path::new(crate::cli::DEFAULT_CONFIG) {
        "; pass --config FILE, or write the default configuration there with `odoogate install` (see docs/getting-started.md)"
    } else {
        ""
    }
}

/// A configuration that was read but is wrong, with where and why.
///
/// Displays as `FILE:LINE:COLUMN: KEY: MESSAGE`, the form editors and
/// terminals turn into a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidConfig {
    /// The file name, or what the text came from.
    pub origin: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The key path, such as `integration[2].match.ip[0]`; empty when the
    /// error is about the document as a whole.
    pub key: String,
    /// The expected and the found value, in words.
    pub message: String,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { origin, line, column, key, message } = self;
        write!(f, "{origin}:{line}:{column}: ")?;
        if !key.is_empty() {
            write!(f, "{key}: ")?;
        }
        f.write_str(message)
    }
}

/// An error found in the text, before it is given a line and a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Problem {
    /// Byte range in the text.
    pub span: Range<usize>,
    pub message: String,
}

impl Problem {
    pub fn new(span: Range<usize>, message: impl Into<String>) -> Self {
        Self { span, message: message.into() }
    }

    /// Converts a problem into a located error for the text it came from.
    pub fn locate(self, text: &str, origin: &str) -> ConfigError {
        let offset = self.span.start.min(text.len());
        let (line, column) = line_and_column(text, offset);
        // toml reports a field missing from the document itself, such as
        // `[odoo]`, at the empty span 0..0: that is about no table, not
        // about the one that happens to come first.
        let whole_document = self.span == (0..0);
        let key = if whole_document { String::new() } else { key_path_at(text, offset) };
        let message = with_layout_hint(&key, plain_types(self.message));
        ConfigError::Invalid(Box::new(InvalidConfig { origin: origin.to_owned(), line, column, key, message }))
    }
}

/// Adds the fix to toml's message for a required table that is missing or
/// for `[integration]` written with single brackets. toml then reports a
/// map where the integration list belongs, or a duplicate key for a second
/// `[integration]`.
fn with_layout_hint(key: &str, message: String) -> String {
    let hint = match (key, message.as_str()) {
        ("integration", "duplicate key") => "write each integration as `[[integration]]`, with double brackets",
        ("integration", message) if message.starts_with("invalid type: map") => {
            "write each integration as `[[integration]]`, with double brackets"
        }
        ("", "missing field `odoo`") => {
            "add an [odoo] table with `ports` (Odoo's HTTP ports, such as [8069]) and `interfaces` (such as [\"lo\"])"
        }
        ("", "missing field `policy`") => {
            "add a [policy] table with `mode` (\"observe\" or \"enforce\") and `unidentified` (\"allow\" or \"deny\")"
        }
        _ => return message,
    };
    format!("{message}; {hint}")
}

/// Replaces the Rust type names in serde's messages, such as `expected
/// usize` or `expected struct RawOdoo`, with words for the TOML value.
fn plain_types(message: String) -> String {
    const NAMES: [(&str, &str); 7] = [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
    ];
    // Only serde's own words at the end name a struct: the same words
    // earlier are the user's, inside a quoted value.
    if let Some(at) = message.rfind("expected struct ") {
        let name = &message[at + "expected struct ".len()..];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return format!("{}expected a table", &message[..at]);
        }
    }
    match NAMES.iter().find(|(rust, _)| message.ends_with(rust)) {
        Some((rust, plain)) => format!("{}{plain}", &message[..message.len() - rust.len()]),
        None => message,
    }
}

impl From<toml::de::Error> for Problem {
    fn from(error: toml::de::Error) -> Self {
        Self::new(error.span().unwrap_or(0..0), error.message().to_owned())
    }
}

/// Returns the 1-based line and character column of a byte offset.
pub(super) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset;
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Returns the key path of the smallest key or value that contains `offset`.
///
/// Serde errors from toml carry a span but not the path, and semantic checks
/// keep only spans, so the path is recovered from the parsed document. A
/// document with a syntax error is parsed with toml's recovery, which still
/// yields the keys before the error.
fn key_path_at(text: &str, offset: usize) -> String {
    let (root, _errors) = DeTable::parse_recoverable(text);
    let root = Spanned::new(root.span(), DeValue::Table(root.into_inner()));

    let mut best: Option<(usize, String)> = None;
    visit(&root, &mut String::new(), offset, &mut best);
    best.map(|(_, path)| path).unwrap_or_default()
}

/// Walks every key and value, keeping the path of the narrowest span that
/// contains `offset`. Table spans in toml cover only their header, so the
/// walk visits every node instead of descending by containment.
fn visit(value: &Spanned<DeValue<'_>>, path: &mut String, offset: usize, best: &mut Option<(usize, String)>) {
    consider(value.span(), path, offset, best);

    match value.get_ref() {
        DeValue::Table(table) => {
            for (key, child) in table.iter() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key.get_ref());
                consider(key.span(), path, offset, best);
                visit(child, path, offset, best);
                path.truncate(len);
            }
        }
        DeValue::Array(array) => {
            for (index, child) in array.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                visit(child, path, offset, best);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn consider(span: Range<usize>, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
    let contains = span.start <= offset && (offset < span.end || span.is_empty() && offset == span.start);
    if !contains || path.is_empty() {
        return;
    }
    let width = span.len();
    // On a tie the later, deeper node wins: `[[integration]]` is the span
    // of both the array and its element.
    if best.as_ref().is_none_or(|(best_width, _)| width <= *best_width) {
        *best = Some((width, path.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        // The `=` after "bé " sits after a two-byte character.
        assert_eq!(line_and_column(text, 10), (2, 4));
    }

    #[test]
    fn key_path_names_array_elements() {
        let text = "[odoo]\nports = [1, 2]\n\n[[integration]]\nname = \"a\"\n[[integration]]\nname = \"b\"\n";
        let second_port = text.find("2]").unwrap();
        assert_eq!(key_path_at(text, second_port), "odoo.ports[1]");
        let second_name = text.find("\"b\"").unwrap();
        assert_eq!(key_path_at(text, second_name), "integration[1].name");
    }

    #[test]
    fn missing_default_file_names_next_step() {
        let missing = || io::Error::from(io::ErrorKind::NotFound);
        let error = ConfigError::Read { path: crate::cli::DEFAULT_CONFIG.into(), source: missing() };
        assert!(error.to_string().contains("pass --config FILE"), "{error}");
        assert!(error.to_string().contains("odoogate install"), "{error}");

        let error = ConfigError::Read { path: "gate.toml".into(), source: missing() };
        assert!(!error.to_string().contains("odoogate install"), "{error}");
    }

    #[test]
    fn plain_types_name_range_of_u32() {
        let message = plain_types("invalid value: integer `70000000000`, expected u32".to_owned());
        assert_eq!(message, "invalid value: integer `70000000000`, expected a whole number from 0 to 4294967295");
    }

    #[test]
    fn plain_types_leave_quoted_values() {
        let message = "unknown variant `expected struct X`, expected `file` or `journald`";
        assert_eq!(plain_types(message.to_owned()), message);
        let table = plain_types("invalid type: integer `5`, expected struct RawMatch".to_owned());
        assert_eq!(table, "invalid type: integer `5`, expected a table");
    }

    #[test]
    fn display_has_file_line_column_key() {
        let error = Problem::new(7..12, "expected X, found Y").locate("[odoo]\nports = 0\n", "gate.toml");
        assert_eq!(error.to_string(), "gate.toml:2:1: odoo.ports: expected X, found Y");
    }
}
