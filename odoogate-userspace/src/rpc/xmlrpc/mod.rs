//! XML-RPC (`/xmlrpc/2/<service>` and legacy `/xmlrpc/<service>`).
//!
//! Odoo reads XML-RPC with Python's `xmlrpc.client.loads`, a stack machine
//! on top of expat. Text is collected per element, and every type element
//! pushes a value when it ends. `<array>` and `<struct>` collect what was
//! pushed since they started, unknown elements are skipped, and the last
//! `<methodName>` wins. [`Unmarshaller`] reproduces that machine on
//! two event sources, so odoogate decides on the call Odoo executes rather
//! than on a stricter reading of the document. The differences that remain
//! fail closed: what expat would parse differently (a DOCTYPE, another
//! encoding, non-ASCII digits) is an error here.
//!
//! The event sources are [`scan`], a tokenizer for the subset of XML that
//! XML-RPC clients write, and [`quick`], quick-xml's general reader. The
//! scanner defers every body outside its subset to quick-xml, so both
//! return the same document or error for every body.

mod quick;
mod scan;
#[cfg(test)]
mod tokenizer_tests;
mod well_formed;

use std::borrow::Cow;

use scan::Scanned;

use super::call::{Call, DecodeError, Protocol};
use super::service;
use super::value::Value;

/// Decodes an XML-RPC request body sent to `service`.
pub fn decode_request(protocol: Protocol, service: &str, body: &[u8], max_depth: usize) -> Result<Call, DecodeError> {
    let document = Unmarshaller::new(max_depth, Stop::Never).run(body)?;
    if document.kind == DocumentKind::Fault {
        return Err(DecodeError::InvalidXmlRpc("request body is a fault".to_owned()));
    }
    let method = document.method_name.ok_or_else(|| DecodeError::InvalidXmlRpc("missing methodName".to_owned()))?;
    let mut call = service::decode_service_call(protocol, service, &method, &document.values)?;
    if document.text_read_twice {
        // Clients never nest typed elements. The token swap and the field
        // narrowing edit elements, and would change such a call.
        call.mismatches.push("a typed element inside another reads the same text twice".to_owned());
    }
    if let Some(credential) = call.credential.as_mut().filter(|_| !document.text_read_twice) {
        // The services that take a password take it third.
        credential.span = match document.values.get(service::PASSWORD_PARAM) {
            Some(Value::String(Cow::Borrowed(text))) => verbatim_text_span(body, text),
            _ => None,
        };
    }
    Ok(call)
}

/// Returns where `text` sits in `body` when it is borrowed from it and is
/// the whole text between a start tag's `>` and the next `<`. Text joined
/// from several pieces, decoded from an entity or read from CDATA is not.
fn verbatim_text_span(body: &[u8], text: &str) -> Option<std::ops::Range<usize>> {
    if text.is_empty() {
        return None;
    }
    let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(text.len())?;
    let before = start.checked_sub(1).and_then(|index| body.get(index));
    (end < body.len() && before == Some(&b'>') && body[end] == b'<').then_some(start..end)
}

/// Reads a method response: `Ok(None)` for a result, `Ok(Some(code))` for a
/// fault. A result is recognized from its `<params>` start tag without
/// reading it, so large or truncated results cost nothing.
pub fn fault_code(body: &[u8], max_depth: usize) -> Result<Option<String>, DecodeError> {
    let document = Unmarshaller::new(max_depth, Stop::AtParams).run(body)?;
    if document.kind != DocumentKind::Fault {
        return Ok(None);
    }
    let code = document
        .values
        .first()
        .and_then(|fault| fault.member("faultCode"))
        .ok_or_else(|| DecodeError::InvalidXmlRpc("fault without faultCode".to_owned()))?;
    Ok(Some(fault_code_text(code)))
}

/// Reads the first value of a successful method response, for login results.
pub fn first_result(body: &[u8], max_depth: usize) -> Result<Option<Value<'_>>, DecodeError> {
    let document = Unmarshaller::new(max_depth, Stop::Never).run(body)?;
    if document.kind != DocumentKind::Params {
        return Ok(None);
    }
    Ok(document.values.into_iter().next())
}

/// One body as each tokenizer reads it, for the differential tests and
/// the fuzz target that check both agree. Each reading is the debug text of
/// the unmarshalled document or of the error, because `f64::NAN` is not
/// equal to itself.
#[doc(hidden)]
#[derive(Debug)]
pub struct TokenizerReadings {
    /// `None` when the scanner defers the body to quick-xml.
    pub scanner: Option<String>,
    pub quick_xml: String,
}

