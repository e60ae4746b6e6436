//! Text helpers shared by the decoders, each the cheap equivalent of a
//! standard library call on the short, mostly ASCII text of request
//! headers and bodies.

/// Returns `bytes` as text when they are UTF-8, as `std::str::from_utf8`
/// does. The ASCII prefix is checked in 128-byte blocks with an OR that the
/// compiler vectorizes, and only the rest goes to simdutf8's SIMD validator.
/// On the decode bench's bodies that costs fewer instructions than
/// `from_utf8`, which spent 1.7 instructions per byte on text mixed with
/// accented letters (callgrind).
pub(crate) fn utf8(bytes: &[u8]) -> Option<&str> {
    let ascii = ascii_prefix_len(bytes);
    if ascii < bytes.len() {
        simdutf8::basic::from_utf8(bytes.get(ascii..)?).ok()?;
    }
    // SAFETY: `bytes[..ascii]` is ASCII and `bytes[ascii..]` is valid UTF-8.
    // No UTF-8 sequence contains an ASCII byte, so together they are valid.
    Some(unsafe { std::str::from_utf8_unchecked(bytes) })
}

/// Returns a length from which on `bytes` may hold non-ASCII bytes: the
/// start of the first 128-byte block that does, or the whole length.
fn ascii_prefix_len(bytes: &[u8]) -> usize {
    const BLOCK: usize = 128;
    // The folds have no early exit, so the compiler vectorizes them.
    let is_ascii = |block: &[u8]| block.iter().fold(0u8, |seen, &byte| seen | byte) < 0x80;
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut length = 0;
    for block in &mut blocks {
        if !is_ascii(block) {
            return length;
        }
        length += BLOCK;
    }
    if is_ascii(blocks.remainder()) { bytes.len() } else { length }
}

/// Returns `text` without leading and trailing whitespace, as `str::trim`
/// does. Header values are ASCII in practice, so it strips ASCII
/// whitespace bytewise and calls `str::trim`, which decodes characters,
/// only when either end is a byte that `str::trim` may still strip: a
/// non-ASCII byte or the vertical tab, which `trim_ascii` keeps.
pub(crate) fn trim(text: &str) -> &str {
    let trimmed = text.trim_ascii();
    let may_be_whitespace = |byte: Option<&u8>| byte.is_some_and(|&byte| !byte.is_ascii() || byte == b'\x0B');
    let bytes = trimmed.as_bytes();
    if may_be_whitespace(bytes.first()) || may_be_whitespace(bytes.last()) { trimmed.trim() } else { trimmed }
}

/// Splits `text` at each `separator`, as `str::split` with an ASCII `char`
/// does, searching with `memchr`. On the session cookies of the decode
/// bench's web captures, that took 2 instructions per body byte fewer than
/// a byte-by-byte scan (callgrind).
pub(crate) fn split_ascii(text: &str, separator: u8) -> impl Iterator<Item = &str> {
    debug_assert!(separator.is_ascii());
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match split_once_ascii(current, separator) {
            Some((piece, after)) => {
                rest = Some(after);
                Some(piece)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// Splits `text` at the first `separator`, as `str::split_once` with an
/// ASCII `char` does.
pub(crate) fn split_once_ascii(text: &str, separator: u8) -> Option<(&str, &str)> {
    let at = memchr::memchr(separator, text.as_bytes())?;
    // `separator` is ASCII, so both sides of it are character boundaries.
    Some((text.get(..at)?, text.get(at + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_matches_from_utf8() {
        let cases: [&[u8]; 7] =
            [b"", b"odoo19", b"caf\xc3\xa9", b"\xff", b"a\x80", b"0123456789abcdefghijklmnopqrstuvwxyz\xe2\x82", b"\x7f\x00"];
        for bytes in cases {
            assert_eq!(utf8(bytes), std::str::from_utf8(bytes).ok(), "{bytes:?}");
        }
        // Non-ASCII text in each 128-byte block, at its edges and in the remainder.
        for length in [127, 128, 129, 255, 256, 300] {
            for position in [0, 1, 126, 127, 128, 129, 200, length - 2] {
                for tail in [&b"\xc3\xa9"[..], b"\xc3", b"\xff", b"\xe2\x82\xac"] {
                    let mut bytes = vec![b'a'; length];
                    let position = position.min(length - 1);
                    let end = (position + tail.len()).min(length);
                    bytes[position..end].copy_from_slice(&tail[..end - position]);
                    assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok(), "{length} {position} {tail:?}");
                }
            }
        }
    }

    proptest::proptest! {
        /// Arbitrary bytes, and valid text with one byte changed, read as
        /// `from_utf8` reads them.
        #[test]
        fn utf8_agrees_on_any_bytes(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            text in "\\PC{0,300}",
            position in proptest::prelude::any::<usize>(),
            byte in proptest::prelude::any::<u8>(),
        ) {
            proptest::prop_assert_eq!(utf8(&bytes), std::str::from_utf8(&bytes).ok());
            let mut changed = text.into_bytes();
            if !changed.is_empty() {
                let index = position % changed.len();
                changed[index] = byte;
            }
            proptest::prop_assert_eq!(utf8(&changed), std::str::from_utf8(&changed).ok());
        }
    }

    #[test]
    fn trim_matches_str_trim() {
        let cases = [
            "",
            " \t",
            "  odoo19 \r\n",
            "\x0Bodoo19\x0B",
            " \x0B odoo19",
            "\u{a0}odoo19\u{3000}",
            " \u{2003} k3y \u{85}",
            "caf\u{e9}",
            "\u{e9}\u{a0}",
            "\x0C\x1Fkey\x1F",
        ];
        for text in cases {
            assert_eq!(trim(text), text.trim(), "{text:?}");
        }
    }

    #[test]
    fn split_ascii_matches_str_split() {
        for text in ["", ";", "a=b; session_id=c", ";;x;", "caf\u{e9};\u{e9}", "no separator"] {
            assert_eq!(split_ascii(text, b';').collect::<Vec<_>>(), text.split(';').collect::<Vec<_>>(), "{text:?}");
            assert_eq!(split_once_ascii(text, b';'), text.split_once(';'), "{text:?}");
        }
    }
}
