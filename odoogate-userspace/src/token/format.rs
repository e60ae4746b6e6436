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

/// Reads base62 digits into a big-endian number of `N` bytes, `N` at most
/// 32. The number is kept in 32-bit limbs and read five digits at a time
/// (62^5 < 2^30), so five digits cost one multiply per limb.
fn base62_decode<const N: usize>(digits: &str) -> Result<[u8; N], FormatError> {
    const MAX_BYTES: usize = 32;
    const GROUP_DIGITS: usize = 5;
    const { assert!(N <= MAX_BYTES, "base62_decode reads at most 32 bytes") };
    let mut storage = [0u32; MAX_BYTES / 4];
    let limbs = &mut storage[(MAX_BYTES - N) / 4..];
    for group in digits.as_bytes().chunks(GROUP_DIGITS) {
        let mut scale = 1u64;
        let mut carry = 0u64;
        for &digit in group {
            carry = carry * 62 + u64::from(digit_value(digit).ok_or(FormatError::InvalidCharacter)?);
            scale *= 62;
        }
        for limb in limbs.iter_mut().rev() {
            let value = u64::from(*limb) * scale + carry;
            *limb = value as u32;
            carry = value >> 32;
        }
        if carry != 0 {
            return Err(FormatError::OutOfRange);
        }
    }
    let mut bytes = [0u8; MAX_BYTES];
    for (chunk, limb) in bytes.chunks_exact_mut(4).zip(storage) {
        chunk.copy_from_slice(&limb.to_be_bytes());
    }
    // The limbs may hold a few bytes more than `N`; a number that needs
    // them does not fit.
    let (high, number) = bytes.split_at(MAX_BYTES - N);
    if high.iter().any(|&byte| byte != 0) {
        return Err(FormatError::OutOfRange);
    }
    Ok(number.try_into().expect("the split leaves N bytes"))
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

    /// Decodes base62 one byte at a time, as the first version did.
    fn decode_bytewise<const N: usize>(digits: &str) -> Option<[u8; N]> {
        let mut number = [0u8; N];
        for digit in digits.bytes() {
            let mut carry = u32::from(digit_value(digit)?);
            for byte in number.iter_mut().rev() {
                let value = u32::from(*byte) * 62 + carry;
                *byte = value as u8;
                carry = value >> 8;
            }
            if carry != 0 {
                return None;
            }
        }
        Some(number)
    }

    #[test]
    fn base62_limbs_match_bytewise() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..2000 {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let random: Vec<u8> = (0..RANDOM_DIGITS).map(|i| ALPHABET[((state >> (i % 58)) as usize + round) % 62]).collect();
            let random = std::str::from_utf8(&random).unwrap();
            assert_eq!(base62_decode::<RANDOM_BYTES>(random).ok(), decode_bytewise::<RANDOM_BYTES>(random), "{random}");
            let checksum = &random[..CHECKSUM_DIGITS];
            assert_eq!(base62_decode::<4>(checksum).ok(), decode_bytewise::<4>(checksum), "{checksum}");
            let short = &random[..4];
            assert_eq!(base62_decode::<2>(short).ok(), decode_bytewise::<2>(short), "{short}");
        }
        let largest = "z".repeat(RANDOM_DIGITS);
        assert_eq!(base62_decode::<RANDOM_BYTES>(&largest).ok(), decode_bytewise::<RANDOM_BYTES>(&largest));
    }

    /// Decodes base62 as [`decode_bytewise`] does, with the errors the
    /// digit-at-a-time version returned.
    fn decode_digitwise<const N: usize>(digits: &str) -> Result<[u8; N], FormatError> {
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

    #[test]
    fn base62_bounds_at_every_length() {
        // The largest value of N bytes decodes, and one more is out of
        // range, whatever the digit count (leading zeros included) and
        // however it falls into groups of five.
        fn check<const N: usize>() {
            let largest = [0xff; N];
            let mut one_more = vec![1u8];
            one_more.extend_from_slice(&[0; N]);
            let width = base62_encode(&largest, 64).trim_start_matches('0').len();
            for digits in width..=width + 11 {
                let text = base62_encode(&largest, digits);
                assert_eq!(base62_decode::<N>(&text), Ok(largest), "{N} bytes as {text}");
                let text = base62_encode(&one_more, digits + 1);
                assert_eq!(base62_decode::<N>(&text), Err(FormatError::OutOfRange), "{N} bytes as {text}");
            }
        }
        check::<1>();
        check::<2>();
        check::<3>();
        check::<4>();
        check::<5>();
        check::<17>();
        check::<RANDOM_BYTES>();
    }

    #[test]
    fn base62_errors_match_digitwise() {
        // Texts of letters and digits, as `parse` passes them, give the same
        // error as the digit-at-a-time decoder.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let length = (state % 12) as usize;
            let text: String = (0..length).map(|i| char::from(ALPHABET[((state >> (i * 5)) % 62) as usize])).collect();
            assert_eq!(base62_decode::<4>(&text), decode_digitwise::<4>(&text), "{text}");
            assert_eq!(base62_decode::<2>(&text), decode_digitwise::<2>(&text), "{text}");
        }
        assert_eq!(base62_decode::<4>(""), Ok([0; 4]));
        assert_eq!(base62_decode::<4>("0000-"), Err(FormatError::InvalidCharacter));
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