/// Unmarshals `body` with the scanner alone and with quick-xml alone,
/// stopping at `<params>` as [`fault_code`] does when `stop_at_params` is
/// set.
#[doc(hidden)]
pub fn read_with_each_tokenizer(body: &[u8], max_depth: usize, stop_at_params: bool) -> TokenizerReadings {
    let stop = if stop_at_params { Stop::AtParams } else { Stop::Never };
    let scanner = match document_text(body).and_then(|text| scan::unmarshal(Unmarshaller::new(max_depth, stop), text)) {
        Ok(Scanned::Deferred) => None,
        Ok(Scanned::Done(document)) => Some(format!("{:?}", Ok::<_, DecodeError>(document))),
        Err(error) => Some(format!("{:?}", Err::<Document<'_>, _>(error))),
    };
    let quick_xml = document_text(body).and_then(|text| quick::unmarshal(Unmarshaller::new(max_depth, stop), text));
    TokenizerReadings { scanner, quick_xml: format!("{quick_xml:?}") }
}

/// Returns the body as text without a leading byte order mark. Both
/// tokenizers read only UTF-8.
fn document_text(body: &[u8]) -> Result<&str, DecodeError> {
    let text = crate::rpc::text::utf8(body).ok_or(DecodeError::NotUtf8)?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// Formats a fault code: integers as decimal, legacy string codes cut to
/// their first line (`warning -- UserError`), because the rest is a message.
fn fault_code_text(code: &Value<'_>) -> String {
    match code {
        Value::Int(value) => value.to_string(),
        Value::BigInt(digits) => digits.clone(),
        Value::String(text) => text.lines().next().unwrap_or("").trim_end().to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// The element that decided the document's kind: the last of `<params>`,
/// `<fault>` and `<methodName>` to end, as in Python's unmarshaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DocumentKind {
    Params,
    Fault,
    MethodName,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Never,
    /// Stop at the first `<params>` start tag: the document is a result.
    AtParams,
}

#[derive(Debug)]
struct Document<'a> {
    kind: DocumentKind,
    method_name: Option<Cow<'a, str>>,
    /// Every value pushed outside an array or struct, in order.
    values: Vec<Value<'a>>,
    /// True when some text was read by two end tags, as in
    /// `<dateTime.iso8601><string>x</string></dateTime.iso8601>`, where
    /// Python reads `x` as two values. The text of a value then does not
    /// belong to that value alone.
    text_read_twice: bool,
}

/// Initial capacity of [`Unmarshaller::stack`], which contains the
/// parameters and the items of the open arrays and structs. Starting at 32
/// spares small requests the reallocations of a growing `Vec` (4, 8, 16
/// and 32 values).
const STACK_CAPACITY: usize = 32;

/// Initial capacity of [`Unmarshaller::marks`], one per open array or struct.
const MARKS_CAPACITY: usize = 8;

/// Python's `xmlrpc.client.Unmarshaller`, driven by the events of either
/// tokenizer.
struct Unmarshaller<'a> {
    max_depth: usize,
    stop: Stop,
    stack: Vec<Value<'a>>,
    /// Stack lengths at each open `<array>` or `<struct>`.
    marks: Vec<usize>,
    /// Text since the last start tag (Python's `_data`).
    text: Text<'a>,
    /// True right after a `<value>` start tag (Python's `_value`).
    in_bare_value: bool,
    /// True once an end tag has read the text since the last start tag.
    text_read: bool,
    /// See [`Document::text_read_twice`].
    text_read_twice: bool,
    kind: Option<DocumentKind>,
    method_name: Option<Cow<'a, str>>,
    open_elements: usize,
    root_closed: bool,
}

// === impl Unmarshaller ===

impl<'a> Unmarshaller<'a> {
    fn new(max_depth: usize, stop: Stop) -> Self {
        Self {
            max_depth,
            stop,
            stack: Vec::with_capacity(STACK_CAPACITY),
            marks: Vec::with_capacity(MARKS_CAPACITY),
            text: Text::default(),
            in_bare_value: false,
            text_read: false,
            text_read_twice: false,
            kind: None,
            method_name: None,
            open_elements: 0,
            root_closed: false,
        }
    }

    /// Unmarshals `body`. The scanner reads the common shape of XML-RPC
    /// bodies. It defers anything else to quick-xml, and quick-xml then
    /// reads the whole body again with a fresh unmarshaller.
    fn run(self, body: &'a [u8]) -> Result<Document<'a>, DecodeError> {
        let body = document_text(body)?;
        let (max_depth, stop) = (self.max_depth, self.stop);
        match scan::unmarshal(self, body)? {
            Scanned::Done(document) => Ok(document),
            Scanned::Deferred => quick::unmarshal(Self::new(max_depth, stop), body),
        }
    }

    /// Handles a start tag whose local name is `name`. Returns true when
    /// the reader should stop.
    #[inline(always)]
    fn start(&mut self, tag: Tag, name: &[u8]) -> Result<bool, DecodeError> {
        if self.root_closed {
            return Err(DecodeError::InvalidXml("element after the root element".to_owned()));
        }
        if self.stop == Stop::AtParams && tag == Tag::Params {
            return Ok(true);
        }
        if matches!(tag, Tag::Array | Tag::Struct) {
            if self.marks.len() >= self.max_depth {
                return Err(DecodeError::TooDeep(self.max_depth));
            }
            self.marks.push(self.stack.len());
        }
        self.text.clear();
        self.text_read = false;
        if self.in_bare_value && tag == Tag::Unknown {
            return Err(unknown_element_in_value(name));
        }
        self.in_bare_value = tag == Tag::Value;
        self.open_elements += 1;
        Ok(false)
    }

    /// Handles an end tag. Inlined into the tokenizers, because about half
    /// the end tags of the captures and of generated `create` calls
    /// (`</value>` after a typed value, `</member>`, `</data>`, `</param>`)
    /// change nothing but the element count.
    #[inline(always)]
    fn end(&mut self, tag: Tag) -> Result<(), DecodeError> {
        self.open_elements = self.open_elements.saturating_sub(1);
        if self.open_elements == 0 {
            self.root_closed = true;
        }
        match tag {
            Tag::Unknown => Ok(()),
            Tag::Value if !self.in_bare_value => Ok(()),
            _ => self.end_value(tag),
        }
    }

    /// Handles the end tag of an element that pushes a value or sets the
    /// document's kind.
    #[inline(never)]
    fn end_value(&mut self, tag: Tag) -> Result<(), DecodeError> {
        // The text is read only by the elements that use it, because a
        // joined text is copied on each read and `</member>`, `</data>` and
        // `</param>` would copy it for nothing.
        let value = match tag {
            Tag::Nil => Value::Nil,
            Tag::Boolean => parse_boolean(&self.read_text())?,
            Tag::Int => parse_int(&self.read_text())?,
            Tag::Double => parse_double(&self.read_text())?,
            Tag::BigDecimal => Value::BigDecimal(self.read_text()),
            Tag::String => Value::String(self.read_text()),
            Tag::Base64 => parse_base64(self.read_text())?,
            Tag::DateTime => Value::DateTime(self.read_text()),
            Tag::Array => {
                let mark = self.pop_mark();
                Value::Array(self.stack.split_off(mark))
            }
            Tag::Struct => {
                let mark = self.pop_mark();
                build_struct(self.stack.drain(mark..))?
            }
            Tag::Value if self.in_bare_value => Value::String(self.read_text()),
            Tag::Params => return self.set_kind(DocumentKind::Params),
            Tag::Fault => return self.set_kind(DocumentKind::Fault),
            Tag::MethodName => {
                self.method_name = Some(self.read_text());
                return self.set_kind(DocumentKind::MethodName);
            }
            Tag::Value | Tag::Unknown => return Ok(()),
        };
        self.stack.push(value);
        self.in_bare_value = false;
        Ok(())
    }

    /// Returns the text since the last start tag, and notes that an end
    /// tag read it, so that a second reader is seen.
    fn read_text(&mut self) -> Cow<'a, str> {
        self.text_read_twice |= self.text_read;
        self.text_read = true;
        self.text.as_cow()
    }

    fn set_kind(&mut self, kind: DocumentKind) -> Result<(), DecodeError> {
        self.kind = Some(kind);
        Ok(())
    }

    /// Returns the stack length at the innermost open array or struct.
    fn pop_mark(&mut self) -> usize {
        // Marks and array/struct elements nest together because both
        // tokenizers check that end tags match their start tags.
        let mark = self.marks.pop().unwrap_or(self.stack.len());
        mark.min(self.stack.len())
    }

    fn characters(&mut self, content: Cow<'a, str>) -> Result<(), DecodeError> {
        if self.open_elements == 0 {
            if content.trim_matches(is_xml_whitespace).is_empty() {
                return Ok(());
            }
            return Err(DecodeError::InvalidXml("text outside the root element".to_owned()));
        }
        check_xml_chars(&content)?;
        self.characters_checked(content);
        Ok(())
    }

    /// Handles the text of a reference or a CDATA section. XML allows
    /// neither outside the root element, even where it stands for whitespace.
    fn markup_characters(&mut self, content: Cow<'a, str>) -> Result<(), DecodeError> {
        if self.open_elements == 0 {
            return Err(DecodeError::InvalidXml("reference or CDATA section outside the root element".to_owned()));
        }
        self.characters(content)
    }

    /// Handles text inside the root element that the caller has checked
    /// against XML 1.0's character rules, as [`check_xml_chars`] does.
    #[inline]
    fn characters_checked(&mut self, content: Cow<'a, str>) {
        self.text.push(content);
    }

    fn finish(self) -> Result<Document<'a>, DecodeError> {
        if self.open_elements != 0 {
            return Err(DecodeError::InvalidXml("document ends inside an element".to_owned()));
        }
        let kind = self.kind.ok_or_else(|| DecodeError::InvalidXmlRpc("no params, fault or methodName element".to_owned()))?;
        Ok(Document { kind, method_name: self.method_name, values: self.stack, text_read_twice: self.text_read_twice })
    }

    fn stopped_at_params(self) -> Document<'a> {
        Document { kind: DocumentKind::Params, method_name: self.method_name, values: Vec::new(), text_read_twice: self.text_read_twice }
    }
}

