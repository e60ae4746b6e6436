//! Finding the bytes that end a run of plain JSON string content: a quote,
//! a backslash or a control character. The request decoders look for them
//! to find a string's end, and the audit writer and the XML-RPC context to
//! find what to escape.

use std::fmt::Write as _;

/// Returns the index of the first byte at or after `from` that ends a run
/// of plain string content: a quote, a backslash or a control character.
// Inlined, because the JSON parser calls it for every string, most of
// them keys shorter than one 16-byte chunk.
#[inline]
pub fn find_string_special(bytes: &[u8], from: usize) -> Option<usize> {
    let mut index = from;
    while let Some(chunk) = bytes.get(index..index + 16) {
        let mask = special_mask(chunk.try_into().ok()?);
        if mask != 0 {
            return Some(index + mask.trailing_zeros() as usize);
        }
        index += 16;
    }
    let tail = bytes.get(index..)?;
    tail.iter().position(|&byte| is_string_special(byte)).map(|offset| index + offset)
}

/// Appends `text` to `out` as a JSON string, quoted and escaped as
/// serde_json escapes it.
pub fn push_string(out: &mut String, text: &str) {
    out.push('"');
    push_escaped(out, text);
    out.push('"');
}

/// Appends `text` to `out` escaped for a JSON string, as serde_json
/// escapes it: `"`, `\` and the control characters below U+0020, nothing
/// else. The quotes around it are the caller's.
pub fn push_escaped(out: &mut String, text: &str) {
    let mut rest = text;
    while let Some(at) = find_string_special(rest.as_bytes(), 0) {
        out.push_str(&rest[..at]);
        match rest.as_bytes()[at] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            control => {
                let _ = write!(out, "\\u{control:04x}");
            }
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

fn is_string_special(byte: u8) -> bool {
    byte == b'"' || byte == b'\\' || byte < 0x20
}

/// Returns a mask with bit `n` set when [`is_string_special`] holds for
/// `chunk[n]`, computed with SSE2 (part of every x86-64 CPU).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn special_mask(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x, _mm_set1_epi8};

    let low = i64::from_le_bytes(chunk[..8].try_into().unwrap_or_default());
    let high = i64::from_le_bytes(chunk[8..].try_into().unwrap_or_default());
    // SAFETY: these intrinsics need only SSE2, which the `cfg` above
    // requires of the target, and they read no memory.
    let mask = unsafe {
        let bytes = _mm_set_epi64x(high, low);
        let quotes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'"' as i8));
        let backslashes = _mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\\' as i8));
        // A byte is below 0x20 when its unsigned maximum with 0x1f is 0x1f.
        let controls = _mm_cmpeq_epi8(_mm_max_epu8(bytes, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quotes, backslashes), controls))
    };
    mask as u32
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
fn special_mask(chunk: &[u8; 16]) -> u32 {
    chunk.iter().enumerate().filter(|(_, byte)| is_string_special(**byte)).fold(0, |mask, (index, _)| mask | 1 << index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_special_byte() {
        for special in [b'"', b'\\', 0x00, 0x0a, 0x1f] {
            for at in [0, 7, 15, 16, 31, 40] {
                let mut text = vec![b'a'; 48];
                text[at] = special;
                assert_eq!(find_string_special(&text, 0), Some(at), "byte {special:#04x} at {at}");
            }
        }
    }

    #[test]
    fn plain_bytes_are_not_special() {
        let text: Vec<u8> = (0x20..=0xff).filter(|byte| *byte != b'"' && *byte != b'\\').collect();
        assert_eq!(find_string_special(&text, 0), None);
    }

    #[test]
    fn search_starts_at_from() {
        assert_eq!(find_string_special(b"\"abc\"", 1), Some(4));
        assert_eq!(find_string_special(b"abc", 3), None);
    }
}
