//! A tokenizer for the subset of XML that XML-RPC clients write, feeding
//! the same [`Unmarshaller`] as quick-xml with the same events, and
//! borrowing text from the body.
//!
//! The subset: an optional `<?xml version="1.0"?>` declaration at the very
//! start, with or without `encoding="utf-8"` (single or double quotes, any
//! case of `utf-8`). Then one root element of start, end and empty tags
//! whose names are ASCII XML names without attributes, text, and the
//! predefined entities, character references and CDATA sections (which the
//! npm `xmlrpc` client writes). Whitespace is space, tab and line feed.
//!
//! Anything else is deferred, never guessed: comments, processing
//! instructions, a DOCTYPE, attributes, carriage returns (which
//! XML normalizes), non-ASCII names, control characters, U+FFFE and U+FFFF,
//! `]]>` in text, mismatched or unclosed tags, and anything but whitespace
//! outside the root element. The caller then reads the whole body with
//! quick-xml, which returns today's document or error. Inside the subset
//! the scanner emits the events quick-xml emits, so an error the
//! unmarshaller raises on them is the error quick-xml's run would return.
//! The one exception is plain text directly before a start tag. The scanner
//! drops it, because the start tag clears the unmarshaller's text before
//! any end tag reads it, and no error depends on it.

use std::borrow::Cow;

use super::{DecodeError, Document, Tag, Unmarshaller, is_xml_char};

/// The scanner's result when the body raised no error.
pub(super) enum Scanned<'a> {
    /// The unmarshaller's document, read to its end or to the `<params>`
    /// start tag where it stops.
    Done(Document<'a>),
    /// The body is outside the scanner's subset of XML.
    Deferred,
}

/// The marker of a body outside the scanner's subset. It carries no
/// detail, because the caller reads the body again with quick-xml, which
/// names the problem.
struct Defer;

/// Feeds `body` to `unmarshaller`. Errors are the unmarshaller's own, on
/// events that quick-xml emits in the same order.
pub(super) fn unmarshal<'a>(unmarshaller: Unmarshaller<'a>, body: &'a str) -> Result<Scanned<'a>, DecodeError> {
    let mut scanner = Scanner {
        body,
        bytes: body.as_bytes(),
        position: 0,
        open: Vec::with_capacity(OPEN_CAPACITY),
        unmarshaller,
        encoded_reference: [0; 4],
    };
    match scanner.run() {
        Ok(Flow::Finished) => scanner.unmarshaller.finish().map(Scanned::Done),
        Ok(Flow::StoppedAtParams) => Ok(Scanned::Done(scanner.unmarshaller.stopped_at_params())),
        Err(Step::Invalid(error)) => Err(error),
        Err(Step::Defer(Defer)) => Ok(Scanned::Deferred),
    }
}

/// Initial capacity of the open element stack. The ids of an x2many
/// command in an `execute_kw` `create` call sit 23 elements deep.
const OPEN_CAPACITY: usize = 32;

/// The end of a scan without an error or a deferral.
enum Flow {
    /// The root element closed, and only whitespace follows it.
    Finished,
    /// The unmarshaller stopped at the `<params>` start tag.
    StoppedAtParams,
}

/// The reason a scan step stopped: an error, or a deferral to quick-xml.
enum Step {
    Invalid(DecodeError),
    Defer(Defer),
}

impl From<DecodeError> for Step {
    fn from(error: DecodeError) -> Self {
        Self::Invalid(error)
    }
}

impl From<Defer> for Step {
    fn from(defer: Defer) -> Self {
        Self::Defer(defer)
    }
}

/// An element whose end tag has not been read yet.
struct OpenElement {
    /// Byte range of the element's qualified name in the body.
    name_start: usize,
    name_end: usize,
    tag: Tag,
    /// The name and `>` as the little-endian bytes of a word, for an end
    /// tag written without whitespace, or 0 when they take more than 8 bytes.
    end_word: u64,
    /// Ones over the bytes of `end_word` that the name and `>` take.
    end_mask: u64,
}

struct Scanner<'a> {
    body: &'a str,
    bytes: &'a [u8],
    /// Index of the next byte to read.
    position: usize,
    open: Vec<OpenElement>,
    unmarshaller: Unmarshaller<'a>,
    /// The UTF-8 encoding of the last character reference read.
    encoded_reference: [u8; 4],
}

// === impl Scanner ===

