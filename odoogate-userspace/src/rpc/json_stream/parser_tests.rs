//! The one-pass parser against serde_json on generated JSON texts and on
//! byte mutations of them: the parser must accept exactly the texts the
//! tree decoder reads (serde_json within the depth limit), and read the
//! same `serde_json::Value` from them.

use proptest::prelude::*;
use serde::Deserialize;
use serde::de::DeserializeSeed;
use serde_json::Value as Json;

use super::parser::Parser;
use super::read::{ObjectTextSeed, Skip, TextOrJson, TextOrJsonSeed, TextSeed};
use crate::rpc::jsonrpc;

const MAX_DEPTH: usize = 16;

/// Returns what the tree decoder reads from `text`: `None` when it rejects
/// the text, for its syntax or its depth.
fn tree_value(text: &[u8]) -> Option<Json> {
    jsonrpc::check_depth(text, MAX_DEPTH).ok()?;
    serde_json::from_slice(text).ok()
}

fn parsed_value(text: impl AsRef<[u8]>) -> Option<Json> {
    let mut parser = Parser::new(text.as_ref(), MAX_DEPTH).ok()?;
    let value = Json::deserialize(&mut parser).ok()?;
    parser.end().ok()?;
    Some(value)
}

/// Reads `text` with [`TextOrJsonSeed`], as the service parameters are read.
fn text_or_json_value(text: &[u8]) -> Option<Json> {
    let mut parser = Parser::new(text, MAX_DEPTH).ok()?;
    let value = TextOrJsonSeed.deserialize(&mut parser).ok()?;
    parser.end().ok()?;
    Some(match value {
        TextOrJson::Text(text) => Json::String(text.into_owned()),
        TextOrJson::Json(json) => json,
    })
}

/// Reads `text` with [`TextSeed`], as the service and method names are read.
fn text_value(text: &[u8]) -> Option<Option<String>> {
    let mut parser = Parser::new(text, MAX_DEPTH).ok()?;
    let value = TextSeed.deserialize(&mut parser).ok()?;
    parser.end().ok()?;
    Some(value.map(|text| text.into_owned()))
}

fn skipped(text: impl AsRef<[u8]>) -> bool {
    let Ok(mut parser) = Parser::new(text.as_ref(), MAX_DEPTH) else {
        return false;
    };
    Skip::deserialize(&mut parser).is_ok() && parser.end().is_ok()
}

/// Checks that the parser, reading and skipping, agrees with serde_json.
fn assert_agrees(text: impl AsRef<[u8]>) {
    let text = text.as_ref();
    let expected = tree_value(text);
    let printable = String::from_utf8_lossy(text);
    assert_eq!(parsed_value(text), expected, "value of {printable:?}");
    assert_eq!(skipped(text), expected.is_some(), "skipping {printable:?}");
    assert_eq!(text_or_json_value(text), expected, "text or value of {printable:?}");
    let expected_text = expected.as_ref().map(|value| value.as_str().map(str::to_owned));
    assert_eq!(text_value(text), expected_text, "text of {printable:?}");
}

/// String contents with every kind of escape, valid or not.
const STRING_PARTS: &[&str] = &[
    "a",
    "Söhne",
    "🚀",
    " ",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b",
    "\\f",
    "\\n",
    "\\r",
    "\\t",
    "\\u00e9",
    "\\u00E9",
    "\\u0000",
    "\\ud83d\\ude80",
    "\\uD83D\\uDE80",
    "\\ud800",
    "\\udc00",
    "\\ud800\\u0041",
    "\\ud800x",
    "\\ud800\\n",
    "\\ud800\\ud800",
    "\\x",
    "\\u12",
    "\\u12g4",
    "\t",
    "\u{1f}",
    "\u{7f}",
    "long text of about forty bytes to cross words",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "7",
    "-3",
    "01",
    "-01",
    "00",
    "1.",
    ".5",
    "1.5",
    "-0.0",
    "1e3",
    "1E+3",
    "1e-3",
    "1e",
    "1e+",
    "-",
    "+1",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678",
    "1234567890123456789",
    "1e308",
    "1.7976931348623157e308",
    "1.8e308",
    "1e309",
    "-1e400",
    "1e-400",
    "0e999999999999",
    "1e999999999999",
    "0.000000000000000000000000000000001",
    "NaN",
    "Infinity",
    "-Infinity",
];

