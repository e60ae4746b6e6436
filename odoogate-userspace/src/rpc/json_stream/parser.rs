//! A serde [`Deserializer`] over a borrowed JSON body for the one-pass
//! decoders. It accepts no text that serde_json (1.0.154, the locked
//! version) rejects when it builds a `serde_json::Value`, so the tree
//! decoder never fails where this one read a call. `parser_tests.rs`
//! compares the two on generated and mutated texts.
//!
//! Values that a decoder drops are skipped with
//! [`Deserializer::deserialize_ignored_any`], which validates them without
//! visitor calls: strings are searched 16 bytes at a time for a quote, a
//! backslash or a control character, escapes are checked with serde_json's
//! surrogate rules, and numbers are checked against the JSON grammar. The
//! nesting depth is counted while parsing, so the only separate pass over
//! the body is the UTF-8 check.
//!
//! `deserialize_seq` and `deserialize_map` read a value only when it is an
//! array or an object respectively. Any other value is validated, skipped
//! and passed to the visitor as a unit, so a visitor that reads arrays and
//! ignores scalars costs no string decoding or number conversion.
//!
//! Errors carry no detail: on any error the caller decodes the body again
//! with the tree decoder, which reports the exact error.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::json_text::find_string_special;

/// The parser stopped: the body is invalid JSON, nests too deep, or has a
/// shape a decoder leaves to the tree decoder.
#[derive(Debug)]
pub(super) struct Rejected;

impl fmt::Display for Rejected {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("body rejected by the one-pass JSON parser")
    }
}

impl std::error::Error for Rejected {}

impl de::Error for Rejected {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Rejected
    }
}

/// The deepest nesting serde_json 1.0 parses: its recursion limit of 128
/// rejects the 128th level of arrays and objects.
const SERDE_JSON_MAX_DEPTH: usize = 127;

/// Integers with at most this many digits fit in a `u64`, so they are read
/// without serde_json.
const SMALL_INT_DIGITS: usize = 18;

/// A number without exponent whose integer part has at most this many
/// digits is below `f64::MAX` (about 1.8e308), so serde_json cannot reject
/// it as out of range.
const SAFE_INT_DIGITS: usize = 300;

/// Reads one JSON text from a body through serde's data model.
pub(super) struct Parser<'de> {
    text: &'de str,
    index: usize,
    /// Arrays and objects open around the current position.
    depth: usize,
    max_depth: usize,
    /// Buffer for strings that contain escapes.
    scratch: String,
}

/// A number token found by [`Parser::scan_number`].
struct NumberToken {
    start: usize,
    /// The magnitude, when the number is an integer of at most
    /// [`SMALL_INT_DIGITS`] digits.
    small: Option<u64>,
    negative: bool,
    /// Whether serde_json may reject the number as out of range.
    may_overflow: bool,
}

// === impl Parser ===

impl<'de> Parser<'de> {
    /// Starts a parser that rejects arrays and objects nested deeper than
    /// `max_depth` (or than serde_json's limit, if that is lower). Fails
    /// when the body is not UTF-8, which serde_json requires of strings and
    /// the JSON grammar of everything else.
    pub(super) fn new(body: &'de [u8], max_depth: usize) -> Result<Self, Rejected> {
        let text = crate::rpc::text::utf8(body).ok_or(Rejected)?;
        Ok(Self { text, index: 0, depth: 0, max_depth: max_depth.min(SERDE_JSON_MAX_DEPTH), scratch: String::new() })
    }

    /// Fails unless only whitespace follows the value read.
    pub(super) fn end(&mut self) -> Result<(), Rejected> {
        self.skip_whitespace();
        if self.index == self.text.len() { Ok(()) } else { Err(Rejected) }
    }

