//! The text form of a scoped token.
//!
//! A token is `odg_`, then the 32 random bytes in base62 (43 characters),
//! then the CRC32 of those bytes in base62 (6 characters): 53 characters in
//! all, such as `odg_0x9F…Qa7c2Lb`. The fixed prefix lets secret scanners
//! spot a leaked token, and the checksum rejects a mistyped one before any
//! lookup. The checksum is not a secret and adds no strength: the 256
//! random bits are the whole secret.

use crate::secret::Secret;

/// The prefix of every token.
pub const PREFIX: &str = "odg_";

/// Random bytes in a token.
pub const RANDOM_BYTES: usize = 32;

/// Base62 digits of the random part: the fewest that hold 256 bits.
const RANDOM_DIGITS: usize = 43;

/// Base62 digits of the checksum: the fewest that hold 32 bits.
const CHECKSUM_DIGITS: usize = 6;

/// Length of a token in bytes.
pub const TOKEN_LEN: usize = PREFIX.len() + RANDOM_DIGITS + CHECKSUM_DIGITS;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a text is not a well-formed token. No variant carries the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("a token starts with `{PREFIX}`")]
    MissingPrefix,
    #[error("a token is {TOKEN_LEN} characters long, found {0}")]
    Length(usize),
    #[error("a token contains only ASCII letters and digits after its prefix")]
    InvalidCharacter,
    #[error("the random part of the token is out of range")]
    OutOfRange,
    #[error("the token's checksum does not match, so it was mistyped or cut")]
    ChecksumMismatch,
}

/// Tells whether `text` claims to be a token, by its prefix alone.
pub fn has_prefix(text: &str) -> bool {
    text.starts_with(PREFIX)
}

/// Generates a new token from the operating system's random source.
pub fn generate() -> Result<Secret, getrandom::Error> {
    let mut random = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut random)?;
    Ok(encode(&random))
}

/// Encodes random bytes as a token.
pub fn encode(random: &[u8; RANDOM_BYTES]) -> Secret {
    let mut text = String::with_capacity(TOKEN_LEN);
    text.push_str(PREFIX);
    text.push_str(&base62_encode(random, RANDOM_DIGITS));
    text.push_str(&base62_encode(&crc32fast::hash(random).to_be_bytes(), CHECKSUM_DIGITS));
    Secret::new(text)
}

/// Checks the form of a token and returns its random bytes.
pub fn parse(text: &str) -> Result<[u8; RANDOM_BYTES], FormatError> {
    let body = text.strip_prefix(PREFIX).ok_or(FormatError::MissingPrefix)?;
    if text.len() != TOKEN_LEN {
        return Err(FormatError::Length(text.chars().count()));
    }
    if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(FormatError::InvalidCharacter);
    }

    let (random_digits, checksum_digits) = body.split_at(RANDOM_DIGITS);
    let random: [u8; RANDOM_BYTES] = base62_decode(random_digits)?;
    let checksum: [u8; 4] = base62_decode(checksum_digits)?;
    if u32::from_be_bytes(checksum) != crc32fast::hash(&random) {
        return Err(FormatError::ChecksumMismatch);
    }
    Ok(random)
}

/// Writes a big-endian number in base62, left-padded with `0` to `digits`.
/// The caller picks `digits` large enough for every value of `bytes`.
fn base62_encode(bytes: &[u8], digits: usize) -> String {
    let mut number = bytes.to_vec();
    let mut out = vec![b'0'; digits];
    for slot in out.iter_mut().rev() {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            remainder = value % 62;
        }
        *slot = ALPHABET[remainder as usize];
    }
    debug_assert!(number.iter().all(|&b| b == 0), "base62 width too small");
    String::from_utf8(out).expect("the base62 alphabet is ASCII")
}

/// Reads base62 digits into a big-endian number of `N` bytes.
fn base62_decode<const N: usize>(digits: &str) -> Result<[u8; N], FormatError> {
    let mut number = [0u8; N];
    for digit in digits.bytes() {
        let mut carry = u32::from(digit_value(digit).ok_or(FormatError::InvalidCharacter)?);
        for byte in number.iter_mut().rev() {
            let value = u32::from(*byte) * 62 + carry;
            *byte = value as u8;
            carry = value >> 8;
        }
        if carry != 0 {
            return Err(FormatError::OutOfRange);
        }
    }
    Ok(number)
}

fn digit_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'Z' => Some(digit - b'A' + 10),
        b'a'..=b'z' => Some(digit - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> [u8; RANDOM_BYTES] {
        std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11))
    }

    #[test]
    fn encode_then_parse_round_trips() {
        for random in [[0u8; RANDOM_BYTES], [0xff; RANDOM_BYTES], sample()] {
            let token = encode(&random);
            assert_eq!(token.expose().len(), TOKEN_LEN);
            assert!(has_prefix(token.expose()));
            assert_eq!(parse(token.expose()), Ok(random));
        }
    }

    #[test]
    fn zero_bytes_encode_as_zero_digits() {
        let token = encode(&[0u8; RANDOM_BYTES]);
        assert_eq!(&token.expose()[PREFIX.len()..PREFIX.len() + RANDOM_DIGITS], "0".repeat(RANDOM_DIGITS));
    }

    #[test]
    fn base62_matches_known_value() {
        // 62^2 + 2 * 62 + 3 = 3971 = 0x0F83.
        assert_eq!(base62_encode(&[0x0f, 0x83], 4), "0123");
        assert_eq!(base62_decode::<2>("0123"), Ok([0x0f, 0x83]));
    }

    #[test]
    fn generated_tokens_parse_and_differ() {
        let first = generate().unwrap();
        let second = generate().unwrap();
        assert!(parse(first.expose()).is_ok());
        assert_ne!(first, second);
    }

    #[test]
    fn single_typo_fails_checksum() {
        let token = encode(&sample());
        let mut text = token.expose().to_owned().into_bytes();
        let index = PREFIX.len() + 10;
        text[index] = if text[index] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(text).unwrap();
        assert_eq!(parse(&typo), Err(FormatError::ChecksumMismatch));
    }

    #[test]
    fn bad_shapes_are_rejected() {
        let token = encode(&sample());
        let text = token.expose();
        assert_eq!(parse(&text[PREFIX.len()..]), Err(FormatError::MissingPrefix));
        assert_eq!(parse(&text[..TOKEN_LEN - 1]), Err(FormatError::Length(TOKEN_LEN - 1)));
        let with_dash = format!("{}-{}", &text[..10], &text[11..]);
        assert_eq!(parse(&with_dash), Err(FormatError::InvalidCharacter));
        let too_large = format!("{PREFIX}{}{}", "z".repeat(RANDOM_DIGITS), "0".repeat(CHECKSUM_DIGITS));
        assert_eq!(parse(&too_large), Err(FormatError::OutOfRange));
    }

    #[test]
    fn errors_never_echo_token() {
        let token = encode(&sample());
        let typo = format!("{}x", &token.expose()[..TOKEN_LEN - 1]);
        let message = parse(&typo).unwrap_err().to_string();
        assert!(!message.contains(&token.expose()[PREFIX.len()..PREFIX.len() + 8]));
    }
}