fn json_string() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(STRING_PARTS), 0..6).prop_map(|parts| format!("\"{}\"", parts.concat()))
}

fn long_integer() -> impl Strategy<Value = String> {
    (1usize..420, proptest::bool::ANY).prop_map(|(digits, fraction)| {
        let mut text = "9".repeat(digits);
        if fraction {
            text.push_str(".5");
        }
        text
    })
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(NUMBERS).prop_map(str::to_owned),
        long_integer(),
        any::<i64>().prop_map(|value| value.to_string()),
        any::<f64>().prop_map(|value| value.to_string()),
        json_string(),
        proptest::sample::select(&["true", "false", "null", "tru", "nul", "True"][..]).prop_map(str::to_owned),
    ]
}

const WHITESPACE: &[&str] = &["", "", " ", "\n", "\t", "\r\n  ", "\u{b}", "\u{a0}"];

fn space() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(WHITESPACE)
}

/// Generates JSON texts, mostly valid, with whitespace between tokens.
fn json_text() -> impl Strategy<Value = String> {
    scalar().prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec((space(), inner.clone(), space()), 0..6).prop_map(|items| {
                let items: Vec<String> = items.into_iter().map(|(before, item, after)| format!("{before}{item}{after}")).collect();
                format!("[{}]", items.join(","))
            }),
            proptest::collection::vec((json_string(), space(), inner), 0..6).prop_map(|members| {
                let members: Vec<String> = members.into_iter().map(|(key, gap, value)| format!("{key}{gap}:{gap}{value}")).collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    })
}

/// Bytes that change a JSON text's structure when inserted or substituted.
const MUTATION_BYTES: &[u8] = b"{}[]\",:\\ -+.0123456789eEtfnu\x00\x1f\xff";

