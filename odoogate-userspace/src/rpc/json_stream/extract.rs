//! The argument extraction of [`crate::rpc::args`], fed by serde while the
//! body is read: record ids, the field names a method writes or reads, and
//! the context. Each argument slot a method uses is read into its own
//! result as it streams past. [`Extraction::finish`] then combines the
//! results in the order `args` uses, so the call equals the one `args`
//! builds from a value tree.
//!
//! Values that no slot reads are skipped (but checked). A slot whose
//! reading depends on keys in an order the stream cannot replay (an object
//! key sent twice) fails with a custom error, and the caller then decodes
//! the body with the tree decoder.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::read::{JsonSeed, Key, KeyStack, ObjectTextSeed, Skip, ignore_scalars, skip_rest_of_map, skip_rest_of_seq};
use crate::rpc::args::{FieldSet, MODEL_LEVEL_METHODS, READS_ALL_WITHOUT_FIELDS, RECORD_METHODS};
use crate::rpc::call::{Call, Context, MAX_RECORD_IDS};
use crate::rpc::value::ArgValue;

/// The part a method argument plays in the field names of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A values map (`write`): its keys and nested x2many command keys.
    Values,
    /// A values map or a list of them (`create`).
    ValuesOrList,
    /// A list of field names (`read`).
    Names,
    /// A `web_read` specification.
    Specification,
}

/// One argument a method reads: its position after the ids, the keyword
/// names that may carry it (tried in order), and its role.
struct Slot {
    index: usize,
    names: &'static [&'static str],
    role: Role,
}

/// Entries of [`Extraction::readings`]: the most that the slots of one
/// method need, one per slot plus one per keyword name (`web_save`'s two
/// slots need four). A test checks every method of [`method_slots`].
const MAX_READINGS: usize = 4;

/// Returns the slots of `method`, as `args::collect_method_fields` reads them.
fn method_slots(method: &str) -> &'static [Slot] {
    match method {
        "create" => &[Slot { index: 0, names: &["vals_list", "vals"], role: Role::ValuesOrList }],
        "write" => &[Slot { index: 0, names: &["vals"], role: Role::Values }],
        "copy" => &[Slot { index: 0, names: &["default"], role: Role::Values }],
        "web_save" => &[
            Slot { index: 0, names: &["vals"], role: Role::Values },
            Slot { index: 1, names: &["specification"], role: Role::Specification },
        ],
        "read" | "load" => &[Slot { index: 0, names: &["fields"], role: Role::Names }],
        "search_read" | "read_group" => &[Slot { index: 1, names: &["fields"], role: Role::Names }],
        "export_data" => &[Slot { index: 0, names: &["fields_to_export"], role: Role::Names }],
        "web_read" => &[Slot { index: 0, names: &["specification"], role: Role::Specification }],
        "web_search_read" => &[Slot { index: 1, names: &["specification"], role: Role::Specification }],
        _ => &[],
    }
}

/// The source of a call's record ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdsMode {
    /// `args[0]`, whatever it contains (record methods, `call_button`).
    First,
    /// Never: the method is model-level.
    None,
    /// `args[0]` when it is an integer or a list of integers.
    FirstIfIds,
    /// The `ids` key of a JSON-2 body.
    Named,
}

/// The value one argument slot received, reduced to what the extraction reads.
#[derive(Debug)]
enum Reading {
    /// `false` or `null`, which Odoo's optional arguments treat as absent.
    Absent,
    Fields(FieldSet),
    Names(Names),
    /// The `fields` keyword, whose names [`Extraction::named_fields`] contains.
    FieldsKeyword,
    Json(Json),
}

/// The field names of a value that is neither `false` nor `null`, as
/// `FieldSet::add_names_of` reads them: the strings of a list.
#[derive(Debug, Default)]
struct Names {
    fields: FieldSet,
    /// Whether the value is a list with at least one item.
    non_empty_list: bool,
}

// === impl Reading ===

impl Reading {
    fn present(&self) -> bool {
        !matches!(self, Self::Absent)
    }
}