/// Describes an element Python's unmarshaller has no handler for, directly
/// inside `<value>`. Kept out of line because it is rare.
#[cold]
#[inline(never)]
fn unknown_element_in_value(name: &[u8]) -> DecodeError {
    DecodeError::InvalidXmlRpc(format!("unknown element <{}> inside <value>", bounded(&String::from_utf8_lossy(name))))
}

/// Pieces of text stored inline before [`Text`] appends to a string.
const INLINE_TEXT_PIECES: usize = 4;

/// Text collected since the last start tag, as the pieces the tokenizer
/// passed on. The pieces are joined only when an end tag reads them, because
/// the whitespace after `</value>` and `</member>` is collected as in Python
/// but almost never read. A single piece stays borrowed from the body.
#[derive(Debug, Default)]
struct Text<'a> {
    /// The first `len` pieces. The others are stale: no method reads them.
    pieces: [Cow<'a, str>; INLINE_TEXT_PIECES],
    len: usize,
    /// Every piece after the first [`INLINE_TEXT_PIECES`], appended.
    overflow: String,
}

// === impl Text ===

impl<'a> Text<'a> {
    #[inline(always)]
    fn push(&mut self, content: Cow<'a, str>) {
        if self.len < INLINE_TEXT_PIECES {
            self.pieces[self.len] = content;
            self.len += 1;
        } else {
            self.overflow.push_str(&content);
        }
    }