/// Applies byte edits to `text`, each an insertion, a deletion or a
/// substitution at a position given as a fraction of the length.
fn mutate(text: &str, edits: &[(u8, u16, u8)]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for &(kind, position, byte) in edits {
        let index = usize::from(position) * bytes.len() / usize::from(u16::MAX).max(1);
        let byte = MUTATION_BYTES[usize::from(byte) % MUTATION_BYTES.len()];
        match kind % 3 {
            0 => bytes.insert(index.min(bytes.len()), byte),
            1 if index < bytes.len() => {
                bytes.remove(index);
            }
            _ if index < bytes.len() => bytes[index] = byte,
            _ => bytes.push(byte),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn parser_matches_serde_json(text in json_text()) {
        assert_agrees(&text);
    }

    #[test]
    fn parser_matches_serde_json_on_mutations(
        text in json_text(),
        edits in proptest::collection::vec((any::<u8>(), any::<u16>(), any::<u8>()), 1..4),
    ) {
        assert_agrees(mutate(&text, &edits));
    }
}

#[test]
fn scalars_match_serde_json() {
    for number in NUMBERS {
        assert_agrees(*number);
        assert_agrees(format!("[{number}]"));
        assert_agrees(format!("{{\"n\": {number} }}"));
    }
    for part in STRING_PARTS {
        assert_agrees(format!("\"{part}\""));
        assert_agrees(format!("{{\"{part}\": 1}}"));
    }
}

#[test]
fn python_only_values_are_rejected() {
    // Python's json.loads accepts these. serde_json, and so the tree
    // decoder, rejects them, and the parser must too.
    for text in ["NaN", "[Infinity]", "{\"a\": -Infinity}", "\"\\ud800\"", "[\"\\udc00\"]", "{\"\\ud800\": 1}"] {
        assert_eq!(parsed_value(text), None, "{text}");
        assert!(!skipped(text), "{text}");
    }
}

#[test]
fn syntax_errors_are_rejected() {
    for text in ["", " ", "[1,]", "{\"a\":1,}", "[,1]", "{,}", "{\"a\" 1}", "{1:1}", "[1 2]", "[1]]", "{\"a\":1}}", "[\"a]", "\"a", "[1] x"]
    {
        assert_agrees(text);
        assert_eq!(parsed_value(text), None, "{text}");
    }
}

#[test]
fn invalid_utf8_is_rejected() {
    for text in [&b"\"\xff\""[..], b"\"S\xc3\"", b"\"\xc3\xb6\xc3\"", b"\"\xed\xa0\x80\"", b"[1, \xc3\xb6]", b"{\"\xf0\x9f\x9a\": 1}"] {
        assert_agrees(text);
        assert_eq!(parsed_value(text), None, "{text:?}");
    }
    assert_agrees("\"S\u{f6}hne \u{1f680} \u{fc}n\u{ef}c\u{f6}d\u{e9}\"");
    assert!(skipped("[\"\u{1f680}\u{1f680}\", \"\u{e9}\"]"));
}

#[test]
fn nesting_is_limited() {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    assert!(parsed_value(nested(MAX_DEPTH)).is_some());
    assert!(skipped(nested(MAX_DEPTH)));
    assert_eq!(parsed_value(nested(MAX_DEPTH + 1)), None);
    assert!(!skipped(nested(MAX_DEPTH + 1)));

    // serde_json stops at 128 levels whatever the limit asked for.
    let (deepest, too_deep) = (nested(127), nested(128));
    assert!(Json::deserialize(&mut Parser::new(deepest.as_bytes(), 1000).unwrap()).is_ok());
    assert!(Json::deserialize(&mut Parser::new(too_deep.as_bytes(), 1000).unwrap()).is_err());
    assert!(Skip::deserialize(&mut Parser::new(too_deep.as_bytes(), 1000).unwrap()).is_err());
    assert!(serde_json::from_str::<Json>(&nested(128)).is_err());
    assert!(serde_json::from_str::<Json>(&nested(127)).is_ok());
}

#[test]
fn strings_longer_than_a_word_are_scanned() {
    for length in 0..40 {
        let plain = "x".repeat(length);
        assert_agrees(format!("\"{plain}\""));
        assert_agrees(format!("\"{plain}\u{1}\""));
        assert_agrees(format!("\"{plain}\\n{plain}\""));
        assert_agrees(format!("[\"{plain}\"]"));
    }
}

#[test]
fn one_digit_numbers_match_serde_json() {
    // A digit is a whole number unless a digit, `.`, `e` or `E` follows.
    for digit in '0'..='9' {
        for after in ["", " ", ",", "]", "}", "0", "5", ".", ".5", "e", "e1", "E+2", "x", "-"] {
            let number = format!("{digit}{after}");
            assert_agrees(&number);
            assert_agrees(format!("[{number}]"));
            assert_agrees(format!("[{number},1]"));
            assert_agrees(format!("{{\"n\":{number}}}"));
            assert_agrees(format!("[[{number},0,[{number}]]]"));
        }
    }
}

/// Reads `text` with [`ObjectTextSeed`], as the context is read, and parses
/// the text it returns with serde_json.
fn object_text_value(text: &[u8]) -> Option<Option<Json>> {
    let mut parser = Parser::new(text, MAX_DEPTH).ok()?;
    let value = ObjectTextSeed.deserialize(&mut parser).ok()?;
    parser.end().ok()?;
    Some(value.map(|text| serde_json::from_str(text).expect("the parser returns text serde_json reads")))
}

#[test]
fn object_text_matches_serde_json() {
    let texts = [
        r#"{"a":1}"#,
        r#" { "a" : [ 1 , { } ] , "b" : "\u00e9\n" } "#,
        r#"{"a":1,"a":2}"#,
        r#"{"big":18446744073709551616,"neg":-0,"f":1.5e3}"#,
        r#"{"Söhne":"🚀"}"#,
        r#"{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{}}}}}}}}}}}}}}}}"#,
        r#"{"a":[1,2,]}"#,
        r#"{"a":NaN}"#,
        r#"{"a":"\ud800"}"#,
        "[1]",
        "\"x\"",
        "null",
        "7",
    ];
    for text in texts {
        let expected = tree_value(text.as_bytes());
        let read = object_text_value(text.as_bytes());
        assert_eq!(read.is_some(), expected.is_some(), "{text}");
        if let (Some(read), Some(expected)) = (read, expected) {
            let object = expected.is_object().then_some(expected);
            assert_eq!(read, object, "{text}");
        }
    }
}