impl<'a> Scanner<'a> {
    fn run(&mut self) -> Result<Flow, Step> {
        self.skip_declaration();
        self.skip_whitespace();
        loop {
            if self.bytes.get(self.position) != Some(&b'<') {
                return Err(Defer.into());
            }
            self.position += 1;
            let stop = match self.bytes.get(self.position) {
                Some(b'/') => {
                    self.end_tag()?;
                    false
                }
                Some(&byte) if is_name_start(byte) => self.start_tag()?,
                _ => return Err(Defer.into()),
            };
            if stop {
                return Ok(Flow::StoppedAtParams);
            }
            if self.open.is_empty() {
                break;
            }
            self.content()?;
        }

        // Only whitespace may follow the root element. quick-xml passes it
        // to the unmarshaller, which ignores whitespace outside the root.
        self.skip_whitespace();
        if self.position != self.bytes.len() {
            return Err(Defer.into());
        }
        Ok(Flow::Finished)
    }

    /// Skips an XML declaration at the start of the body when it has one of
    /// the forms clients send. Any other declaration stays unread, and the
    /// root element check after it defers the body.
    fn skip_declaration(&mut self) {
        let Some(rest) = self.bytes.strip_prefix(b"<?xml version=") else {
            return;
        };
        let Some(rest) = strip_quoted(rest, b"1.0") else {
            return;
        };
        let rest = match rest.strip_prefix(b" encoding=") {
            Some(encoding) => match strip_quoted(encoding, b"utf-8") {
                Some(rest) => rest,
                None => return,
            },
            None => rest,
        };
        if let Some(rest) = rest.strip_prefix(b"?>") {
            self.position = self.bytes.len() - rest.len();
        }
    }

    fn skip_whitespace(&mut self) {
        while self.bytes.get(self.position).is_some_and(|&byte| is_whitespace(byte)) {
            self.position += 1;
        }
    }

    /// Reads a start or empty-element tag from its name, one byte after
    /// the `<`. Returns true when the unmarshaller stops.
    fn start_tag(&mut self) -> Result<bool, Step> {
        let name_start = self.position;
        let parsed = match word_at(self.bytes, name_start).and_then(known_start_tag) {
            Some(known) => {
                self.position += known.length;
                let name_end = name_start + known.name_length;
                let (end_word, end_mask) = if known.is_empty { (0, 0) } else { (known.word, known.mask) };
                StartTag { local_start: name_start, name_end, tag: known.tag, is_empty: known.is_empty, end_word, end_mask }
            }
            None => self.general_start_tag()?,
        };

        let local_name = &self.bytes[parsed.local_start..parsed.name_end];
        if self.unmarshaller.start(parsed.tag, local_name)? {
            return Ok(true);
        }
        if parsed.is_empty {
            self.unmarshaller.end(parsed.tag)?;
        } else {
            self.open.push(OpenElement {
                name_start,
                name_end: parsed.name_end,
                tag: parsed.tag,
                end_word: parsed.end_word,
                end_mask: parsed.end_mask,
            });
        }
        Ok(false)
    }

    /// Reads a start tag of any name in the subset, with whitespace before
    /// its `>` or `/>`, from its name to after its `>`.
    fn general_start_tag(&mut self) -> Result<StartTag, Defer> {
        let name_start = self.position;
        let mut local_start = name_start;
        while let Some(&byte) = self.bytes.get(self.position) {
            if !is_name_char(byte) {
                break;
            }
            self.position += 1;
            if byte == b':' {
                local_start = self.position;
            }
        }
        let name_end = self.position;
        self.skip_whitespace();
        let is_empty = match self.bytes.get(self.position) {
            Some(b'>') => false,
            Some(b'/') if self.bytes.get(self.position + 1) == Some(&b'>') => {
                self.position += 1;
                true
            }
            _ => return Err(Defer),
        };
        self.position += 1;

        let (end_word, end_mask) = end_tag_word(&self.bytes[name_start..name_end]);
        Ok(StartTag { local_start, name_end, tag: Tag::of(&self.bytes[local_start..name_end]), is_empty, end_word, end_mask })
    }