    #[inline]
    fn clear(&mut self) {
        // `overflow` is empty unless every inline piece is set. The pieces
        // past `len` stay until `push` replaces them or the text is dropped,
        // so clearing writes one length and frees nothing.
        if self.len == INLINE_TEXT_PIECES {
            self.overflow.clear();
        }
        self.len = 0;
    }

    /// Returns the text collected so far without clearing it: Python keeps
    /// the text after an end tag, so an enclosing element's text includes
    /// what its child saw (`<int><x>1</x>2</int>` is 12). A single borrowed
    /// piece is not copied.
    fn as_cow(&self) -> Cow<'a, str> {
        match &self.pieces[..self.len] {
            [] => Cow::Borrowed(""),
            [piece] => piece.clone(),
            pieces => {
                let length = pieces.iter().map(|piece| piece.len()).sum::<usize>() + self.overflow.len();
                let mut joined = String::with_capacity(length);
                pieces.iter().for_each(|piece| joined.push_str(piece));
                joined.push_str(&self.overflow);
                Cow::Owned(joined)
            }
        }
    }
}

/// An element name as Python's unmarshaller dispatches on it. Names with
/// the same handler share a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Nil,
    Boolean,
    /// `int`, `i1`, `i2`, `i4`, `i8` and `biginteger`.
    Int,
    /// `double` and `float`.
    Double,
    BigDecimal,
    /// `string` and `name`.
    String,
    Base64,
    /// `dateTime.iso8601`.
    DateTime,
    Array,
    Struct,
    Value,
    Params,
    Fault,
    MethodName,
    /// A name Python's unmarshaller has no handler for. Such an element
    /// directly inside `<value>` is an error there, so here too.
    Unknown,
}

// === impl Tag ===

impl Tag {
    /// Classifies a local element name.
    fn of(name: &[u8]) -> Self {
        match name {
            b"nil" => Self::Nil,
            b"boolean" => Self::Boolean,
            b"int" | b"i1" | b"i2" | b"i4" | b"i8" | b"biginteger" => Self::Int,
            b"double" | b"float" => Self::Double,
            b"bigdecimal" => Self::BigDecimal,
            b"string" | b"name" => Self::String,
            b"base64" => Self::Base64,
            b"dateTime.iso8601" => Self::DateTime,
            b"array" => Self::Array,
            b"struct" => Self::Struct,
            b"value" => Self::Value,
            b"params" => Self::Params,
            b"fault" => Self::Fault,
            b"methodName" => Self::MethodName,
            _ => Self::Unknown,
        }
    }
}

/// Returns the part of an element name after its last `:`, as Python's
/// unmarshaller does for `ex:nil` and other prefixed names.
fn local_name(name: &[u8]) -> &[u8] {
    name.iter().rposition(|&byte| byte == b':').map_or(name, |colon| &name[colon + 1..])
}

