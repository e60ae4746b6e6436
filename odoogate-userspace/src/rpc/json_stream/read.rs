//! serde building blocks for reading JSON from a borrowed body without a
//! value tree: [`Skip`] validates a value and keeps nothing, [`Key`] reads
//! an object key, and [`KeyStack`] detects keys repeated in one object.
//!
//! [`Skip`] calls `deserialize_ignored_any`, which [`super::parser::Parser`]
//! implements with a validating scanner: numbers that overflow `f64`, lone
//! surrogates in `\u` escapes and invalid escapes are errors there too, as
//! they are when serde_json builds a `serde_json::Value`. serde_json's own
//! `deserialize_ignored_any` skips those checks, so these readers must not
//! run on serde_json's deserializer.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::parser::RAW_TEXT;

/// Implements the scalar `visit_*` methods of a visitor so that each one
/// returns `$value`, for visitors that only care about arrays or objects.
macro_rules! ignore_scalars {
    ($value:expr) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}
pub(super) use ignore_scalars;

/// A JSON value that was read, checked and dropped.
pub(super) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_ignored_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    ignore_scalars!(Skip);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<Skip>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

/// Skips the rest of a sequence.
pub(super) fn skip_rest_of_seq<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

/// Skips the rest of a map.
pub(super) fn skip_rest_of_map<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    while map.next_key::<Skip>()?.is_some() {
        map.next_value::<Skip>()?;
    }
    Ok(())
}

/// An object key, borrowed from the body unless it contained escapes.
pub(super) struct Key<'de>(pub(super) Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(key)))
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(key.to_owned())))
    }
}

/// Keys of the objects being read, innermost last, so that a key repeated
/// in one object can be found without an allocation per object.
#[derive(Default)]
pub(super) struct KeyStack<'de> {
    keys: Vec<Cow<'de, str>>,
    /// Spare buffers for the `parent.` prefixes of nested field names, so
    /// that the records of a `create` reuse them instead of allocating.
    spare_prefixes: Vec<String>,
}

/// Objects with more keys than this are checked for repeats with a hash
/// set, so a hostile object costs linear time.
const LINEAR_SCAN_KEYS: usize = 32;

/// The keys of one object being read.
pub(super) struct ObjectKeys {
    start: usize,
    many: Option<HashSet<String>>,
    /// A one-word Bloom filter of the keys in `KeyStack::keys[start..]`: a
    /// key whose bit is clear is not among them, so most distinct keys cost
    /// no string comparison.
    filter: u64,
    /// Bit `n` is set when the object had the key whose field name is at
    /// index `n` of the call's field set.
    field_indexes: u64,
}

/// Returns the bit of `key` in [`ObjectKeys::filter`], from its length and
/// its first and last bytes.
fn filter_bit(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let first = u32::from(bytes.first().copied().unwrap_or(0));
    let last = u32::from(bytes.last().copied().unwrap_or(0));
    let mixed = (bytes.len() as u32 ^ (first << 8) ^ (last << 16)).wrapping_mul(0x9E37_79B1);
    1 << (mixed >> 26)
}

// === impl KeyStack ===

impl<'de> KeyStack<'de> {
    /// Starts an object.
    pub(super) fn open(&self) -> ObjectKeys {
        ObjectKeys { start: self.keys.len(), many: None, filter: 0, field_indexes: 0 }
    }

    /// Records `key` in `object`. Fails when the object already had it,
    /// because Python keeps the last value at the first key's position and
    /// the streaming readers cannot reorder what they have read.
    pub(super) fn insert<E: serde::de::Error>(&mut self, object: &mut ObjectKeys, key: Cow<'de, str>) -> Result<(), E> {
        let repeated = || E::custom("repeated object key");
        if let Some(many) = &mut object.many {
            return if many.insert(key.into_owned()) { Ok(()) } else { Err(repeated()) };
        }
        let bit = filter_bit(&key);
        if object.filter & bit != 0 && self.keys[object.start..].contains(&key) {
            return Err(repeated());
        }
        object.filter |= bit;
        if self.keys.len() - object.start >= LINEAR_SCAN_KEYS {
            let mut many: HashSet<String> = self.keys.drain(object.start..).map(Cow::into_owned).collect();
            many.insert(key.into_owned());
            object.many = Some(many);
            return Ok(());
        }
        self.keys.push(key);
        Ok(())
    }