    fn bytes(&self) -> &'de [u8] {
        self.text.as_bytes()
    }

    /// Returns the text from `start` to `end`, which must lie next to
    /// ASCII bytes. It fails only when they do not.
    fn text(&self, start: usize, end: usize) -> Result<&'de str, Rejected> {
        self.text.get(start..end).ok_or(Rejected)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.index).copied()
    }

    fn next_byte(&mut self) -> Result<u8, Rejected> {
        let byte = self.peek().ok_or(Rejected)?;
        self.index += 1;
        Ok(byte)
    }

    /// Skips the whitespace JSON allows between tokens.
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.index += 1;
        }
    }

    fn expect(&mut self, expected: u8) -> Result<(), Rejected> {
        if self.next_byte()? == expected { Ok(()) } else { Err(Rejected) }
    }

    /// Consumes `literal` (`true`, `false` or `null`).
    fn expect_literal(&mut self, literal: &[u8]) -> Result<(), Rejected> {
        if self.bytes()[self.index..].starts_with(literal) {
            self.index += literal.len();
            Ok(())
        } else {
            Err(Rejected)
        }
    }

    /// Fails when a container opened `extra` levels below the current one
    /// would nest deeper than the limit.
    fn check_depth(&self, extra: usize) -> Result<(), Rejected> {
        if self.depth + extra > self.max_depth { Err(Rejected) } else { Ok(()) }
    }

    /// Scans a string whose opening quote was consumed, up to and including
    /// its closing quote. Returns whether it contains escapes.
    // Inlined because most strings are short keys, and a third of their
    // scan went to the call's prologue and epilogue (callgrind, jsonrpc captures).
    #[inline(always)]
    fn scan_string(&mut self) -> Result<bool, Rejected> {
        let mut escaped = false;
        loop {
            let found = find_string_special(self.bytes(), self.index).ok_or(Rejected)?;
            self.index = found + 1;
            match self.bytes()[found] {
                b'"' => return Ok(escaped),
                b'\\' => {
                    escaped = true;
                    self.scan_escape()?;
                }
                // A control character, which JSON strings must escape.
                _ => return Err(Rejected),
            }
        }
    }

    /// Checks the escape after a backslash as serde_json does for a string
    /// (not a byte string): a `\u` escape of a UTF-16 surrogate must be a
    /// high surrogate followed at once by a `\u` escape of a low one.
    fn scan_escape(&mut self) -> Result<(), Rejected> {
        match self.next_byte()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => {
                let unit = self.hex_escape()?;
                match unit {
                    0xDC00..=0xDFFF => Err(Rejected),
                    0xD800..=0xDBFF => {
                        self.expect(b'\\')?;
                        self.expect(b'u')?;
                        let low = self.hex_escape()?;
                        if (0xDC00..=0xDFFF).contains(&low) { Ok(()) } else { Err(Rejected) }
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(Rejected),
        }
    }

    /// Reads the four hex digits of a `\u` escape.
    fn hex_escape(&mut self) -> Result<u16, Rejected> {
        let digits = self.bytes().get(self.index..self.index + 4).ok_or(Rejected)?;
        let mut unit = 0u16;
        for &digit in digits {
            let value = (digit as char).to_digit(16).ok_or(Rejected)?;
            unit = unit * 16 + value as u16;
        }
        self.index += 4;
        Ok(unit)
    }

    /// Scans a number at the current position against the JSON grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. The integer
    /// part's value is summed in the same pass over its digits.
    fn scan_number(&mut self) -> Result<NumberToken, Rejected> {
        let bytes = self.bytes();
        let start = self.index;
        let mut index = start;
        let negative = bytes.get(index) == Some(&b'-');
        if negative {
            index += 1;
        }
        let int_start = index;
        let mut magnitude = 0u64;
        match bytes.get(index) {
            Some(b'0') => {
                index += 1;
                // serde_json rejects a leading zero followed by a digit.
                if bytes.get(index).is_some_and(u8::is_ascii_digit) {
                    return Err(Rejected);
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(&digit @ b'0'..=b'9') = bytes.get(index) {
                    // Wraps only beyond `SMALL_INT_DIGITS` digits, where
                    // the sum is not used.
                    magnitude = magnitude.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
                    index += 1;
                }
            }
            _ => return Err(Rejected),
        }
        let int_digits = index - int_start;

        let mut integer = true;
        if bytes.get(index) == Some(&b'.') {
            index = digits_end(bytes, index + 1)?;
            integer = false;
        }

        let mut exponent = false;
        if let Some(b'e' | b'E') = bytes.get(index) {
            index += 1;
            if let Some(b'+' | b'-') = bytes.get(index) {
                index += 1;
            }
            index = digits_end(bytes, index)?;
            exponent = true;
        }

        self.index = index;
        let small = (integer && !exponent && int_digits <= SMALL_INT_DIGITS).then_some(magnitude);
        Ok(NumberToken { start, small, negative, may_overflow: exponent || int_digits > SAFE_INT_DIGITS })
    }

    /// Tells whether the byte after a number's first digit continues the
    /// number. When it does not, the digit is the whole number, because a
    /// lone digit (`0` included) is a valid JSON number.
    fn number_continues(&self) -> bool {
        matches!(self.peek(), Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
    }

    /// Returns the text of a number scanned into `token`.
    fn number_text(&self, token: &NumberToken) -> Result<&'de str, Rejected> {
        self.text(token.start, self.index)
    }

    /// Skips a number, and has serde_json check the ones it may reject as
    /// out of range.
    fn skip_number(&mut self) -> Result<(), Rejected> {
        let token = self.scan_number()?;
        if token.may_overflow {
            let text = self.number_text(&token)?;
            serde_json::Deserializer::from_str(text).deserialize_any(IgnoredAny).map_err(|_| Rejected)?;
        }
        Ok(())
    }

    /// Passes a number to `visitor` as serde_json does: `u64` for a
    /// non-negative integer, `i64` for a negative one, and `f64` for `-0`,
    /// for fractions, exponents and integers beyond 64 bits.
    fn visit_number<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Rejected> {
        if let Some(digit @ b'0'..=b'9') = self.peek() {
            self.index += 1;
            if !self.number_continues() {
                return visitor.visit_u64(u64::from(digit - b'0'));
            }
            self.index -= 1;
        }
        let token = self.scan_number()?;
        match token.small {
            Some(magnitude) if !token.negative => visitor.visit_u64(magnitude),
            // `magnitude` has at most 18 digits, so it fits in an `i64`.
            Some(magnitude) if magnitude != 0 => visitor.visit_i64(-(magnitude as i64)),
            _ => {
                let text = self.number_text(&token)?;
                serde_json::Deserializer::from_str(text).deserialize_any(visitor).map_err(|_| Rejected)
            }
        }
    }

    /// Reads a string whose opening quote is next and passes it to `visitor`,
    /// borrowed from the body unless it contains escapes.
    fn visit_string<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Rejected> {
        self.expect(b'"')?;
        let start = self.index;
        let escaped = self.scan_string()?;
        let raw = self.text(start, self.index - 1)?;
        if !escaped {
            return visitor.visit_borrowed_str(raw);
        }
        let mut decoded = std::mem::take(&mut self.scratch);
        decoded.clear();
        unescape(raw, &mut decoded)?;
        let value = visitor.visit_str(&decoded);
        self.scratch = decoded;
        value
    }

    /// Skips an object key and the colon after it.
    fn skip_member_key(&mut self) -> Result<(), Rejected> {
        self.skip_whitespace();
        self.expect(b'"')?;
        self.scan_string()?;
        self.skip_whitespace();
        self.expect(b':')
    }

    /// Skips one value, validating it, without recursion: `objects` has
    /// bit `n` set when the container `n + 1` levels below the value is an
    /// object. The depth limit keeps `n` below 127.
    fn skip_value(&mut self) -> Result<(), Rejected> {
        let mut objects: u128 = 0;
        let mut level = 0usize;
        loop {
            self.skip_whitespace();
            match self.next_byte()? {
                open @ (b'{' | b'[') => {
                    self.check_depth(level + 1)?;
                    self.skip_whitespace();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.index += 1;
                    } else {
                        if open == b'{' {
                            objects |= 1 << level;
                            level += 1;
                            self.skip_member_key()?;
                        } else {
                            objects &= !(1 << level);
                            level += 1;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.scan_string()?;
                }
                // A one-digit integer, as x2many commands start with.
                b'0'..=b'9' if !self.number_continues() => {}
                b'-' | b'0'..=b'9' => {
                    self.index -= 1;
                    self.skip_number()?;
                }
                b't' => self.expect_literal(b"rue")?,
                b'f' => self.expect_literal(b"alse")?,
                b'n' => self.expect_literal(b"ull")?,
                _ => return Err(Rejected),
            }

            // A value ended: close the containers it ends, or step to the
            // next item of the innermost one.
            loop {
                if level == 0 {
                    return Ok(());
                }
                self.skip_whitespace();
                let in_object = objects & (1 << (level - 1)) != 0;
                match (self.next_byte()?, in_object) {
                    (b',', true) => {
                        self.skip_member_key()?;
                        break;
                    }
                    (b',', false) => break,
                    (b'}', true) | (b']', false) => level -= 1,
                    _ => return Err(Rejected),
                }
            }
        }
    }
}

/// Returns the end of the digits from `index` on, or fails when there are
/// none.
fn digits_end(bytes: &[u8], mut index: usize) -> Result<usize, Rejected> {
    let start = index;
    while bytes.get(index).is_some_and(u8::is_ascii_digit) {
        index += 1;
    }
    if index == start { Err(Rejected) } else { Ok(index) }
}

/// Decodes the escapes of a validated string into `out`.
fn unescape(raw: &str, out: &mut String) -> Result<(), Rejected> {
    let mut rest = raw;
    while let Some(backslash) = memchr::memchr(b'\\', rest.as_bytes()) {
        out.push_str(&rest[..backslash]);
        let escape = rest.as_bytes().get(backslash + 1).copied().ok_or(Rejected)?;
        rest = &rest[backslash + 2..];
        let decoded = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex_unit(rest)?;
                rest = &rest[4..];
                let code = if (0xD800..=0xDBFF).contains(&high) {
                    // `scan_escape` checked that `\u` and a low surrogate follow.
                    let low = hex_unit(rest.get(2..).ok_or(Rejected)?)?;
                    rest = &rest[6..];
                    0x1_0000 + ((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
                } else {
                    u32::from(high)
                };
                char::from_u32(code).ok_or(Rejected)?
            }
            _ => return Err(Rejected),
        };
        out.push(decoded);
    }
    out.push_str(rest);
    Ok(())
}

fn hex_unit(text: &str) -> Result<u16, Rejected> {
    let digits = text.get(..4).ok_or(Rejected)?;
    u16::from_str_radix(digits, 16).map_err(|_| Rejected)
}

// === serde ===

impl<'de> Deserializer<'de> for &mut Parser<'de> {
    type Error = Rejected;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejected> {
        self.skip_whitespace();
        match self.peek().ok_or(Rejected)? {
            b'"' => self.visit_string(visitor),
            b'-' | b'0'..=b'9' => self.visit_number(visitor),
            b'n' => {
                self.expect_literal(b"null")?;
                visitor.visit_unit()
            }
            b't' => {
                self.expect_literal(b"true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.expect_literal(b"false")?;
                visitor.visit_bool(false)
            }
            b'[' => {
                self.index += 1;
                self.check_depth(1)?;
                self.depth += 1;
                let value = visitor.visit_seq(Elements { parser: &mut *self, first: true })?;
                self.skip_whitespace();
                self.expect(b']')?;
                self.depth -= 1;
                Ok(value)
            }
            b'{' => {
                self.index += 1;
                self.check_depth(1)?;
                self.depth += 1;
                let value = visitor.visit_map(Members { parser: &mut *self, first: true })?;
                self.skip_whitespace();
                self.expect(b'}')?;
                self.depth -= 1;
                Ok(value)
            }
            _ => Err(Rejected),
        }
    }

    /// Skips a value without visitor calls, but validates it as
    /// [`Deserializer::deserialize_any`] would.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejected> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    /// Reads an array, or skips any other value and visits a unit.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejected> {
        self.skip_whitespace();
        if self.peek() == Some(b'[') { self.deserialize_any(visitor) } else { self.deserialize_ignored_any(visitor) }
    }

    /// Reads an object, or skips any other value and visits a unit.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejected> {
        self.skip_whitespace();
        if self.peek() == Some(b'{') { self.deserialize_any(visitor) } else { self.deserialize_ignored_any(visitor) }
    }

    /// Validates a value and passes its JSON text to the visitor as a
    /// borrowed string when `name` is [`RAW_TEXT`]. Any other newtype is
    /// read as its content.
    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Rejected> {
        if name != RAW_TEXT {
            return self.deserialize_any(visitor);
        }
        self.skip_whitespace();
        let start = self.index;
        self.skip_value()?;
        visitor.visit_borrowed_str(self.text(start, self.index)?)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct tuple
        tuple_struct struct enum identifier
    }
}

/// The newtype name with which a seed requests the JSON text of a value
/// from [`Parser`] instead of its content, as serde_json's `RawValue` does.
pub(super) const RAW_TEXT: &str = "$odoogate::json_stream::RawText";

/// The items of an array being read.
struct Elements<'p, 'de> {
    parser: &'p mut Parser<'de>,
    first: bool,
}

impl<'de> SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Rejected;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Rejected> {
        self.parser.skip_whitespace();
        match self.parser.peek() {
            Some(b']') => return Ok(None),
            Some(b',') if !self.first => self.parser.index += 1,
            // A value must follow, and its deserializer rejects anything else.
            _ if self.first => {}
            _ => return Err(Rejected),
        }
        self.first = false;
        seed.deserialize(&mut *self.parser).map(Some)
    }
}

/// The members of an object being read.
struct Members<'p, 'de> {
    parser: &'p mut Parser<'de>,
    first: bool,
}

impl<'de> MapAccess<'de> for Members<'_, 'de> {
    type Error = Rejected;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Rejected> {
        self.parser.skip_whitespace();
        match self.parser.peek() {
            Some(b'}') => return Ok(None),
            Some(b',') if !self.first => {
                self.parser.index += 1;
                self.parser.skip_whitespace();
            }
            _ if self.first => {}
            _ => return Err(Rejected),
        }
        self.first = false;
        if self.parser.peek() != Some(b'"') {
            return Err(Rejected);
        }
        seed.deserialize(KeyDeserializer { parser: &mut *self.parser }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Rejected> {
        self.parser.skip_whitespace();
        self.parser.expect(b':')?;
        seed.deserialize(&mut *self.parser)
    }
}

/// Reads an object key, which is always a string.
struct KeyDeserializer<'p, 'de> {
    parser: &'p mut Parser<'de>,
}

impl<'de> Deserializer<'de> for KeyDeserializer<'_, 'de> {
    type Error = Rejected;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejected> {
        self.parser.visit_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Rejected> {
        self.parser.expect(b'"')?;
        self.parser.scan_string()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier
    }
}