    /// Reads an end tag from its `/`. The name must be the innermost open
    /// element's, followed by optional whitespace.
    fn end_tag(&mut self) -> Result<(), Step> {
        let Some(element) = self.open.pop() else {
            return Err(Defer.into());
        };
        let after_slash = self.position + 1;
        if element.end_word != 0
            && let Some(word) = word_at(self.bytes, after_slash)
            && word & element.end_mask == element.end_word
        {
            self.position = after_slash + (element.name_end - element.name_start) + 1;
            self.unmarshaller.end(element.tag)?;
            return Ok(());
        }
        let name = &self.bytes[element.name_start..element.name_end];
        if !has_prefix(&self.bytes[after_slash..], name) {
            return Err(Defer.into());
        }
        self.position = after_slash + name.len();
        self.skip_whitespace();
        if self.bytes.get(self.position) != Some(&b'>') {
            return Err(Defer.into());
        }
        self.position += 1;
        self.unmarshaller.end(element.tag)?;
        Ok(())
    }

    /// Reads the content up to the next tag: text runs, references and
    /// CDATA sections. quick-xml passes each as an event of its own, and the
    /// unmarshaller appends them all to its text, so the scanner passes on
    /// their concatenation as one piece. A single run or section stays
    /// borrowed from the body. An empty run, and a plain run before a start
    /// tag, are not passed on.
    fn content(&mut self) -> Result<(), Defer> {
        // Most tags follow each other without text. `<!` may start a CDATA
        // section, which the loop below reads.
        if self.bytes.get(self.position) == Some(&b'<') && self.bytes.get(self.position + 1) != Some(&b'!') {
            return Ok(());
        }
        let mut run_start = self.position;
        let mut stop = self.skip_plain_text()?;
        if stop == b'<' {
            match self.bytes.get(self.position + 1) {
                Some(b'/') => {
                    if run_start != self.position {
                        let body = self.body;
                        self.unmarshaller.characters_checked(Cow::Borrowed(&body[run_start..self.position]));
                    }
                    return Ok(());
                }
                Some(b'!') => {}
                // A start tag clears the text before anything reads it, so
                // the text is not passed on. Any other byte after `<` defers
                // the body in `run`.
                _ => return Ok(()),
            }
        }

        let mut joined: Option<String> = None;
        loop {
            let body = self.body;
            let run = &body[run_start..self.position];
            let piece = if stop == b'&' {
                Some(self.reference()?)
            } else if self.bytes.get(self.position + 1) == Some(&b'!') && self.bytes[self.position + 1..].starts_with(CDATA_START) {
                Some(self.cdata_section()?)
            } else {
                None
            };
            match (&mut joined, piece) {
                (None, None) => {
                    if !run.is_empty() {
                        self.unmarshaller.characters_checked(Cow::Borrowed(run));
                    }
                    return Ok(());
                }
                (Some(joined), None) => {
                    joined.push_str(run);
                    break;
                }
                (None, Some(piece)) => {
                    let mut text = String::with_capacity(run.len() + piece.len() + 32);
                    text.push_str(run);
                    text.push_str(piece);
                    joined = Some(text);
                }
                (Some(joined), Some(piece)) => {
                    joined.push_str(run);
                    joined.push_str(piece);
                }
            }
            run_start = self.position;
            stop = self.skip_plain_text()?;
        }
        if let Some(joined) = joined {
            self.unmarshaller.characters_checked(Cow::Owned(joined));
        }
        Ok(())
    }