/// Pairs the values pushed inside a struct into its members.
fn build_struct<'a>(mut items: impl ExactSizeIterator<Item = Value<'a>>) -> Result<Value<'a>, DecodeError> {
    if !items.len().is_multiple_of(2) {
        return Err(DecodeError::InvalidXmlRpc("struct member without a value".to_owned()));
    }
    let mut members = Vec::with_capacity(items.len() / 2);
    while let (Some(key), Some(value)) = (items.next(), items.next()) {
        let Value::String(key) = key else {
            return Err(DecodeError::InvalidXmlRpc("struct member name is not a string".to_owned()));
        };
        members.push((key, value));
    }
    Ok(Value::Struct(members))
}

/// Python accepts exactly `0` and `1`, without surrounding whitespace.
fn parse_boolean(text: &str) -> Result<Value<'static>, DecodeError> {
    match text {
        "0" => Ok(Value::Bool(false)),
        "1" => Ok(Value::Bool(true)),
        _ => Err(DecodeError::InvalidXmlRpc("boolean is neither 0 nor 1".to_owned())),
    }
}

/// Reads an integer the way Python's `int(text)` does for ASCII input:
/// surrounding whitespace, a sign, and single `_` between digits.
///
/// NOTE: Python also accepts non-ASCII decimal digits (`int("٤")` is 4);
/// those are rejected here, which fails closed.
pub(super) fn parse_int(text: &str) -> Result<Value<'static>, DecodeError> {
    let invalid = || DecodeError::InvalidXmlRpc("invalid integer".to_owned());
    let trimmed = text.trim_matches(char::is_whitespace);
    // Fast path without copies: Rust's `i64` parser reads the same sign and
    // ASCII digits as Python's `int` when there is no `_` separator.
    if !trimmed.contains('_')
        && let Ok(value) = trimmed.parse::<i64>()
    {
        return Ok(Value::Int(value));
    }
    let (negative, unsigned) = split_sign(trimmed);
    let digits = strip_digit_separators(unsigned).ok_or_else(invalid)?;
    let digits = digits.trim_start_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };

    let signed = if negative && digits != "0" { format!("-{digits}") } else { digits.to_owned() };
    match signed.parse::<i64>() {
        Ok(value) => Ok(Value::Int(value)),
        Err(_) => Ok(Value::BigInt(signed)),
    }
}

/// Reads a float the way Python's `float(text)` does for ASCII input.
fn parse_double(text: &str) -> Result<Value<'static>, DecodeError> {
    let invalid = || DecodeError::InvalidXmlRpc("invalid double".to_owned());
    let trimmed = text.trim_matches(char::is_whitespace);
    let cleaned = if trimmed.contains('_') { remove_float_separators(trimmed).ok_or_else(invalid)? } else { trimmed.to_owned() };
    cleaned.parse::<f64>().map(Value::Double).map_err(|_| invalid())
}