/// The record ids a value selects, as `args::record_ids` reads them.
#[derive(Debug, Default)]
struct IdsReading {
    /// An integer or a list of integers, empty included.
    is_id_list: bool,
    ids: Vec<i64>,
    all_understood: bool,
}

/// The extraction of one model method call. `'m` is the lifetime of the
/// text the method name was read from.
pub(crate) struct Extraction<'m> {
    method: Cow<'m, str>,
    slots: &'static [Slot],
    ids_mode: IdsMode,
    /// Positional arguments seen, ids included.
    positional_count: usize,
    positional_ids: Option<IdsReading>,
    /// Per slot: what its position received, then what each of its
    /// keyword names received, all in one array so that a call costs no
    /// allocation for them. [`Extraction::reading_index`] finds an entry.
    readings: [Option<Reading>; MAX_READINGS],
    named_ids: Option<IdsReading>,
    /// The names of the `fields` keyword, unless it was `false` or `null`.
    named_fields: Option<Names>,
    /// The JSON text of the `context` keyword, when it is an object.
    context: Option<Box<str>>,
    /// Keyword names seen that [`Extraction::saw_key`] reports.
    seen_keys: Vec<&'static str>,
}

/// Keyword names whose presence a caller may ask about.
const REPORTED_KEYS: [&str; 2] = ["model", "method"];

// === impl Extraction ===

impl<'m> Extraction<'m> {
    /// Starts the extraction of a `call_kw`-style call to `method`.
    pub(crate) fn for_model_call(method: Cow<'m, str>) -> Self {
        let ids_mode = if RECORD_METHODS.contains(&method.as_ref()) {
            IdsMode::First
        } else if MODEL_LEVEL_METHODS.contains(&method.as_ref()) {
            IdsMode::None
        } else {
            IdsMode::FirstIfIds
        };
        Self::new(method, ids_mode)
    }

    /// Starts the extraction of a call whose ids come from `ids_mode`.
    pub(crate) fn new(method: Cow<'m, str>, ids_mode: IdsMode) -> Self {
        let slots = method_slots(&method);
        Self {
            method,
            slots,
            ids_mode,
            positional_count: 0,
            positional_ids: None,
            readings: [const { None }; MAX_READINGS],
            named_ids: None,
            named_fields: None,
            context: None,
            seen_keys: Vec::new(),
        }
    }

    /// Returns the method this extraction reads arguments for.
    pub(crate) fn method(&self) -> &str {
        &self.method
    }

    /// Forgets the positional arguments, when a later `args` key replaces them.
    pub(crate) fn reset_positional(&mut self) {
        self.positional_count = 0;
        self.positional_ids = None;
        for slot in 0..self.slots.len() {
            let index = self.reading_index(slot, None);
            self.readings[index] = None;
        }
    }

    /// Forgets the keyword arguments, when a later `kwargs` key replaces them.
    pub(crate) fn reset_named(&mut self) {
        for slot in 0..self.slots.len() {
            for name in 0..self.slots[slot].names.len() {
                let index = self.reading_index(slot, Some(name));
                self.readings[index] = None;
            }
        }
        self.named_ids = None;
        self.named_fields = None;
        self.context = None;
        self.seen_keys.clear();
    }

    /// Tells whether a keyword argument `key` (`model` or `method`) was seen.
    pub(crate) fn saw_key(&self, key: &str) -> bool {
        self.seen_keys.contains(&key)
    }