    /// Reads a CDATA section from its `<` and returns its content. Defers
    /// on the end of the body and on the characters that plain text defers
    /// on, but reads `<`, `&` and `]` as text.
    fn cdata_section(&mut self) -> Result<&'a str, Defer> {
        let bytes = self.bytes;
        let content_start = self.position + 1 + CDATA_START.len();
        let mut position = content_start;
        loop {
            while position < bytes.len() && !CDATA_SPECIAL[usize::from(bytes[position])] {
                position += 1;
            }
            let Some(&byte) = bytes.get(position) else {
                return Err(Defer);
            };
            match byte {
                b']' if bytes[position + 1..].starts_with(b"]>") => {
                    self.position = position + 3;
                    return Ok(&self.body[content_start..position]);
                }
                0xEF if is_noncharacter_at(bytes, position) => return Err(Defer),
                b']' | 0xEF => position += 1,
                _ => return Err(Defer),
            }
        }
    }

    /// Advances over text up to the next `<` or `&` and returns that byte.
    /// Defers on the end of the body, on `]]>`, and on the characters that
    /// either need line-end normalization or that XML 1.0 does not allow.
    #[inline(always)]
    fn skip_plain_text(&mut self) -> Result<u8, Defer> {
        let bytes = self.bytes;
        let mut position = self.position;
        loop {
            let Some(offset) = bytes[position..].iter().position(|&byte| TEXT_SPECIAL[usize::from(byte)]) else {
                return Err(Defer);
            };
            position += offset;
            let byte = bytes[position];
            match byte {
                b'<' | b'&' => {
                    self.position = position;
                    return Ok(byte);
                }
                b']' if bytes[position + 1..].starts_with(b"]>") => return Err(Defer),
                0xEF if is_noncharacter_at(bytes, position) => return Err(Defer),
                b']' | 0xEF => position += 1,
                _ => return Err(Defer),
            }
        }
    }

    /// Reads a reference from its `&` and returns its text. Defers on any
    /// entity but the five predefined ones, on character references that
    /// are not plain decimal or `x` hexadecimal numbers, and on references
    /// to characters XML does not allow.
    fn reference(&mut self) -> Result<&str, Defer> {
        let rest = &self.bytes[self.position + 1..];
        let (text, length) = match rest {
            [b'l', b't', b';', ..] => ("<", 3),
            [b'g', b't', b';', ..] => (">", 3),
            [b'a', b'm', b'p', b';', ..] => ("&", 4),
            [b'q', b'u', b'o', b't', b';', ..] => ("\"", 5),
            [b'a', b'p', b'o', b's', b';', ..] => ("'", 5),
            [b'#', b'x', digits @ ..] => {
                let (resolved, digit_count) = character_reference(digits, 16)?;
                (&*resolved.encode_utf8(&mut self.encoded_reference), digit_count + 3)
            }
            [b'#', digits @ ..] => {
                let (resolved, digit_count) = character_reference(digits, 10)?;
                (&*resolved.encode_utf8(&mut self.encoded_reference), digit_count + 2)
            }
            _ => return Err(Defer),
        };
        // `length` counts the bytes after `&`, up to and including `;`.
        self.position += 1 + length;
        Ok(text)
    }
}

/// Reads the digits of a character reference up to its `;`. Returns the
/// character and the number of digits.
fn character_reference(digits: &[u8], radix: u32) -> Result<(char, usize), Defer> {
    let mut code: u32 = 0;
    let mut count = 0;
    for &byte in digits {
        if byte == b';' {
            break;
        }
        let digit = char::from(byte).to_digit(radix).ok_or(Defer)?;
        code = code.checked_mul(radix).and_then(|code| code.checked_add(digit)).ok_or(Defer)?;
        count += 1;
    }
    if count == 0 || digits.get(count) != Some(&b';') {
        return Err(Defer);
    }
    let resolved = char::from_u32(code).filter(|&resolved| is_xml_char(resolved)).ok_or(Defer)?;
    Ok((resolved, count))
}

/// A start tag as read, before the unmarshaller handles it.
struct StartTag {
    /// Start of the local name, after the last `:` of the name.
    local_start: usize,
    name_end: usize,
    tag: Tag,
    is_empty: bool,
    /// The [`OpenElement`] fields of the same names.
    end_word: u64,
    end_mask: u64,
}

/// A start tag that the scanner matches with one comparison of 8 bytes: a
/// name without a prefix, directly followed by `>` or `/>`.
#[derive(Clone, Copy)]
struct KnownStartTag {
    /// The bytes after `<` up to and including `>`, little-endian, padded
    /// with zeros.
    word: u64,
    /// Ones over the bytes of `word` that the tag takes.
    mask: u64,
    /// Bytes after `<`, up to and including `>`.
    length: usize,
    name_length: usize,
    tag: Tag,
    is_empty: bool,
}

// === impl KnownStartTag ===

impl KnownStartTag {
    /// Builds the entry for the tag whose bytes after `<` are `text`, which
    /// ends with `>` and takes at most 8 bytes.
    const fn new(text: &[u8], tag: Tag) -> Self {
        assert!(text.len() <= 8);
        assert!(text[text.len() - 1] == b'>');
        let is_empty = text.len() >= 2 && text[text.len() - 2] == b'/';
        let mut word = 0u64;
        let mut index = 0;
        while index < text.len() {
            word |= (text[index] as u64) << (8 * index);
            index += 1;
        }
        Self {
            word,
            mask: byte_mask(text.len()),
            length: text.len(),
            name_length: text.len() - if is_empty { 2 } else { 1 },
            tag,
            is_empty,
        }
    }
}