/// Python encodes base64 text to ASCII before decoding it.
fn parse_base64(text: Cow<'_, str>) -> Result<Value<'_>, DecodeError> {
    if !text.is_ascii() {
        return Err(DecodeError::InvalidXmlRpc("base64 value is not ASCII".to_owned()));
    }
    Ok(Value::Base64(text))
}

fn split_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

/// Returns the ASCII digits of `text` without `_` separators, or `None`
/// unless every `_` sits between two digits.
fn strip_digit_separators(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_digit() || !bytes[bytes.len() - 1].is_ascii_digit() {
        return None;
    }
    let mut digits = String::with_capacity(bytes.len());
    let mut previous_was_separator = false;
    for &byte in bytes {
        match byte {
            b'0'..=b'9' => {
                digits.push(byte as char);
                previous_was_separator = false;
            }
            b'_' if !previous_was_separator => previous_was_separator = true,
            _ => return None,
        }
    }
    Some(digits)
}

/// Removes `_` from a float literal when each one sits between two digits.
fn remove_float_separators(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let between_digits = |i: usize| i > 0 && i + 1 < bytes.len() && bytes[i - 1].is_ascii_digit() && bytes[i + 1].is_ascii_digit();
    let all_valid = bytes.iter().enumerate().filter(|(_, b)| **b == b'_').all(|(i, _)| between_digits(i));
    all_valid.then(|| text.replace('_', ""))
}

/// Rejects characters XML 1.0 does not allow in content, as expat does.
fn check_xml_chars(text: &str) -> Result<(), DecodeError> {
    let bytes = text.as_bytes();
    // Only control bytes and 0xEF, the first byte of U+FFFE and U+FFFF (EF BF
    // BE and EF BF BF in UTF-8), need a closer look. The fold has no early
    // exit, so it vectorizes.
    let suspect = bytes.iter().fold(false, |found, &byte| found | (byte < 0x20) | (byte == 0xEF));
    if !suspect {
        return Ok(());
    }
    let not_allowed = bytes.iter().enumerate().any(|(index, &byte)| match byte {
        b'\t' | b'\n' | b'\r' => false,
        0x00..=0x1F => true,
        0xEF => bytes.get(index + 1) == Some(&0xBF) && matches!(bytes.get(index + 2), Some(0xBE | 0xBF)),
        _ => false,
    });
    if not_allowed {
        return Err(DecodeError::InvalidXml("character not allowed in XML content".to_owned()));
    }
    Ok(())
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn is_xml_whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Cuts a name taken from the document to 32 characters for error messages.
fn bounded(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::call::{CallKind, CredentialSlot};

    fn values(params: &str) -> Result<Vec<Value<'_>>, DecodeError> {
        let body = format!("<?xml version='1.0'?><methodCall><methodName>m</methodName><params>{params}</params></methodCall>");
        let body: &'static str = Box::leak(body.into_boxed_str());
        Unmarshaller::new(64, Stop::Never).run(body.as_bytes()).map(|document| document.values)
    }

    fn value(xml: &str) -> Value<'static> {
        let xml: &'static str = Box::leak(format!("<param><value>{xml}</value></param>").into_boxed_str());
        let mut values = values(xml).unwrap();
        assert_eq!(values.len(), 1, "{xml}");
        values.remove(0)
    }

    fn string(text: &str) -> Value<'static> {
        Value::String(Cow::Owned(text.to_owned()))
    }

    #[test]
    fn every_value_type_decodes() {
        assert_eq!(value("<int>42</int>"), Value::Int(42));
        assert_eq!(value("<i1>-1</i1>"), Value::Int(-1));
        assert_eq!(value("<i2>7</i2>"), Value::Int(7));
        assert_eq!(value("<i4>+8</i4>"), Value::Int(8));
        assert_eq!(value("<i8>9223372036854775807</i8>"), Value::Int(i64::MAX));
        assert_eq!(value("<biginteger>12</biginteger>"), Value::Int(12));
        assert_eq!(value("<boolean>1</boolean>"), Value::Bool(true));
        assert_eq!(value("<boolean>0</boolean>"), Value::Bool(false));
        assert_eq!(value("<double>0.30000000000000004</double>"), Value::Double(0.30000000000000004));
        assert_eq!(value("<double>-1e3</double>"), Value::Double(-1000.0));
        assert_eq!(value("<bigdecimal>1.10</bigdecimal>"), Value::BigDecimal(Cow::Borrowed("1.10")));
        assert_eq!(value("<string>x y</string>"), string("x y"));
        assert_eq!(value("bare text"), string("bare text"));
        assert_eq!(value(""), string(""));
        assert_eq!(value("<dateTime.iso8601>20200101T12:00:00</dateTime.iso8601>"), Value::DateTime(Cow::Borrowed("20200101T12:00:00")));
        assert_eq!(value("<base64>aGk=</base64>"), Value::Base64(Cow::Borrowed("aGk=")));
        assert_eq!(value("<nil/>"), Value::Nil);
        assert_eq!(value("<ex:nil/>"), Value::Nil);
        assert_eq!(
            value("<array><data><value><int>1</int></value><value>a</value></data></array>"),
            Value::Array(vec![Value::Int(1), string("a")])
        );
        assert_eq!(value("<array><data/></array>"), Value::Array(vec![]));
        assert_eq!(
            value("<struct><member><name>k</name><value><struct></struct></value></member></struct>"),
            Value::Struct(vec![(Cow::Borrowed("k"), Value::Struct(vec![]))])
        );
    }

    #[test]
    fn big_integers_are_kept() {
        assert_eq!(value("<int>1099511627776</int>"), Value::Int(1 << 40));
        assert_eq!(value("<int>123456789012345678901234567890</int>"), Value::BigInt("123456789012345678901234567890".to_owned()));
        assert_eq!(value("<int>-9223372036854775809</int>"), Value::BigInt("-9223372036854775809".to_owned()));
    }

    #[test]
    fn integers_read_like_python() {
        assert_eq!(value("<int> 42\n</int>"), Value::Int(42));
        assert_eq!(value("<int>1_000</int>"), Value::Int(1000));
        assert_eq!(value("<int>007</int>"), Value::Int(7));
        assert_eq!(value("<int>-0</int>"), Value::Int(0));
        for bad in ["", "1__0", "_1", "1_", "1.5", "0x10", "--1", "١"] {
            let xml = format!("<param><value><int>{bad}</int></value></param>");
            assert!(values(&xml).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn booleans_are_strict() {
        for bad in [" 1", "true", "2", ""] {
            let xml = format!("<param><value><boolean>{bad}</boolean></value></param>");
            assert!(values(&xml).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn doubles_read_like_python() {
        assert_eq!(value("<double> 1_0.5 </double>"), Value::Double(10.5));
        assert!(matches!(value("<double>nan</double>"), Value::Double(v) if v.is_nan()));
        assert_eq!(value("<double>-inf</double>"), Value::Double(f64::NEG_INFINITY));
        assert!(values("<param><value><double>1._5</double></value></param>").is_err());
    }

    #[test]
    fn cdata_and_entities_join() {
        assert_eq!(value("<string>a &amp; b &lt;c&gt; &#233;&#x1F680;&quot;&apos;</string>"), string("a & b <c> é🚀\"'"));
        assert_eq!(value("<string><![CDATA[<p>x</p>]]></string>"), string("<p>x</p>"));
        // The npm client splits `]]>` across two CDATA sections.
        assert_eq!(value("<string><![CDATA[a ]]]]><![CDATA[> b]]></string>"), string("a ]]> b"));
        assert_eq!(value("<string>x<![CDATA[&amp;]]>y</string>"), string("x&amp;y"));
    }

    #[test]
    fn undefined_entity_is_invalid() {
        let error = values("<param><value><string>&nbsp;</string></value></param>").unwrap_err();
        assert_eq!(error.code(), "invalid_xml");
        let error = values("<param><value><string>&#1;</string></value></param>").unwrap_err();
        assert_eq!(error.code(), "invalid_xml");
    }

    #[test]
    fn control_characters_are_invalid() {
        let error = values("<param><value><string>a\u{1}b</string></value></param>").unwrap_err();
        assert_eq!(error.code(), "invalid_xml");
    }

    #[test]
    fn line_ends_are_normalized() {
        assert_eq!(value("<string>a\r\nb\rc</string>"), string("a\nb\nc"));
    }

    #[test]
    fn whitespace_between_elements_is_ignored() {
        let xml = "<param>\n <value>\n  <array>\n   <data>\n    <value><int>1</int></value>\n   </data>\n  </array>\n </value>\n</param>";
        assert_eq!(values(xml).unwrap(), vec![Value::Array(vec![Value::Int(1)])]);
        // Whitespace-only text directly in <value> is a string, as in Python.
        assert_eq!(value("  "), string("  "));
        assert_eq!(value(" <string>s</string> "), string("s"));
    }

    #[test]
    fn text_after_a_child_is_joined_like_python() {
        assert_eq!(value("<int><x>1</x>2</int>"), Value::Int(12));
    }

    #[test]
    fn start_tag_clears_text_before_it() {
        assert_eq!(value("<int>1<x/>2</int>"), Value::Int(2));
        assert_eq!(value("<string>a &amp;<x/>b</string>"), string("b"));
        // The inner string is pushed, and the outer one reads its text too.
        let nested = values("<param><value><string>a\n<string>b</string>c</string></value></param>").unwrap();
        assert_eq!(nested, vec![string("b"), string("bc")]);
    }

    #[test]
    fn text_clear_keeps_no_stale_piece() {
        let mut text = Text::default();
        text.push(Cow::Owned("owned".to_owned()));
        text.clear();
        assert_eq!(text.as_cow(), Cow::Borrowed(""));
        text.push(Cow::Borrowed("b"));
        assert!(matches!(text.as_cow(), Cow::Borrowed("b")));

        for piece in ["1", "2", "3", "4", "5", "6"] {
            text.push(Cow::Borrowed(piece));
        }
        assert_eq!(text.as_cow(), "b123456");
        text.clear();
        text.push(Cow::Borrowed("x"));
        text.push(Cow::Borrowed("y"));
        assert_eq!(text.as_cow(), "xy");
        for piece in ["1", "2", "3"] {
            text.push(Cow::Borrowed(piece));
        }
        assert_eq!(text.as_cow(), "xy123");
    }

    #[test]
    fn unknown_element_in_value_is_rejected() {
        let error = values("<param><value><data/></value></param>").unwrap_err();
        assert_eq!(error.code(), "invalid_xmlrpc");
    }

    #[test]
    fn doctype_is_rejected() {
        let body =
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e \"execute_kw\">]><methodCall><methodName>&e;</methodName><params/></methodCall>";
        assert_eq!(decode_request(Protocol::XmlRpc, "object", body, 64).unwrap_err(), DecodeError::XmlDoctype);
    }

    #[test]
    fn depth_is_bounded() {
        let nested = "<value><array><data>".repeat(65) + &"</data></array></value>".repeat(65);
        let xml = format!("<param>{nested}</param>");
        assert_eq!(values(&xml).unwrap_err(), DecodeError::TooDeep(64));
        let nested = "<value><array><data>".repeat(64) + &"</data></array></value>".repeat(64);
        assert!(values(&format!("<param>{nested}</param>")).is_ok());
    }

    #[test]
    fn malformed_xml_is_invalid() {
        for body in [
            "<methodCall><methodName>m</methodName><params></methodCall>",
            "<methodCall><methodName>m</methodName>",
            "<methodCall><methodName>m</methodName></methodCall><extra/>",
            "junk<methodCall/>",
            "",
        ] {
            let error = decode_request(Protocol::XmlRpc, "common", body.as_bytes(), 64).unwrap_err();
            assert!(matches!(error, DecodeError::InvalidXml(_) | DecodeError::InvalidXmlRpc(_)), "{body:?}: {error:?}");
        }
    }

    #[test]
    fn non_utf8_encoding_is_rejected() {
        let body = b"<?xml version='1.0' encoding='iso-8859-1'?><methodCall><methodName>version</methodName></methodCall>";
        assert_eq!(decode_request(Protocol::XmlRpc, "common", body, 64).unwrap_err().code(), "unsupported_encoding");
        let body = b"<methodCall><methodName>version\xff</methodName></methodCall>";
        assert_eq!(decode_request(Protocol::XmlRpc, "common", body, 64).unwrap_err(), DecodeError::NotUtf8);
    }

    #[test]
    fn last_method_name_wins() {
        let body = b"<methodCall><methodName>version</methodName><methodName>login</methodName><params><param><value>db</value></param></params></methodCall>";
        let call = decode_request(Protocol::XmlRpc, "common", body, 64).unwrap();
        assert_eq!(call.method.as_deref(), Some("login"));
        assert_eq!(call.kind, CallKind::Auth);
    }

    #[test]
    fn execute_and_execute_kw_agree() {
        let execute_kw = b"<methodCall><methodName>execute_kw</methodName><params>\
            <param><value>db</value></param><param><value><int>2</int></value></param>\
            <param><value>pw</value></param><param><value>res.partner</value></param>\
            <param><value>write</value></param>\
            <param><value><array><data><value><array><data><value><int>5</int></value></data></array></value>\
            <value><struct><member><name>name</name><value>n</value></member></struct></value></data></array></value></param>\
            </params></methodCall>";
        let execute = b"<methodCall><methodName>execute</methodName><params>\
            <param><value>db</value></param><param><value><int>2</int></value></param>\
            <param><value>pw</value></param><param><value>res.partner</value></param>\
            <param><value>write</value></param>\
            <param><value><array><data><value><int>5</int></value></data></array></value></param>\
            <param><value><struct><member><name>name</name><value>n</value></member></struct></value></param>\
            </params></methodCall>";
        let first = decode_request(Protocol::XmlRpc, "object", execute_kw, 64).unwrap();
        let second = decode_request(Protocol::XmlRpc, "object", execute, 64).unwrap();
        for call in [&first, &second] {
            assert_eq!(call.model.as_deref(), Some("res.partner"));
            assert_eq!(call.method.as_deref(), Some("write"));
            assert_eq!(call.record_ids, vec![5]);
            assert_eq!(call.fields, vec!["name"]);
            assert_eq!(call.credential.as_ref().map(|c| c.slot), Some(CredentialSlot::Password));
        }
    }

    #[test]
    fn fault_codes_are_read() {
        let int_fault = b"<?xml version=\"1.0\"?><methodResponse><fault><value><struct>\
            <member><name>faultCode</name><value><int>3</int></value></member>\
            <member><name>faultString</name><value><string>Access Denied</string></value></member>\
            </struct></value></fault></methodResponse>";
        assert_eq!(fault_code(int_fault, 64).unwrap(), Some("3".to_owned()));
        let string_fault = b"<methodResponse><fault><value><struct>\
            <member><name>faultCode</name><value><string>warning -- UserError\n\nObject x</string></value></member>\
            </struct></value></fault></methodResponse>";
        assert_eq!(fault_code(string_fault, 64).unwrap(), Some("warning -- UserError".to_owned()));
    }

    #[test]
    fn result_is_recognized_before_the_cut() {
        let cut = b"<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param><value><array><data><value><str";
        assert_eq!(fault_code(cut, 64).unwrap(), None);
    }

    #[test]
    fn span_needs_whole_element_text() {
        let body = "<a>token</a><b><![CDATA[token]]></b><c>x token</c>";
        let at = |start: usize| verbatim_text_span(body.as_bytes(), &body[start..start + 5]);
        assert_eq!(at(3), Some(3..8));
        assert_eq!(at(24), None, "CDATA content");
        assert_eq!(at(41), None, "part of a text");
        assert_eq!(verbatim_text_span(body.as_bytes(), "token"), None, "text outside the body");
    }
}