    /// Returns the seed for the next positional argument.
    pub(super) fn positional_seed<'e, 'k, 'de>(&'e mut self, keys: &'k mut KeyStack<'de>) -> PositionalSeed<'e, 'k, 'm, 'de> {
        PositionalSeed { extraction: self, keys }
    }

    /// Returns a seed that reads a keyword arguments object.
    pub(super) fn named_seed<'e, 'k, 'de>(&'e mut self, keys: &'k mut KeyStack<'de>) -> NamedSeed<'e, 'k, 'm, 'de> {
        NamedSeed { extraction: self, keys }
    }

    /// Returns the slot that positional argument `index` (ids included)
    /// fills, or `None` for the ids and for arguments no slot reads.
    fn slot_at(&self, index: usize) -> Option<usize> {
        let after_ids = match self.ids_mode {
            IdsMode::First => index.checked_sub(1)?,
            IdsMode::None | IdsMode::Named => index,
            // Methods that are neither record nor model-level read no slot.
            IdsMode::FirstIfIds => return None,
        };
        self.slots.iter().position(|slot| slot.index == after_ids)
    }

    /// Returns the index in [`Extraction::readings`] of what slot `slot`
    /// received by position (`source` `None`) or by its keyword name
    /// number `name` (`source` `Some(name)`).
    fn reading_index(&self, slot: usize, source: Option<usize>) -> usize {
        let start: usize = self.slots[..slot].iter().map(|slot| 1 + slot.names.len()).sum();
        start + source.map_or(0, |name| 1 + name)
    }

    fn reading(&self, slot: usize, source: Option<usize>) -> Option<&Reading> {
        self.readings[self.reading_index(slot, source)].as_ref()
    }

    /// Returns where slot `slot` takes its value from, as `Arguments::get`
    /// chooses for each keyword name in order: the position when the call
    /// has it, else the keyword, and nothing when that value is `false` or
    /// `null`. `Some(None)` is the position, `Some(Some(name))` a keyword.
    fn chosen_source(&self, slot: usize) -> Option<Option<usize>> {
        (0..self.slots[slot].names.len()).find_map(|name| {
            let (source, reading) = match self.reading(slot, None) {
                Some(reading) => (None, Some(reading)),
                None => (Some(name), self.reading(slot, Some(name))),
            };
            reading.is_some_and(Reading::present).then_some(source)
        })
    }

    fn reading_mut(&mut self, slot: usize, source: Option<usize>) -> Option<&mut Reading> {
        let index = self.reading_index(slot, source);
        self.readings[index].as_mut()
    }

    /// Returns what slot `slot` received, or `None` when it is absent.
    fn chosen(&self, slot: usize) -> Option<&Reading> {
        self.reading(slot, self.chosen_source(slot)?)
    }

    /// Takes the values slot `slot` received, chosen as [`Extraction::chosen`] does.
    fn take_chosen_fields(&mut self, slot: usize) -> Option<FieldSet> {
        let source = self.chosen_source(slot)?;
        match std::mem::replace(self.reading_mut(slot, source)?, Reading::Absent) {
            Reading::Fields(fields) => Some(fields),
            _ => None,
        }
    }

    /// Takes the names slot `slot` received, chosen as [`Extraction::chosen`] does.
    fn take_chosen_names(&mut self, slot: usize) -> Option<Names> {
        let source = self.chosen_source(slot)?;
        match std::mem::replace(self.reading_mut(slot, source)?, Reading::Absent) {
            Reading::Names(names) => Some(names),
            Reading::FieldsKeyword => self.named_fields.take(),
            _ => None,
        }
    }

    /// Writes the ids, fields and context into `call`, as `args::extract`
    /// does. It moves what it writes out of the extraction, so call it once.
    /// It borrows the extraction so that its owner does not move it.
    pub(crate) fn finish(&mut self, call: &mut Call) {
        let ids = match self.ids_mode {
            IdsMode::First => self.positional_ids.take(),
            IdsMode::FirstIfIds => self.positional_ids.take().filter(|ids| ids.is_id_list),
            IdsMode::None => None,
            IdsMode::Named => self.named_ids.take(),
        };
        if let Some(ids) = ids {
            call.record_ids = ids.ids;
            if !ids.all_understood {
                call.mismatches.push("record ids that are not all numbers".to_owned());
            }
        }

        let mut fields = FieldSet::default();
        let mut read_fields = false;
        for (index, slot) in self.slots.iter().enumerate() {
            match slot.role {
                Role::Values | Role::ValuesOrList => {
                    if let Some(slot_fields) = self.take_chosen_fields(index) {
                        fields.merge(slot_fields);
                    }
                }
                Role::Names => {
                    read_fields = false;
                    if let Some(names) = self.take_chosen_names(index) {
                        fields.merge(names.fields);
                        read_fields = names.non_empty_list;
                    }
                }
                Role::Specification => {
                    let before = fields.len();
                    if let Some(specification) = json_of(self.chosen(index)) {
                        fields.add_specification("", specification);
                    }
                    read_fields = fields.len() > before;
                }
            }
        }
        // A slot that chose the `fields` keyword took these names above,
        // because adding the same names twice changes nothing.
        if let Some(names) = self.named_fields.take() {
            fields.merge(names.fields);
        }

        let method = self.method.as_ref();
        let reads_without_fields = READS_ALL_WITHOUT_FIELDS.contains(&method) && !read_fields;
        let specification_absent = |index: usize| {
            self.slots.iter().position(|slot| slot.index == index && slot.role == Role::Specification).is_none_or(|slot| self.chosen(slot).is_none())
        };
        let reads_without_specification = match method {
            "web_read" => specification_absent(0),
            "web_search_read" => specification_absent(1),
            _ => false,
        };
        call.reads_all_fields = reads_without_fields || reads_without_specification;

        let (names, overflowed) = fields.into_names();
        if overflowed {
            call.mismatches.push(format!("more than {} field names", crate::rpc::args::MAX_FIELDS));
        }
        call.fields = names;
        call.context = self.context.take().map(Context::Text);
    }
}