/// The start tags that clients write for XML-RPC elements, as
/// `xmlrpc.client.dumps` writes them, and `i4`, `i8` and `params/>`,
/// grouped by their first byte for [`known_start_tag`]. Other tags,
/// `methodCall` and `methodName` among them, take the general path.
static KNOWN_START_TAGS: [KnownStartTag; 18] = [
    KnownStartTag::new(b"array>", Tag::Array),
    KnownStartTag::new(b"boolean>", Tag::Boolean),
    KnownStartTag::new(b"base64>", Tag::Base64),
    KnownStartTag::new(b"data>", Tag::Unknown),
    KnownStartTag::new(b"double>", Tag::Double),
    KnownStartTag::new(b"fault>", Tag::Fault),
    KnownStartTag::new(b"int>", Tag::Int),
    KnownStartTag::new(b"i4>", Tag::Int),
    KnownStartTag::new(b"i8>", Tag::Int),
    KnownStartTag::new(b"member>", Tag::Unknown),
    KnownStartTag::new(b"name>", Tag::String),
    KnownStartTag::new(b"nil/>", Tag::Nil),
    KnownStartTag::new(b"param>", Tag::Unknown),
    KnownStartTag::new(b"params>", Tag::Params),
    KnownStartTag::new(b"params/>", Tag::Params),
    KnownStartTag::new(b"string>", Tag::String),
    KnownStartTag::new(b"struct>", Tag::Struct),
    KnownStartTag::new(b"value>", Tag::Value),
];

/// Matches the 8 bytes after a `<` against the [`KNOWN_START_TAGS`] that
/// start with the same byte.
#[inline]
fn known_start_tag(word: u64) -> Option<KnownStartTag> {
    let candidates = match word as u8 {
        b'a' => &KNOWN_START_TAGS[0..1],
        b'b' => &KNOWN_START_TAGS[1..3],
        b'd' => &KNOWN_START_TAGS[3..5],
        b'f' => &KNOWN_START_TAGS[5..6],
        b'i' => &KNOWN_START_TAGS[6..9],
        b'm' => &KNOWN_START_TAGS[9..10],
        b'n' => &KNOWN_START_TAGS[10..12],
        b'p' => &KNOWN_START_TAGS[12..15],
        b's' => &KNOWN_START_TAGS[15..17],
        b'v' => &KNOWN_START_TAGS[17..18],
        _ => return None,
    };
    candidates.iter().find(|known| word & known.mask == known.word).copied()
}

/// Returns the 8 bytes from `position` as a little-endian word, or `None`
/// when the body ends before them.
#[inline]
fn word_at(bytes: &[u8], position: usize) -> Option<u64> {
    let chunk = bytes.get(position..position.checked_add(8)?)?;
    chunk.try_into().ok().map(u64::from_le_bytes)
}

/// Returns a mask of ones over the low `length` bytes of a word.
const fn byte_mask(length: usize) -> u64 {
    if length >= 8 { u64::MAX } else { (1u64 << (8 * length)) - 1 }
}

/// Returns the [`OpenElement::end_word`] and `end_mask` of an element
/// named `name`: (0, 0) when the name and `>` take more than 8 bytes.
fn end_tag_word(name: &[u8]) -> (u64, u64) {
    if name.len() >= 8 {
        return (0, 0);
    }
    let word = name.iter().rev().fold(u64::from(b'>'), |word, &byte| (word << 8) | u64::from(byte));
    (word, byte_mask(name.len() + 1))
}

/// Tells whether U+FFFE or U+FFFF (EF BF BE or EF BF BF in UTF-8) starts at
/// `position`. XML 1.0 does not allow either.
fn is_noncharacter_at(bytes: &[u8], position: usize) -> bool {
    let rest = &bytes[position..];
    rest.starts_with(b"\xEF\xBF\xBE") || rest.starts_with(b"\xEF\xBF\xBF")
}

/// Tells whether `bytes` starts with `prefix`. A byte loop, because element
/// names are short and a `memcmp` call costs more than comparing them.
#[inline]
fn has_prefix(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes.iter().zip(prefix).all(|(byte, expected)| byte == expected)
}

