//! Glob patterns for model names, method names and cgroup paths.
//!
//! Two flavours share one syntax, `*` and `?`:
//!
//! - A *name* glob ([`Glob::name`]) matches a model or method name. `*`
//!   matches any run of characters (dots included, so `sale.*` matches
//!   `sale.order.line`) and `?` matches one character. Only the characters
//!   Odoo uses in model and method names are accepted (ASCII letters,
//!   digits, `_` and `.`), so a typo such as `crm lead` is an error at load
//!   time instead of a rule that never matches.
//! - A *path* glob ([`Glob::path`]) matches a cgroup path relative to the
//!   cgroup v2 mount. `*` and `?` stay inside one `/`-separated segment,
//!   and a whole segment `**` matches any number of segments, none included.
//!   A leading `/` is ignored on both the pattern and the path.
//!
//! `[`, `]`, `{`, `}` and `\` are reserved for later syntax (character
//! classes, alternatives, escapes) and are rejected today, so adding them
//! cannot change what an existing configuration matches.
//!
//! Patterns are compiled once when the configuration loads; matching
//! allocates nothing.

use std::fmt;

/// Characters reserved for later glob syntax.
const RESERVED: &[char] = &['[', ']', '{', '}', '\\'];

/// An error in a glob pattern.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("empty pattern")]
    Empty,
    #[error("{ch:?} at position {position} is reserved glob syntax; only `*` and `?` are supported")]
    Reserved { ch: char, position: usize },
    #[error(
        "{ch:?} at position {position} cannot occur in an Odoo model or method name; \
         expected ASCII letters, digits, `_`, `.`, `*` or `?`"
    )]
    NotAName { ch: char, position: usize },
    #[error("control character at position {position}")]
    Control { position: usize },
    #[error("`**` must be a whole path segment, as in `system.slice/**`")]
    DoubleStarInSegment,
    #[error("empty path segment (two `/` in a row or a trailing `/`)")]
    EmptySegment,
}

/// A compiled glob pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as written, for messages.
    pattern: String,
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A name glob: the pattern bytes, `*` crossing everything.
    Name(String),
    /// A path glob, one entry per `/`-separated segment.
    Path(Vec<Segment>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    /// `**`: zero or more whole segments.
    AnyDepth,
    /// A segment pattern with `*` and `?` that stay inside the segment.
    Wildcard(String),
}

// === impl Glob ===