fn json_of(reading: Option<&Reading>) -> Option<&Json> {
    match reading {
        Some(Reading::Json(json)) => Some(json),
        _ => None,
    }
}

/// Reads one positional argument into its slot.
pub(super) struct PositionalSeed<'e, 'k, 'm, 'de> {
    extraction: &'e mut Extraction<'m>,
    keys: &'k mut KeyStack<'de>,
}

impl<'de> DeserializeSeed<'de> for PositionalSeed<'_, '_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let extraction = self.extraction;
        let index = extraction.positional_count;
        extraction.positional_count += 1;
        let reads_ids = index == 0 && matches!(extraction.ids_mode, IdsMode::First | IdsMode::FirstIfIds);
        if reads_ids {
            extraction.positional_ids = Some(deserializer.deserialize_any(IdsVisitor)?);
            return Ok(());
        }
        let Some(slot) = extraction.slot_at(index) else {
            deserializer.deserialize_ignored_any(SkipAny)?;
            return Ok(());
        };
        let reading = read_slot(extraction.slots[slot].role, deserializer, self.keys)?;
        let index = extraction.reading_index(slot, None);
        extraction.readings[index] = Some(reading);
        Ok(())
    }
}

/// Reads a keyword arguments object (or a JSON-2 body).
pub(super) struct NamedSeed<'e, 'k, 'm, 'de> {
    extraction: &'e mut Extraction<'m>,
    keys: &'k mut KeyStack<'de>,
}

/// The kind of value sent as keyword arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ValueKind {
    Map,
    FalseOrNull,
    Other,
}