/// Returns what follows `quote value quote`, for either quote character.
fn strip_quoted<'b>(bytes: &'b [u8], value: &[u8]) -> Option<&'b [u8]> {
    let (&quote, rest) = bytes.split_first()?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let (candidate, rest) = rest.split_at_checked(value.len())?;
    if !candidate.eq_ignore_ascii_case(value) {
        return None;
    }
    rest.strip_prefix(&[quote])
}

/// XML whitespace without the carriage return, which the scanner defers.
fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n')
}

/// Tells whether XML 1.0 allows `byte` at the start of a name, for ASCII.
fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b':'
}

/// Tells whether XML 1.0 allows `byte` in a name, for ASCII.
fn is_name_char(byte: u8) -> bool {
    NAME_CHAR[usize::from(byte)]
}

/// The ASCII characters XML 1.0 allows in a name: letters, digits, `_`,
/// `:`, `-` and `.`.
const NAME_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 128 {
        table[byte] = (byte as u8).is_ascii_alphanumeric() || matches!(byte as u8, b'_' | b':' | b'-' | b'.');
        byte += 1;
    }
    table
};

/// The bytes after `<` that start a CDATA section.
const CDATA_START: &[u8] = b"![CDATA[";

/// Bytes that end a run of plain text or need a closer look: `<`, `&`,
/// `]` (for `]]>`), 0xEF (for U+FFFE and U+FFFF), and control characters
/// other than tab and line feed.
const TEXT_SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 0x20 {
        table[byte] = byte != 0x09 && byte != 0x0A;
        byte += 1;
    }
    table[b'<' as usize] = true;
    table[b'&' as usize] = true;
    table[b']' as usize] = true;
    table[0xEF] = true;
    table
};

/// Bytes that end the content of a CDATA section or need a closer look:
/// `]` (for `]]>`), 0xEF, and control characters other than tab and line
/// feed.
const CDATA_SPECIAL: [bool; 256] = {
    let mut table = TEXT_SPECIAL;
    table[b'<' as usize] = false;
    table[b'&' as usize] = false;
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Returns the word [`known_start_tag`] reads for `tag_text` followed by
    /// `rest`.
    fn word_of(tag_text: &[u8], rest: &[u8]) -> u64 {
        let bytes = [tag_text, rest, &[b'x'; 8]].concat();
        word_at(&bytes, 0).unwrap()
    }

    #[test]
    fn known_start_tags_match_their_names() {
        for known in &KNOWN_START_TAGS {
            let text = &known.word.to_le_bytes()[..known.length];
            let name = &text[..known.name_length];
            let closing: &[u8] = if known.is_empty { b"/>" } else { b">" };
            assert_eq!(&text[known.name_length..], closing, "{:?}", String::from_utf8_lossy(text));
            assert_eq!(Tag::of(name), known.tag, "{:?}", String::from_utf8_lossy(name));
            assert!(is_name_start(name[0]), "{:?}", String::from_utf8_lossy(name));
            assert!(name.iter().all(|&byte| is_name_char(byte)), "{:?}", String::from_utf8_lossy(name));
            for rest in [&b""[..], b"\n<", b"</x>"] {
                let found = known_start_tag(word_of(text, rest)).map(|found| (found.word, found.length));
                assert_eq!(found, Some((known.word, known.length)), "{:?}", String::from_utf8_lossy(text));
            }
        }
    }

    #[test]
    fn longer_names_are_not_known_tags() {
        for text in [&b"values>"[..], b"names>", b"int4>", b"i4x>", b"nil>", b"nilx/>", b"params >", b"value/>", b"ex:nil/>", b"Value>"] {
            assert!(known_start_tag(word_of(text, b"")).is_none(), "{:?}", String::from_utf8_lossy(text));
        }
        assert_eq!(known_start_tag(word_of(b"params/>", b"")).map(|known| known.tag), Some(Tag::Params));
    }

    #[test]
    fn end_tag_word_covers_name_and_close() {
        assert_eq!(end_tag_word(b"value"), (u64::from_le_bytes(*b"value>\0\0"), 0xFFFF_FFFF_FFFF));
        assert_eq!(end_tag_word(b"boolean"), (u64::from_le_bytes(*b"boolean>"), u64::MAX));
        assert_eq!(end_tag_word(b"methodName"), (0, 0));
        assert_eq!(end_tag_word(b"ex:nil").0, u64::from_le_bytes(*b"ex:nil>\0"));
    }
}
