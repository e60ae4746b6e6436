//! XML-RPC values, and one read-only view over XML-RPC and JSON values.
//!
//! [`Value`] borrows its text from the request body where it can, so
//! decoding a call copies only strings that contained entity references or
//! CDATA sections. [`ArgValue`] lets the argument extraction in
//! [`super::args`] and [`super::service`] run unchanged on XML-RPC values and
//! on `serde_json` values.

use std::borrow::Cow;

use super::call::Context;
use crate::json_text::push_string;

/// One XML-RPC value, as Python's `xmlrpc.client` unmarshals it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// `int`, `i1`, `i2`, `i4`, `i8` or `biginteger` within the `i64` range.
    Int(i64),
    /// An integer outside the `i64` range, as normalized decimal digits with
    /// an optional leading `-`. Python reads any size, so Odoo accepts it.
    BigInt(String),
    Bool(bool),
    /// `double` or `float`.
    Double(f64),
    /// `bigdecimal`, kept as its text because Python reads it as a `Decimal`.
    BigDecimal(Cow<'a, str>),
    /// `string`, `name`, or text directly inside `<value>`.
    String(Cow<'a, str>),
    /// `dateTime.iso8601`, as sent.
    DateTime(Cow<'a, str>),
    /// `base64`, as the encoded text.
    Base64(Cow<'a, str>),
    Nil,
    Array(Vec<Value<'a>>),
    /// Members in wire order. A key sent twice keeps both entries, and
    /// lookups use the last one, as Python's `dict` construction does.
    Struct(Vec<(Cow<'a, str>, Value<'a>)>),
}

// === impl Value ===

impl Value<'_> {
    /// Returns the member `key` of a struct: the last one when it repeats.
    pub fn member(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Struct(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Appends the value as JSON text that serde_json reads back as the
    /// value [`ArgValue::to_json`] builds. A struct's repeated key is
    /// written twice, and serde_json keeps the last value at the first
    /// key's place, as `to_json` does.
    pub fn push_json(&self, out: &mut String) {
        match self {
            Self::Int(value) => out.push_str(itoa::Buffer::new().format(*value)),
            Self::BigInt(digits) => match digits.parse::<u64>() {
                Ok(value) => out.push_str(itoa::Buffer::new().format(value)),
                Err(_) => push_string(out, digits),
            },
            Self::Bool(value) => out.push_str(if *value { "true" } else { "false" }),
            Self::Double(value) => match serde_json::Number::from_f64(*value) {
                Some(number) => out.push_str(&number.to_string()),
                None => out.push_str("null"),
            },
            Self::BigDecimal(text) | Self::String(text) | Self::DateTime(text) | Self::Base64(text) => push_string(out, text),
            Self::Nil => out.push_str("null"),
            Self::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    item.push_json(out);
                }
                out.push(']');
            }
            Self::Struct(members) => {
                out.push('{');
                for (index, (key, value)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    push_string(out, key);
                    out.push(':');
                    value.push_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// A read-only view of a decoded argument, implemented for XML-RPC
/// [`Value`]s and for [`serde_json::Value`].
pub trait ArgValue: Sized {
    /// Returns the text of a string value.
    fn as_text(&self) -> Option<&str>;

    /// Returns an integer value that fits in `i64`. Booleans and floats are
    /// not integers here, even where Python would compare them equal.
    fn as_int(&self) -> Option<i64>;

    /// Returns the value of a boolean.
    fn as_bool(&self) -> Option<bool>;

    /// Returns the value of a floating-point number (not of an integer).
    fn as_float(&self) -> Option<f64>;

    /// Returns the items of a list value.
    fn as_list(&self) -> Option<&[Self]>;

    /// Returns the members of a map value, or `None` when the value is not a
    /// map. XML-RPC structs keep wire order and repeated keys. JSON objects
    /// come in key order, because `serde_json` stores them sorted.
    fn entries(&self) -> Option<Vec<(&str, &Self)>>;

    /// Returns the member `key` of a map value.
    fn get(&self, key: &str) -> Option<&Self>;

    /// Tells whether the value is `False`, `None` or `null`, which Odoo's
    /// optional arguments treat as absent.
    fn is_false_or_null(&self) -> bool;

    /// Converts the value to JSON, for the context of a call.
    fn to_json(&self) -> serde_json::Value;

    /// Returns the value as the context of a call.
    fn to_context(&self) -> Context {
        Context::Json(self.to_json())
    }
}

impl ArgValue for Value<'_> {
    fn as_text(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(value) => Some(*value),
            _ => None,
        }
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(value) => Some(*value),
            _ => None,
        }
    }

    fn as_float(&self) -> Option<f64> {
        match self {
            Self::Double(value) => Some(*value),
            _ => None,
        }
    }

    fn as_list(&self) -> Option<&[Self]> {
        match self {
            Self::Array(items) => Some(items),
            _ => None,
        }
    }

    fn entries(&self) -> Option<Vec<(&str, &Self)>> {
        match self {
            Self::Struct(members) => Some(members.iter().map(|(k, v)| (k.as_ref(), v)).collect()),
            _ => None,
        }
    }

    fn get(&self, key: &str) -> Option<&Self> {
        self.member(key)
    }

    fn is_false_or_null(&self) -> bool {
        matches!(self, Self::Nil | Self::Bool(false))
    }

    /// Writes the context as JSON text instead of building a
    /// `serde_json` map, which took about 1,700 instructions and six
    /// allocations per XML-RPC call in a callgrind profile. Only the full
    /// token rewrite reads a context, and it parses the text then.
    fn to_context(&self) -> Context {
        let mut text = String::with_capacity(128);
        self.push_json(&mut text);
        Context::Text(text.into_boxed_str())
    }

    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as Json;
        match self {
            Self::Int(value) => Json::from(*value),
            Self::BigInt(digits) => digits.parse::<u64>().map(Json::from).unwrap_or_else(|_| Json::String(digits.clone())),
            Self::Bool(value) => Json::Bool(*value),
            // JSON has no NaN or infinity, so those become null.
            Self::Double(value) => serde_json::Number::from_f64(*value).map_or(Json::Null, Json::Number),
            Self::BigDecimal(text) | Self::String(text) | Self::DateTime(text) | Self::Base64(text) => {
                Json::String(text.to_string())
            }
            Self::Nil => Json::Null,
            Self::Array(items) => Json::Array(items.iter().map(ArgValue::to_json).collect()),
            Self::Struct(members) => {
                Json::Object(members.iter().map(|(k, v)| (k.to_string(), v.to_json())).collect())
            }
        }
    }
}

impl ArgValue for serde_json::Value {
    fn as_text(&self) -> Option<&str> {
        self.as_str()
    }

    fn as_int(&self) -> Option<i64> {
        self.as_i64()
    }

    fn as_bool(&self) -> Option<bool> {
        self.as_bool()
    }

    fn as_float(&self) -> Option<f64> {
        self.as_number().filter(|number| number.is_f64()).and_then(serde_json::Number::as_f64)
    }

    fn as_list(&self) -> Option<&[Self]> {
        self.as_array().map(Vec::as_slice)
    }

    fn entries(&self) -> Option<Vec<(&str, &Self)>> {
        self.as_object().map(|map| map.iter().map(|(k, v)| (k.as_str(), v)).collect())
    }

    fn get(&self, key: &str) -> Option<&Self> {
        self.as_object().and_then(|map| map.get(key))
    }

    fn is_false_or_null(&self) -> bool {
        matches!(self, Self::Null | Self::Bool(false))
    }

    fn to_json(&self) -> serde_json::Value {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_member_lookup_uses_last_repeat() {
        let value = Value::Struct(vec![
            (Cow::Borrowed("model"), Value::String(Cow::Borrowed("res.partner"))),
            (Cow::Borrowed("model"), Value::String(Cow::Borrowed("res.users"))),
        ]);
        assert_eq!(value.get("model").and_then(ArgValue::as_text), Some("res.users"));
        assert_eq!(value.entries().map(|e| e.len()), Some(2));
    }

    /// The context text of a value reads back, with serde_json, as the
    /// value `to_json` builds: every type, escapes, numbers at the edges
    /// of their ranges, nesting and a repeated key.
    #[test]
    fn context_text_reads_back_as_json() {
        let text = |text: &'static str| Value::String(Cow::Borrowed(text));
        let values = [
            Value::Int(i64::MIN),
            Value::Int(i64::MAX),
            Value::BigInt("-9223372036854775809".to_owned()),
            Value::BigInt("18446744073709551615".to_owned()),
            Value::BigInt("18446744073709551616".to_owned()),
            Value::Bool(true),
            Value::Double(f64::NAN),
            Value::Double(f64::NEG_INFINITY),
            Value::Double(-0.0),
            Value::Double(1.0),
            Value::Double(1e300),
            Value::Double(5e-324),
            Value::Double(0.1),
            Value::BigDecimal(Cow::Borrowed("1.10")),
            Value::DateTime(Cow::Borrowed("20200101T12:00:00")),
            Value::Base64(Cow::Borrowed("aGk=")),
            Value::Nil,
            text("quote \" backslash \\ controls \u{0}\u{1f}\t\r\n\u{8}\u{c} delete \u{7f} é \u{2028} 😀"),
            Value::Array(vec![]),
            Value::Struct(vec![]),
        ];
        let context = Value::Struct(vec![
            (Cow::Borrowed("lang"), text("fr_BE")),
            (Cow::Borrowed("tz"), text("first")),
            (Cow::Borrowed("all"), Value::Array(values.to_vec())),
            (Cow::Borrowed("nested"), Value::Struct(vec![(Cow::Borrowed("a\"b"), Value::Array(vec![Value::Struct(vec![])]))])),
            (Cow::Borrowed("tz"), text("last")),
        ]);
        for value in values.iter().chain([&context]) {
            let mut written = String::new();
            value.push_json(&mut written);
            let read: serde_json::Value = serde_json::from_str(&written).unwrap_or_else(|error| panic!("{written}: {error}"));
            assert_eq!(read, value.to_json(), "{written}");
        }

        let Context::Text(written) = context.to_context() else {
            panic!("an XML-RPC context is kept as text");
        };
        let read: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(read["tz"], "last");
        assert_eq!(read.as_object().unwrap().keys().collect::<Vec<_>>(), ["lang", "tz", "all", "nested"]);
        assert_eq!(context.to_context(), Context::Json(context.to_json()));
    }

    /// Returns the context of `value` parsed back, checking that the text
    /// form compares equal to the value form.
    fn context_read_back(value: &Value<'_>) -> serde_json::Value {
        let context = value.to_context();
        let read = context.to_json().unwrap_or_else(|error| panic!("{context:?}: {error}"));
        assert_eq!(context, Context::Json(value.to_json()), "{context:?}");
        read
    }

    /// Every double reads back with the same bits. Without its
    /// `float_roundtrip` feature, serde_json reads about 1 in 10 of
    /// uniform doubles below 10^6 back as a different double.
    #[test]
    fn context_doubles_read_back_exactly() {
        let mut doubles = vec![
            0.0, -0.0, 1.0, -1.0, 0.1, 0.3, 1e21, 1e22, 1e23, 9007199254740993.0, 2f64.powi(63), 2f64.powi(64),
            f64::MAX, f64::MIN, f64::MIN_POSITIVE, f64::EPSILON, 5e-324, -5e-324, 2.2250738585072011e-308,
            2.2250738585072014e-308, 1.7976931348623157e308, 123456789012345680000.0, 0.30000000000000004,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            doubles.push(f64::from_bits(state));
        }
        for double in doubles.into_iter().filter(|double| double.is_finite()) {
            let value = Value::Struct(vec![(Cow::Borrowed("d"), Value::Double(double))]);
            let read = context_read_back(&value);
            let read = read["d"].as_f64().unwrap_or_else(|| panic!("{double:e} reads back as {}", read["d"]));
            assert_eq!(read.to_bits(), double.to_bits(), "{double:e} reads back as {read:e}");
        }
        for double in [f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let value = Value::Struct(vec![(Cow::Borrowed("d"), Value::Double(double))]);
            assert_eq!(context_read_back(&value)["d"], serde_json::Value::Null, "{double}");
        }
    }

    /// Keys and strings with every control character, the line and
    /// paragraph separators, noncharacters and the largest code point,
    /// big integers far outside 64 bits, and repeated keys.
    #[test]
    fn context_text_and_keys_read_back() {
        let controls: String = (0u32..0x20).chain([0x7f, 0x80, 0x9f]).map(|code| char::from_u32(code).unwrap()).collect();
        let others = "\u{2028}\u{2029}\u{fdd0}\u{fdef}\u{fffe}\u{ffff}\u{1fffe}\u{10ffff}\u{feff}\u{d7ff}\u{e000}";
        let members = vec![
            (Cow::Owned(controls.clone()), Value::String(Cow::Owned(controls.clone()))),
            (Cow::Borrowed(others), Value::String(Cow::Borrowed(others))),
            (Cow::Borrowed(""), Value::String(Cow::Borrowed(""))),
            (Cow::Borrowed("big"), Value::BigInt(format!("-{}", "9".repeat(5000)))),
            (Cow::Borrowed("big"), Value::BigInt("1".repeat(400))),
            (Cow::Borrowed("u64"), Value::BigInt(u64::MAX.to_string())),
            (Cow::Borrowed("i64"), Value::Array(vec![Value::Int(i64::MIN), Value::Int(i64::MAX), Value::Int(0), Value::Int(-1)])),
            (Cow::Borrowed(""), Value::Nil),
            (Cow::Borrowed("odoogate_integration"), Value::String(Cow::Borrowed("spoofed"))),
            (Cow::Borrowed("odoogate_integration"), Value::Bool(false)),
        ];
        let value = Value::Struct(members);
        let read = context_read_back(&value);
        assert_eq!(read, value.to_json());
        assert_eq!(read[controls.as_str()], controls.as_str());
        assert_eq!(read[others], others);
        assert_eq!(read[""], serde_json::Value::Null, "the last of a repeated key wins");
        assert_eq!(read["big"], "1".repeat(400));
        assert_eq!(read["u64"], u64::MAX);
        assert_eq!(read["odoogate_integration"], false);
        let keys: Vec<&String> = read.as_object().unwrap().keys().collect();
        assert_eq!(keys, [&controls, others, "", "big", "u64", "i64", "odoogate_integration"]);
    }

    /// A context nested as deep as a decoder allows parses back. The
    /// decoders count every array and struct, the `kwargs` struct among
    /// them, and the token rewrite decodes its output with 2 levels more
    /// than the default. serde_json parses at most 127 levels.
    #[test]
    fn deepest_context_reads_back() {
        let deepest = crate::rpc::DecodeLimits::default().max_depth + 2;
        assert!(deepest < 128, "a context {deepest} levels deep would not parse");
        for levels in [1, deepest - 1, deepest, 127] {
            let mut value = Value::Struct(vec![]);
            for level in 1..levels {
                value = match level % 2 {
                    0 => Value::Struct(vec![(Cow::Borrowed("k"), value)]),
                    _ => Value::Array(vec![value, Value::Nil]),
                };
            }
            assert_eq!(context_read_back(&value), value.to_json(), "{levels} levels");
        }
    }

    #[test]
    fn xml_value_to_json_keeps_types() {
        let value = Value::Array(vec![
            Value::Int(7),
            Value::BigInt("123456789012345678901234".to_owned()),
            Value::BigInt("18446744073709551615".to_owned()),
            Value::Bool(false),
            Value::Double(f64::NAN),
            Value::Double(0.5),
            Value::Nil,
            Value::DateTime(Cow::Borrowed("20200101T12:00:00")),
        ]);
        let json = value.to_json();
        assert_eq!(
            json,
            serde_json::json!([
                7,
                "123456789012345678901234",
                18446744073709551615u64,
                false,
                null,
                0.5,
                null,
                "20200101T12:00:00"
            ])
        );
    }

    #[test]
    fn false_and_null_count_as_absent() {
        assert!(Value::Nil.is_false_or_null());
        assert!(Value::Bool(false).is_false_or_null());
        assert!(!Value::Int(0).is_false_or_null());
        assert!(serde_json::Value::Null.is_false_or_null());
        assert!(!serde_json::json!([]).is_false_or_null());
    }
}