impl<'de> DeserializeSeed<'de> for NamedSeed<'_, '_, '_, 'de> {
    type Value = ValueKind;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<ValueKind, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NamedSeed<'_, '_, '_, 'de> {
    type Value = ValueKind;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("keyword arguments")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<ValueKind, E> {
        Ok(if value { ValueKind::Other } else { ValueKind::FalseOrNull })
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<ValueKind, E> {
        Ok(ValueKind::Other)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<ValueKind, E> {
        Ok(ValueKind::Other)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<ValueKind, E> {
        Ok(ValueKind::Other)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<ValueKind, E> {
        Ok(ValueKind::Other)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<ValueKind, E> {
        Ok(ValueKind::FalseOrNull)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ValueKind, A::Error> {
        skip_rest_of_seq(&mut seq)?;
        Ok(ValueKind::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValueKind, A::Error> {
        let extraction = self.extraction;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let key = key.as_ref();
            if let Some(reported) = REPORTED_KEYS.iter().find(|reported| **reported == key)
                && !extraction.seen_keys.contains(reported)
            {
                extraction.seen_keys.push(reported);
            }
            match key {
                "context" => extraction.context = map.next_value_seed(ObjectTextSeed)?.map(Box::from),
                "fields" => {
                    let names = map.next_value_seed(NamesSeed)?;
                    store_named(extraction, key, || if names.is_some() { Reading::FieldsKeyword } else { Reading::Absent });
                    extraction.named_fields = names;
                }
                "ids" if extraction.ids_mode == IdsMode::Named => {
                    extraction.named_ids = Some(map.next_value_seed(IdsSeed)?);
                }
                _ => {
                    let role = named_slot(extraction, key).map(|(slot, _)| extraction.slots[slot].role);
                    match role {
                        Some(role) => {
                            let reading = map.next_value_seed(SlotSeed { role, keys: &mut *self.keys })?;
                            store_named(extraction, key, || reading);
                        }
                        None => {
                            map.next_value::<Skip>()?;
                        }
                    }
                }
            }
        }
        Ok(ValueKind::Map)
    }
}

/// Returns the slot and name index that keyword `key` fills.
fn named_slot(extraction: &Extraction<'_>, key: &str) -> Option<(usize, usize)> {
    extraction
        .slots
        .iter()
        .enumerate()
        .find_map(|(slot, definition)| definition.names.iter().position(|name| *name == key).map(|name| (slot, name)))
}

fn store_named(extraction: &mut Extraction<'_>, key: &str, reading: impl FnOnce() -> Reading) {
    if let Some((slot, name)) = named_slot(extraction, key) {
        let index = extraction.reading_index(slot, Some(name));
        extraction.readings[index] = Some(reading());
    }
}

fn json_reading(json: Json) -> Reading {
    if json.is_false_or_null() { Reading::Absent } else { Reading::Json(json) }
}

/// Reads one slot value by its role.
fn read_slot<'de, D: Deserializer<'de>>(role: Role, deserializer: D, keys: &mut KeyStack<'de>) -> Result<Reading, D::Error> {
    SlotSeed { role, keys }.deserialize(deserializer)
}

struct SlotSeed<'k, 'de> {
    role: Role,
    keys: &'k mut KeyStack<'de>,
}

impl<'de> DeserializeSeed<'de> for SlotSeed<'_, 'de> {
    type Value = Reading;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Reading, D::Error> {
        match self.role {
            Role::Names => Ok(NamesSeed.deserialize(deserializer)?.map_or(Reading::Absent, Reading::Names)),
            Role::Specification => Ok(json_reading(JsonSeed.deserialize(deserializer)?)),
            Role::Values | Role::ValuesOrList => {
                let mut fields = FieldSet::default();
                let visitor = ValuesVisitor { fields: &mut fields, keys: self.keys, or_list: self.role == Role::ValuesOrList };
                let present = deserializer.deserialize_any(visitor)?;
                Ok(if present { Reading::Fields(fields) } else { Reading::Absent })
            }
        }
    }
}

/// Reads a list of field names into a [`Names`], or `None` for `false`
/// and `null`. Items that are not strings are checked and skipped.
struct NamesSeed;

impl<'de> DeserializeSeed<'de> for NamesSeed {
    type Value = Option<Names>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Names>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NamesSeed {
    type Value = Option<Names>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a list of field names")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Option<Names>, E> {
        Ok(value.then(Names::default))
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Option<Names>, E> {
        Ok(Some(Names::default()))
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Option<Names>, E> {
        Ok(Some(Names::default()))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Option<Names>, E> {
        Ok(Some(Names::default()))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Option<Names>, E> {
        Ok(Some(Names::default()))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<Names>, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Names>, A::Error> {
        skip_rest_of_map(&mut map)?;
        Ok(Some(Names::default()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Names>, A::Error> {
        let mut names = Names::default();
        while seq.next_element_seed(NameSeed { fields: &mut names.fields })?.is_some() {
            names.non_empty_list = true;
        }
        Ok(Some(names))
    }
}

/// Reads one item of a field name list, adding it when it is a string.
struct NameSeed<'f> {
    fields: &'f mut FieldSet,
}

impl<'de> DeserializeSeed<'de> for NameSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NameSeed<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<(), E> {
        self.fields.add("", name);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_rest_of_seq(&mut seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        skip_rest_of_map(&mut map)
    }
}

/// Reads a values slot. Returns false for `false` and `null`.
struct ValuesVisitor<'f, 'k, 'de> {
    fields: &'f mut FieldSet,
    keys: &'k mut KeyStack<'de>,
    or_list: bool,
}

impl<'de> Visitor<'de> for ValuesVisitor<'_, '_, 'de> {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a values map")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<bool, E> {
        Ok(value)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(true)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        if !self.or_list {
            skip_rest_of_seq(&mut seq)?;
            return Ok(true);
        }
        while seq.next_element_seed(RecordSeed { prefix: "", fields: &mut *self.fields, keys: &mut *self.keys })?.is_some() {}
        Ok(true)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        RecordSeed { prefix: "", fields: self.fields, keys: self.keys }.visit_map(map)?;
        Ok(true)
    }
}

/// Adds the keys of a values map (if the value is one) under `prefix`, and
/// the keys of x2many commands that carry values, as `args::FieldSet::add_values`.
struct RecordSeed<'p, 'f, 'k, 'de> {
    prefix: &'p str,
    fields: &'f mut FieldSet,
    keys: &'k mut KeyStack<'de>,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_, '_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a values map")
    }

    ignore_scalars!(());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_rest_of_seq(&mut seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut object = self.keys.open();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let field_index = self.fields.add(self.prefix, &key);
            self.keys.insert_field(&mut object, key.clone(), field_index)?;
            map.next_value_seed(CommandsSeed { prefix: self.prefix, key: &key, fields: &mut *self.fields, keys: &mut *self.keys })?;
        }
        self.keys.close(object);
        Ok(())
    }
}

/// Reads the value of a field: a list of x2many commands or anything else.
struct CommandsSeed<'p, 'f, 'k, 'de> {
    prefix: &'p str,
    key: &'p str,
    fields: &'f mut FieldSet,
    keys: &'k mut KeyStack<'de>,
}

impl<'de> DeserializeSeed<'de> for CommandsSeed<'_, '_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CommandsSeed<'_, '_, '_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field value")
    }

    ignore_scalars!(());

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        skip_rest_of_map(&mut map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut nested_prefix: Option<String> = None;
        loop {
            let seed = CommandSeed {
                prefix: self.prefix,
                key: self.key,
                nested_prefix: &mut nested_prefix,
                fields: &mut *self.fields,
                keys: &mut *self.keys,
            };
            if seq.next_element_seed(seed)?.is_none() {
                if let Some(buffer) = nested_prefix {
                    self.keys.recycle_prefix(buffer);
                }
                return Ok(());
            }
        }
    }
}

/// Reads one item of a field value list. When the item is a command
/// `(0, _, {...})` or `(1, id, {...})` of exactly three items, adds the keys
/// of its values map under `prefix` + `key` + `.`.
struct CommandSeed<'p, 'n, 'f, 'k, 'de> {
    prefix: &'p str,
    key: &'p str,
    nested_prefix: &'n mut Option<String>,
    fields: &'f mut FieldSet,
    keys: &'k mut KeyStack<'de>,
}

impl<'de> DeserializeSeed<'de> for CommandSeed<'_, '_, '_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CommandSeed<'_, '_, '_, '_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an x2many command")
    }

    ignore_scalars!(());

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        skip_rest_of_map(&mut map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some(code) = seq.next_element_seed(IntSeed)? else {
            return Ok(());
        };
        if seq.next_element::<Skip>()?.is_none() {
            return Ok(());
        }
        let carries_values = matches!(code, Some(0 | 1));
        let mark = self.fields.mark();
        let third = if carries_values {
            let prefix = match self.nested_prefix {
                Some(prefix) => prefix,
                None => self.nested_prefix.insert(self.keys.prefix_buffer(&[self.prefix, self.key, "."])),
            };
            seq.next_element_seed(RecordSeed { prefix, fields: &mut *self.fields, keys: &mut *self.keys })?
        } else {
            seq.next_element::<Skip>()?.map(|_| ())
        };
        let mut extra = false;
        while seq.next_element::<Skip>()?.is_some() {
            extra = true;
        }
        if third.is_none() || extra {
            // Not a three-item command: Python's reading ignores it.
            self.fields.rollback(mark);
        }
        Ok(())
    }
}

/// Reads a value and returns it when it is an integer within `i64`.
struct IntSeed;

impl<'de> DeserializeSeed<'de> for IntSeed {
    type Value = Option<i64>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<i64>, D::Error> {
        Ok(match deserializer.deserialize_any(ScalarVisitor)? {
            Scalar::Int(value) => Some(value),
            _ => None,
        })
    }
}

/// A value reduced to what a record id reading needs.
enum Scalar {
    Int(i64),
    /// An integer beyond `i64`.
    BigInt,
    Float(f64),
    /// A string, boolean, `null`, list or map.
    Other,
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(value))
    }
    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(value).map_or(Scalar::BigInt, Scalar::Int))
    }
    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(value))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        skip_rest_of_seq(&mut seq)?;
        Ok(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        skip_rest_of_map(&mut map)?;
        Ok(Scalar::Other)
    }
}