    /// Records `key` in `object`, as [`KeyStack::insert`] does, given the
    /// index that [`crate::rpc::args::FieldSet::add`] returned for it. Keys
    /// of one object share a prefix, so two keys are equal exactly when
    /// their field names are, and a known index below 64 needs no string
    /// comparison. Rolling the field set back never drops the name of a key
    /// of an object still being read, so such an index stays valid.
    // Inlined, because it runs once per key of every record and its
    // common path is a few instructions.
    #[inline(always)]
    pub(super) fn insert_field<E: serde::de::Error>(
        &mut self,
        object: &mut ObjectKeys,
        key: Cow<'de, str>,
        field_index: Option<usize>,
    ) -> Result<(), E> {
        match field_index {
            Some(index) if index < 64 => {
                let bit = 1u64 << index;
                if object.field_indexes & bit != 0 {
                    return Err(E::custom("repeated object key"));
                }
                object.field_indexes |= bit;
                Ok(())
            }
            _ => self.insert(object, key),
        }
    }

    /// Ends an object, forgetting its keys.
    pub(super) fn close(&mut self, object: ObjectKeys) {
        self.keys.truncate(object.start);
    }

    /// Returns a buffer containing the concatenation of `parts`.
    pub(super) fn prefix_buffer(&mut self, parts: &[&str]) -> String {
        let mut buffer = self.spare_prefixes.pop().unwrap_or_default();
        buffer.clear();
        parts.iter().for_each(|part| buffer.push_str(part));
        buffer
    }

    /// Keeps `buffer` for a later [`KeyStack::prefix_buffer`].
    pub(super) fn recycle_prefix(&mut self, buffer: String) {
        self.spare_prefixes.push(buffer);
    }
}

/// Reads a value and returns its text when it is a string, borrowed from
/// the body unless it contained escapes. Any other value is checked and
/// dropped.
pub(super) struct TextSeed;

impl<'de> DeserializeSeed<'de> for TextSeed {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(text.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        skip_rest_of_seq(&mut seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        skip_rest_of_map(&mut map)?;
        Ok(None)
    }
}

/// Reads a value and returns its JSON text, borrowed from the body, when
/// it is an object. Any other value is checked and dropped. It runs only on
/// [`super::parser::Parser`], the only deserializer that handles the
/// [`RAW_TEXT`] request.
pub(super) struct ObjectTextSeed;

impl<'de> DeserializeSeed<'de> for ObjectTextSeed {
    type Value = Option<&'de str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_newtype_struct(RAW_TEXT, ObjectTextVisitor)
    }
}

struct ObjectTextVisitor;

impl<'de> Visitor<'de> for ObjectTextVisitor {
    type Value = Option<&'de str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("the JSON text of a value")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(text.starts_with('{').then_some(text))
    }
}

/// A value read whole: a string as text borrowed from the body where it
/// can be, anything else as the `serde_json::Value` that [`JsonSeed`] reads.
#[derive(Debug)]
pub(super) enum TextOrJson<'de> {
    Text(Cow<'de, str>),
    Json(serde_json::Value),
}

// === impl TextOrJson ===

impl<'de> TextOrJson<'de> {
    /// Returns the text of a string.
    pub(super) fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Json(_) => None,
        }
    }

    /// Returns the text of a string, as a copy that borrows from the body
    /// where the value did.
    pub(super) fn text(&self) -> Option<Cow<'de, str>> {
        match self {
            Self::Text(text) => Some(text.clone()),
            Self::Json(_) => None,
        }
    }
}

/// A seed that reads a [`TextOrJson`].
pub(super) struct TextOrJsonSeed;

impl<'de> DeserializeSeed<'de> for TextOrJsonSeed {
    type Value = TextOrJson<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(TextOrJsonVisitor)
    }
}

/// Builds the values that are not strings as serde_json 1.0's `Value`
/// visitor does, so that a [`TextOrJson::Json`] equals what [`JsonSeed`] reads.
struct TextOrJsonVisitor;

impl<'de> Visitor<'de> for TextOrJsonVisitor {
    type Value = TextOrJson<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Self::Value, E> {
        Ok(TextOrJson::Json(serde_json::Value::Bool(value)))
    }
    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
        Ok(TextOrJson::Json(serde_json::Value::Number(value.into())))
    }
    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
        Ok(TextOrJson::Json(serde_json::Value::Number(value.into())))
    }
    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
        Ok(TextOrJson::Json(serde_json::Number::from_f64(value).map_or(serde_json::Value::Null, serde_json::Value::Number)))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(TextOrJson::Json(serde_json::Value::Null))
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(TextOrJson::Text(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(TextOrJson::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        json(SeqAccessDeserializer::new(seq)).map(TextOrJson::Json)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        json(MapAccessDeserializer::new(map)).map(TextOrJson::Json)
    }
}

/// Reads a value as a `serde_json::Value`, for the small parts of a call
/// that the extraction reads whole (context, field lists, scalars).
pub(super) fn json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<serde_json::Value, D::Error> {
    serde_json::Value::deserialize(deserializer)
}

/// A seed that reads a `serde_json::Value`.
pub(super) struct JsonSeed;

impl<'de> DeserializeSeed<'de> for JsonSeed {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        json(deserializer)
    }
}