impl Glob {
    /// Compiles a model or method name glob.
    pub fn name(pattern: &str) -> Result<Self, GlobError> {
        if pattern.is_empty() {
            return Err(GlobError::Empty);
        }
        for (position, ch) in pattern.chars().enumerate() {
            if RESERVED.contains(&ch) {
                return Err(GlobError::Reserved { ch, position });
            }
            if !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '*' | '?')) {
                return Err(GlobError::NotAName { ch, position });
            }
        }

        Ok(Self { pattern: pattern.to_owned(), kind: Kind::Name(pattern.to_owned()) })
    }

    /// Compiles a cgroup path glob such as `system.slice/*.service`.
    pub fn path(pattern: &str) -> Result<Self, GlobError> {
        let trimmed = pattern.strip_prefix('/').unwrap_or(pattern);
        if trimmed.is_empty() {
            return Err(GlobError::Empty);
        }
        for (position, ch) in pattern.chars().enumerate() {
            if RESERVED.contains(&ch) {
                return Err(GlobError::Reserved { ch, position });
            }
            if ch.is_control() {
                return Err(GlobError::Control { position });
            }
        }

        let segments = trimmed.split('/').map(compile_segment).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { pattern: pattern.to_owned(), kind: Kind::Path(segments) })
    }

    /// Tells whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        match &self.kind {
            Kind::Name(pattern) => wildcard_match(pattern.as_bytes(), text),
            Kind::Path(segments) => {
                let text = text.strip_prefix('/').unwrap_or(text);
                let parts: Vec<&str> = text.split('/').collect();
                path_match(segments, &parts)
            }
        }
    }

    /// Returns the pattern as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Returns the pattern when it has no wildcard, so it names exactly one
    /// value.
    pub fn literal(&self) -> Option<&str> {
        (!self.pattern.contains(['*', '?'])).then_some(self.pattern.as_str())
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

fn compile_segment(segment: &str) -> Result<Segment, GlobError> {
    if segment.is_empty() {
        return Err(GlobError::EmptySegment);
    }
    if segment == "**" {
        return Ok(Segment::AnyDepth);
    }
    if segment.contains("**") {
        return Err(GlobError::DoubleStarInSegment);
    }
    Ok(Segment::Wildcard(segment.to_owned()))
}

/// Matches path segments against segment patterns, `**` taking any number
/// of whole segments.
///
/// Dynamic programming over (pattern, path) positions keeps the cost at
/// O(patterns × parts) whatever the number of `**`.
fn path_match(segments: &[Segment], parts: &[&str]) -> bool {
    // reachable[j]: the patterns consumed so far can match exactly parts[..j].
    let mut reachable = vec![false; parts.len() + 1];
    reachable[0] = true;

    for segment in segments {
        let mut next = vec![false; parts.len() + 1];
        for j in 0..=parts.len() {
            if !reachable[j] {
                continue;
            }
            match segment {
                Segment::AnyDepth => next[j..].iter_mut().for_each(|cell| *cell = true),
                Segment::Wildcard(pattern) => {
                    if j < parts.len() && wildcard_match(pattern.as_bytes(), parts[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        reachable = next;
    }

    reachable[parts.len()]
}

/// Matches `text` against a pattern where `*` is any run of characters and
/// `?` one character.
///
/// The classic linear scan that remembers the last `*` and retries from one
/// character further on a mismatch; worst case O(pattern × text). Literal
/// pattern bytes compare against text bytes, which is sound for UTF-8
/// because every retry starts on a character boundary.
fn wildcard_match(pattern: &[u8], text: &str) -> bool {
    let bytes = text.as_bytes();
    let (mut p, mut t) = (0, 0);
    // (index of the last `*` in pattern, text position it currently covers up to)
    let mut star: Option<(usize, usize)> = None;

    while t < bytes.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(b'?') => {
                p += 1;
                t += char_len_at(text, t);
            }
            Some(&byte) if byte == bytes[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    let retry = star_t + char_len_at(text, star_t);
                    star = Some((star_p, retry));
                    p = star_p + 1;
                    t = retry;
                }
                None => return false,
            },
        }
    }

    pattern[p..].iter().all(|&b| b == b'*')
}

/// Returns the UTF-8 length of the character starting at byte `at`.
fn char_len_at(text: &str, at: usize) -> usize {
    text[at..].chars().next().map_or(1, char::len_utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(pattern: &str) -> Glob {
        Glob::name(pattern).expect("valid name glob")
    }

    fn path(pattern: &str) -> Glob {
        Glob::path(pattern).expect("valid path glob")
    }

    #[test]
    fn name_literal_matches_itself_only() {
        let glob = name("crm.lead");
        assert!(glob.matches("crm.lead"));
        assert!(!glob.matches("crm.lead.tag"));
        assert!(!glob.matches("crm.lea"));
        assert_eq!(glob.literal(), Some("crm.lead"));
    }

    #[test]
    fn name_star_crosses_dots() {
        let glob = name("sale.*");
        assert!(glob.matches("sale.order"));
        assert!(glob.matches("sale.order.line"));
        assert!(glob.matches("sale."));
        assert!(!glob.matches("sale"));
        assert_eq!(glob.literal(), None);
    }

    #[test]
    fn name_star_backtracks() {
        let glob = name("*_read*");
        assert!(glob.matches("search_read"));
        assert!(glob.matches("web_search_read_group"));
        assert!(!glob.matches("search"));
        assert!(name("a*b*c").matches("axxbyybzc"));
        assert!(!name("a*b*c").matches("axxbyyb"));
    }

    #[test]
    fn name_question_mark_is_one_char() {
        let glob = name("res.?artner");
        assert!(glob.matches("res.partner"));
        assert!(!glob.matches("res.artner"));
        assert!(!glob.matches("res.ppartner"));
    }

    #[test]
    fn name_rejects_bad_syntax() {
        assert_eq!(Glob::name(""), Err(GlobError::Empty));
        assert_eq!(Glob::name("crm[ab]"), Err(GlobError::Reserved { ch: '[', position: 3 }));
        assert_eq!(Glob::name("crm lead"), Err(GlobError::NotAName { ch: ' ', position: 3 }));
        assert_eq!(Glob::name("crm/lead"), Err(GlobError::NotAName { ch: '/', position: 3 }));
    }

    #[test]
    fn path_star_stays_in_segment() {
        let glob = path("system.slice/*.service");
        assert!(glob.matches("system.slice/n8n.service"));
        assert!(glob.matches("/system.slice/n8n.service"));
        assert!(!glob.matches("system.slice/a/n8n.service"));
        assert!(!glob.matches("user.slice/n8n.service"));
    }

    #[test]
    fn path_double_star_spans_depths() {
        let glob = path("/system.slice/**");
        assert!(glob.matches("system.slice"));
        assert!(glob.matches("system.slice/n8n.service"));
        assert!(glob.matches("system.slice/a/b/c.scope"));
        assert!(!glob.matches("user.slice/a"));

        let middle = path("user.slice/**/app.scope");
        assert!(middle.matches("user.slice/app.scope"));
        assert!(middle.matches("user.slice/user-1000.slice/session-2.scope/app.scope"));
        assert!(!middle.matches("user.slice/user-1000.slice/other.scope"));

        assert!(path("**").matches("anything/at/all"));
    }

    #[test]
    fn path_question_mark_takes_one_utf8_char() {
        let glob = path("app-?.scope");
        assert!(glob.matches("app-é.scope"));
        assert!(!glob.matches("app-éé.scope"));
    }

    #[test]
    fn path_rejects_bad_syntax() {
        assert_eq!(Glob::path("/"), Err(GlobError::Empty));
        assert_eq!(Glob::path("a/**b"), Err(GlobError::DoubleStarInSegment));
        assert_eq!(Glob::path("a//b"), Err(GlobError::EmptySegment));
        assert_eq!(Glob::path("a/"), Err(GlobError::EmptySegment));
        assert_eq!(Glob::path("a/{b,c}"), Err(GlobError::Reserved { ch: '{', position: 2 }));
        assert_eq!(Glob::path("a\nb"), Err(GlobError::Control { position: 1 }));
    }
}