/// Skips any value.
struct SkipAny;

impl<'de> Visitor<'de> for SkipAny {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    ignore_scalars!(());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_rest_of_seq(&mut seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        skip_rest_of_map(&mut map)
    }
}

struct IdsSeed;

impl<'de> DeserializeSeed<'de> for IdsSeed {
    type Value = IdsReading;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<IdsReading, D::Error> {
        deserializer.deserialize_any(IdsVisitor)
    }
}

/// Reads record ids as `args::record_ids` and `args::is_id_list` do.
struct IdsVisitor;

impl IdsVisitor {
    fn single(id: i64) -> IdsReading {
        IdsReading { is_id_list: true, ids: vec![id], all_understood: true }
    }

    fn not_ids(all_understood: bool) -> IdsReading {
        IdsReading { is_id_list: false, ids: Vec::new(), all_understood }
    }
}

impl<'de> Visitor<'de> for IdsVisitor {
    type Value = IdsReading;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("record ids")
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<IdsReading, E> {
        // `False` selects no record; `True` is not understood.
        Ok(Self::not_ids(!value))
    }
    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<IdsReading, E> {
        Ok(Self::single(value))
    }
    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<IdsReading, E> {
        Ok(i64::try_from(value).map_or_else(|_| Self::not_ids(false), Self::single))
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<IdsReading, E> {
        Ok(Self::not_ids(false))
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<IdsReading, E> {
        Ok(Self::not_ids(false))
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<IdsReading, E> {
        Ok(Self::not_ids(true))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IdsReading, A::Error> {
        skip_rest_of_map(&mut map)?;
        Ok(Self::not_ids(false))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IdsReading, A::Error> {
        let mut reading = IdsReading { is_id_list: true, ids: Vec::new(), all_understood: true };
        while let Some(item) = seq.next_element_seed(ScalarSeed)? {
            let id = match item {
                Scalar::Int(id) => Some(id),
                Scalar::Float(number) => {
                    reading.is_id_list = false;
                    // `i64::MAX as f64` rounds up to 2^63, which is out of range.
                    let integral = number.fract() == 0.0 && number >= i64::MIN as f64 && number < i64::MAX as f64;
                    integral.then_some(number as i64)
                }
                Scalar::BigInt => {
                    reading.is_id_list = false;
                    None
                }
                Scalar::Other => {
                    reading.is_id_list = false;
                    reading.all_understood = false;
                    None
                }
            };
            if let Some(id) = id
                && reading.ids.len() < MAX_RECORD_IDS
            {
                reading.ids.push(id);
            }
        }
        Ok(reading)
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scalar, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_fit_every_method() {
        let methods = [
            "create",
            "write",
            "copy",
            "web_save",
            "read",
            "load",
            "search_read",
            "read_group",
            "export_data",
            "web_read",
            "web_search_read",
        ];
        for method in methods {
            let slots = method_slots(method);
            assert!(!slots.is_empty(), "{method} has no slots");
            let readings: usize = slots.iter().map(|slot| 1 + slot.names.len()).sum();
            assert!(readings <= MAX_READINGS, "{method} needs {readings} readings");
        }
    }
}
