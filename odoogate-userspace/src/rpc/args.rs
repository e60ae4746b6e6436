//! What a model method call touches: record ids, field names, context.
//!
//! Odoo's `call_kw` passes `args[0]` as the record ids unless the method is
//! decorated `@api.model`. odoogate cannot see decorators, so it treats
//! `args[0]` as ids for the common record methods (`read`, `write`, …). For
//! any other method that is not a known model-level one, `args[0]` is ids
//! when it is an integer or a list of integers (`action_confirm([7])`).
//!
//! Field names come from the values written (`create`, `write`, `copy`,
//! `web_save`) and the fields read (`read`, `search_read`, `web_read`,
//! `export_data`, any `fields` keyword). A field written through one2many or
//! many2many commands that carry values (`(0, 0, {...})`, `(1, id, {...})`)
//! is recorded itself and its nested fields as `parent.child`.

use std::hash::BuildHasher;

use super::call::{Call, FieldNames, MAX_RECORD_IDS};
use super::value::ArgValue;

/// Field names kept per call. A call with more is flagged as a mismatch, so
/// a policy never allows it on a partial field list.
pub const MAX_FIELDS: usize = 1000;

/// Methods Odoo declares `@api.model` (or that take no ids), whose first
/// argument is never a list of record ids.
pub(super) const MODEL_LEVEL_METHODS: &[&str] = &[
    "check_access_rights",
    "context_get",
    "create",
    "default_get",
    "fields_get",
    "formatted_read_group",
    "get_views",
    "has_access",
    "load",
    "name_create",
    "name_search",
    "read_group",
    "search",
    "search_count",
    "search_fetch",
    "search_read",
    "web_name_search",
    "web_read_group",
    "web_search_read",
];

/// Record methods whose first argument is the ids slot whatever it holds,
/// so that their other arguments keep their positions.
pub(super) const RECORD_METHODS: &[&str] = &["copy", "export_data", "read", "unlink", "web_read", "web_save", "write"];

/// Methods that read every field when no field list is given.
pub(super) const READS_ALL_WITHOUT_FIELDS: &[&str] = &["read", "search_read", "export_data"];

/// Extracts ids, fields and context from `call_kw`-style arguments:
/// positional `args` and an optional `kwargs` map.
pub fn extract_model_arguments<V: ArgValue>(call: &mut Call, args: &[V], kwargs: Option<&V>) {
    let method = call.method.clone().unwrap_or_default();
    let method_name = method.as_str();
    let takes_ids = RECORD_METHODS.contains(&method_name)
        || !MODEL_LEVEL_METHODS.contains(&method_name) && args.first().is_some_and(is_id_list);
    let (ids, rest) = match args.split_first() {
        Some((first, rest)) if takes_ids => (Some(first), rest),
        _ => (None, args),
    };
    extract(call, &method, ids, Arguments { positional: rest, named: kwargs });
}

/// Extracts arguments of `/web/dataset/call_button`, where `args[0]` is
/// always the records the button runs on.
pub fn extract_button_arguments<V: ArgValue>(call: &mut Call, args: &[V], kwargs: Option<&V>) {
    let method = call.method.clone().unwrap_or_default();
    let (ids, rest) = match args.split_first() {
        Some((first, rest)) => (Some(first), rest),
        None => (None, args),
    };
    extract(call, &method, ids, Arguments { positional: rest, named: kwargs });
}

/// Extracts arguments of a JSON-2 body: `ids`, `context` and the method's
/// named parameters, with no positional arguments.
pub fn extract_named_arguments<V: ArgValue>(call: &mut Call, body: &V) {
    let method = call.method.clone().unwrap_or_default();
    extract(call, &method, body.get("ids"), Arguments { positional: &[], named: Some(body) });
}

/// Positional arguments after the ids, and keyword arguments.
struct Arguments<'v, V> {
    positional: &'v [V],
    named: Option<&'v V>,
}

// === impl Arguments ===

impl<'v, V: ArgValue> Arguments<'v, V> {
    /// Returns the parameter at `index` (after the ids) or named `name`,
    /// treating `False` and `None` as absent.
    fn get(&self, index: usize, name: &str) -> Option<&'v V> {
        let positional = self.positional.get(index);
        let named = self.named.and_then(|named| named.get(name));
        positional.or(named).filter(|value| !value.is_false_or_null())
    }
}

fn extract<V: ArgValue>(call: &mut Call, method: &str, ids: Option<&V>, args: Arguments<'_, V>) {
    if let Some(ids) = ids {
        let (record_ids, all_integers) = record_ids(ids);
        call.record_ids = record_ids;
        if !all_integers {
            call.mismatches.push("record ids that are not all numbers".to_owned());
        }
    }

    let mut fields = FieldSet::default();
    let read_fields = collect_method_fields(method, &args, &mut fields);
    if let Some(names) = args.named.and_then(|named| named.get("fields")) {
        fields.add_names(names);
    }
    let reads_without_fields = READS_ALL_WITHOUT_FIELDS.contains(&method) && !read_fields;
    let reads_without_specification = match method {
        "web_read" => args.get(0, "specification").is_none(),
        "web_search_read" => args.get(1, "specification").is_none(),
        _ => false,
    };
    call.reads_all_fields = reads_without_fields || reads_without_specification;

    if fields.overflowed {
        call.mismatches.push(format!("more than {MAX_FIELDS} field names"));
    }
    call.fields = fields.names;
    call.context = args.named.and_then(|named| named.get("context")).filter(|c| c.entries().is_some()).map(ArgValue::to_context);
}

/// Adds the fields `method` writes or reads. Positions count after the ids
/// of record methods (`read(ids, fields)` has `fields` at 0) and from the
/// start for model-level methods (`search_read(domain, fields)` has it at
/// 1). Returns true when a read method named at least one field.
fn collect_method_fields<V: ArgValue>(method: &str, args: &Arguments<'_, V>, fields: &mut FieldSet) -> bool {
    match method {
        "create" => {
            if let Some(values) = args.get(0, "vals_list").or_else(|| args.get(0, "vals")) {
                fields.add_values_or_list("", values);
            }
            false
        }
        "write" => add_values(fields, args.get(0, "vals")),
        "copy" => add_values(fields, args.get(0, "default")),
        "web_save" => {
            add_values(fields, args.get(0, "vals"));
            add_specification(fields, args.get(1, "specification"))
        }
        "read" => fields.add_names_of(args.get(0, "fields")),
        "search_read" | "read_group" => fields.add_names_of(args.get(1, "fields")),
        "export_data" => fields.add_names_of(args.get(0, "fields_to_export")),
        // load(fields, data): the column names it imports, such as `groups_id/id`.
        "load" => fields.add_names_of(args.get(0, "fields")),
        "web_read" => add_specification(fields, args.get(0, "specification")),
        "web_search_read" => add_specification(fields, args.get(1, "specification")),
        _ => false,
    }
}

fn add_values<V: ArgValue>(fields: &mut FieldSet, values: Option<&V>) -> bool {
    if let Some(values) = values {
        fields.add_values("", values);
    }
    false
}

fn add_specification<V: ArgValue>(fields: &mut FieldSet, specification: Option<&V>) -> bool {
    let Some(specification) = specification else {
        return false;
    };
    let before = fields.names.len();
    fields.add_specification("", specification);
    fields.names.len() > before
}

/// Tells whether a value has the shape of record ids: an integer or a list
/// of integers (empty included).
fn is_id_list<V: ArgValue>(value: &V) -> bool {
    value.as_int().is_some() || value.as_list().is_some_and(|items| items.iter().all(|item| item.as_int().is_some()))
}

/// Reads record ids from an integer or a list, cut at [`MAX_RECORD_IDS`],
/// the way Odoo's `browse` and SQL read them. `False` and `None` are no
/// ids. An integral float selects the integer id (`5.0` is record 5), and
/// a fractional float or an integer beyond `i64` selects no record: Odoo
/// 19 returns `[]` for `read([1.5])`. The flag is false when the slot
/// contains a value whose effect odoogate cannot tell (a string, a
/// boolean, a nested list or map, a single non-integer).
///
/// NOTE: that `5.0` selects record 5 follows from PostgreSQL comparing
/// `integer` with `numeric`; it was not observed on a real Odoo.
fn record_ids<V: ArgValue>(value: &V) -> (Vec<i64>, bool) {
    if let Some(id) = value.as_int() {
        return (vec![id], true);
    }
    if value.is_false_or_null() {
        return (Vec::new(), true);
    }
    let Some(items) = value.as_list() else {
        return (Vec::new(), false);
    };
    let mut ids = Vec::new();
    let mut all_understood = true;
    for item in items {
        match record_id(item) {
            RecordId::Id(id) if ids.len() < MAX_RECORD_IDS => ids.push(id),
            RecordId::Id(_) | RecordId::NoRecord => {}
            RecordId::Unknown => all_understood = false,
        }
    }
    (ids, all_understood)
}

/// The selection made by one item of a record ids list.
enum RecordId {
    Id(i64),
    /// A number that no integer id equals.
    NoRecord,
    /// A value whose effect in Odoo's SQL is unclear.
    Unknown,
}

fn record_id<V: ArgValue>(item: &V) -> RecordId {
    if let Some(id) = item.as_int() {
        return RecordId::Id(id);
    }
    if let Some(number) = item.as_float() {
        // `i64::MAX as f64` rounds up to 2^63, which is out of range.
        let integral = number.fract() == 0.0 && number >= i64::MIN as f64 && number < i64::MAX as f64;
        return if integral { RecordId::Id(number as i64) } else { RecordId::NoRecord };
    }
    let other_type = item.as_text().is_some()
        || item.as_bool().is_some()
        || item.as_list().is_some()
        || item.entries().is_some()
        || item.is_false_or_null();
    if other_type { RecordId::Unknown } else { RecordId::NoRecord }
}

/// Field names in first-seen order, without repeats, bounded by
/// [`MAX_FIELDS`].
#[derive(Debug, Default)]
pub(super) struct FieldSet {
    names: FieldNames,
    /// Index of each name in `names`, built when the set first grows past
    /// [`LINEAR_SCAN_NAMES`] names and kept from then on. Boxed, because
    /// most sets never build it and the extraction moves sets by value.
    index: Option<Box<NameIndex>>,
    overflowed: bool,
    /// Buffer for building `prefix` + `key` without an allocation.
    scratch: String,
    /// Index in `names` of the name after the last one found, which
    /// [`FieldSet::find`] compares first.
    next: usize,
}

/// Names a [`FieldSet`] has room for when it allocates.
const INITIAL_NAMES_CAPACITY: usize = 16;

/// Bytes of names a [`FieldSet`] has room for when it allocates.
const INITIAL_TEXT_CAPACITY: usize = 256;

/// Sets of at most this many names are searched without hashing.
const LINEAR_SCAN_NAMES: usize = 16;

/// Sets of more names than this hash them with SipHash. Smaller sets use
/// foldhash 0.2, which is faster, but its README claims no resistance to
/// attackers who observe its outputs or timing. Below this size even names
/// that all collide cost no more comparisons per lookup than a linear scan.
const FAST_HASH_NAMES: usize = 128;

/// A hash table of indexes into [`FieldSet::names`], so that each name is
/// stored once. Field names come from clients, so both hashers are seeded
/// with random keys.
#[derive(Debug)]
struct NameIndex {
    table: hashbrown::HashTable<usize>,
    hasher: NameHasher,
}

#[derive(Debug)]
enum NameHasher {
    Fast(foldhash::quality::RandomState),
    SipHash(std::hash::RandomState),
}

/// A point in a [`FieldSet`]'s history that [`FieldSet::rollback`] returns to.
#[derive(Clone, Copy, Debug)]
pub(super) struct FieldMark {
    len: usize,
    overflowed: bool,
}

// === impl NameHasher ===

impl NameHasher {
    fn hash(&self, name: &str) -> u64 {
        match self {
            Self::Fast(state) => state.hash_one(name),
            Self::SipHash(state) => state.hash_one(name),
        }
    }
}

// === impl NameIndex ===

impl NameIndex {
    /// Builds the index of `names`, with the hasher their count calls for.
    fn build(names: &FieldNames) -> Self {
        let hasher = if names.len() > FAST_HASH_NAMES {
            NameHasher::SipHash(std::hash::RandomState::new())
        } else {
            NameHasher::Fast(foldhash::quality::RandomState::default())
        };
        let mut index = Self { table: hashbrown::HashTable::with_capacity(names.len() * 2), hasher };
        for position in 0..names.len() {
            index.insert(names, position);
        }
        index
    }

    fn is_fast(&self) -> bool {
        matches!(self.hasher, NameHasher::Fast(_))
    }

    fn hash(&self, name: &str) -> u64 {
        self.hasher.hash(name)
    }

    /// Finds `name`, whose hash is `hash`.
    fn find(&self, hash: u64, names: &FieldNames, name: &str) -> Option<usize> {
        self.table.find(hash, |&position| names.is_at(position, name)).copied()
    }

    /// Adds name `position` of `names`, which must not be in the table yet.
    fn insert(&mut self, names: &FieldNames, position: usize) {
        let hash = self.hash(names.get(position).unwrap_or_default());
        self.insert_hashed(hash, names, position);
    }

    /// Adds name `position` of `names`, whose hash is `hash`.
    fn insert_hashed(&mut self, hash: u64, names: &FieldNames, position: usize) {
        let hasher = &self.hasher;
        self.table.insert_unique(hash, position, |&other| hasher.hash(names.get(other).unwrap_or_default()));
    }

    /// Removes name `position` of `names`, which must be in the table.
    fn remove(&mut self, names: &FieldNames, position: usize) {
        if let Ok(entry) = self.table.find_entry(self.hash(names.get(position).unwrap_or_default()), |&other| other == position) {
            entry.remove();
        }
    }
}

// === impl FieldSet ===

impl FieldSet {
    /// Adds `prefix` + `key`. A name already seen costs no allocation,
    /// because a `create` of many records repeats its keys.
    ///
    /// Returns the name's index in the set, or `None` when the set is full
    /// and did not have the name. A name keeps its index until a
    /// [`FieldSet::rollback`] to before it.
    pub(super) fn add(&mut self, prefix: &str, key: &str) -> Option<usize> {
        if prefix.is_empty() {
            return self.find_or_insert(key);
        }
        let mut name = std::mem::take(&mut self.scratch);
        name.clear();
        name.push_str(prefix);
        name.push_str(key);
        let index = self.find_or_insert(&name);
        self.scratch = name;
        index
    }

    /// Looks `name` up and adds it when the set does not have it, returning
    /// its index as [`FieldSet::add`] does. The name after the last one
    /// found is compared first, because the records of a `create` repeat
    /// their keys in one order. A short list is scanned, because that is
    /// cheaper than hashing the name. A new name is hashed once, for the
    /// lookup and the insertion.
    fn find_or_insert(&mut self, name: &str) -> Option<usize> {
        if self.names.is_at(self.next, name) {
            self.next += 1;
            return Some(self.next - 1);
        }
        let hash = self.index.as_ref().map(|index| index.hash(name));
        let found = match (&self.index, hash) {
            (Some(index), Some(hash)) => index.find(hash, &self.names, name),
            _ => self.names.position(name),
        };
        match found {
            Some(index) => {
                self.next = index + 1;
                Some(index)
            }
            None => self.insert_new(name, hash),
        }
    }

    /// Adds a name not seen before, unless the set is full. `index` is
    /// built when the set grows past [`LINEAR_SCAN_NAMES`] names, rebuilt
    /// with SipHash when it grows past [`FAST_HASH_NAMES`], and from then on
    /// contains every name. A rollback removes names from it but keeps its
    /// hasher, so no sequence of adds and rollbacks rebuilds it twice.
    /// `hash` is the hash of `name` by `index`, when it has one. Returns
    /// the index of the name, or `None` when the set is full.
    fn insert_new(&mut self, name: &str, hash: Option<u64>) -> Option<usize> {
        if self.names.len() >= MAX_FIELDS {
            self.overflowed = true;
            return None;
        }
        if self.names.capacity() == 0 {
            // Most calls name few fields, so one allocation each replaces
            // growth from 4 to 8 to 16 names.
            self.names.reserve(INITIAL_NAMES_CAPACITY, INITIAL_TEXT_CAPACITY);
        }
        self.names.push(name);
        self.next = self.names.len();
        let position = self.names.len() - 1;
        let needs_siphash = self.names.len() > FAST_HASH_NAMES;
        match &mut self.index {
            Some(index) if !(needs_siphash && index.is_fast()) => {
                let hash = hash.unwrap_or_else(|| index.hash(name));
                index.insert_hashed(hash, &self.names, position);
            }
            _ if self.names.len() > LINEAR_SCAN_NAMES => self.index = Some(Box::new(NameIndex::build(&self.names))),
            _ => {}
        }
        Some(position)
    }

    /// Adds the strings of a list of field names (`fields=[...]`).
    pub(super) fn add_names<V: ArgValue>(&mut self, names: &V) {
        for name in names.as_list().unwrap_or(&[]).iter().filter_map(ArgValue::as_text) {
            self.add("", name);
        }
    }

    /// Adds a field list when present. Returns true when it named a field.
    pub(super) fn add_names_of<V: ArgValue>(&mut self, names: Option<&V>) -> bool {
        let Some(names) = names else {
            return false;
        };
        let before = self.names.len();
        self.add_names(names);
        self.names.len() > before || names.as_list().is_some_and(|list| !list.is_empty())
    }

    /// Returns the current state, for a later [`FieldSet::rollback`].
    pub(super) fn mark(&self) -> FieldMark {
        FieldMark { len: self.names.len(), overflowed: self.overflowed }
    }

    /// Forgets every name added since `mark`, as if they had never been seen.
    pub(super) fn rollback(&mut self, mark: FieldMark) {
        if let Some(index) = &mut self.index {
            for position in (mark.len..self.names.len()).rev() {
                index.remove(&self.names, position);
            }
        }
        self.names.truncate(mark.len);
        self.overflowed = mark.overflowed;
    }

    /// Adds the names of `other` in its order. Deduplicating and bounding
    /// each part first gives the same names and overflow flag as adding
    /// every name of both parts to one set in sequence.
    pub(super) fn merge(&mut self, other: Self) {
        if self.names.is_empty() && !self.overflowed {
            *self = other;
            return;
        }
        for name in other.names.iter() {
            self.add("", name);
        }
        self.overflowed |= other.overflowed;
    }

    /// Returns the names in first-seen order and whether some were dropped
    /// at [`MAX_FIELDS`].
    pub(super) fn into_names(self) -> (FieldNames, bool) {
        (self.names, self.overflowed)
    }

    /// Returns how many names the set contains.
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// Adds the keys of one values map or of each map in a list.
    fn add_values_or_list<V: ArgValue>(&mut self, prefix: &str, values: &V) {
        match values.as_list() {
            Some(list) => list.iter().for_each(|values| self.add_values(prefix, values)),
            None => self.add_values(prefix, values),
        }
    }

    /// Adds the keys of a values map, and the nested keys of x2many
    /// commands that carry values, as `parent.child`.
    fn add_values<V: ArgValue>(&mut self, prefix: &str, values: &V) {
        for (key, value) in values.entries().unwrap_or_default() {
            self.add(prefix, key);
            let mut nested_prefix = None;
            for command in value.as_list().unwrap_or(&[]) {
                if let Some(nested) = command_values(command) {
                    let nested_prefix = nested_prefix.get_or_insert_with(|| format!("{prefix}{key}."));
                    self.add_values(nested_prefix, nested);
                }
            }
        }
    }

    /// Adds the keys of a `web_read` specification and of its nested
    /// `fields` specifications.
    pub(super) fn add_specification<V: ArgValue>(&mut self, prefix: &str, specification: &V) {
        for (key, value) in specification.entries().unwrap_or_default() {
            self.add(prefix, key);
            if let Some(nested) = value.get("fields") {
                self.add_specification(&format!("{prefix}{key}."), nested);
            }
        }
    }
}

/// Returns the values map of an x2many command `(0, _, {...})` or
/// `(1, id, {...})`.
fn command_values<V: ArgValue>(command: &V) -> Option<&V> {
    let [code, _, values] = command.as_list()? else {
        return None;
    };
    let code = code.as_int()?;
    (code == 0 || code == 1).then_some(values).filter(|values| values.entries().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::call::{CallKind, Context, Protocol};
    use serde_json::json;

    fn model_call(method: &str, args: serde_json::Value, kwargs: Option<serde_json::Value>) -> Call {
        let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
        call.method = Some(method.to_owned());
        let args = args.as_array().cloned().unwrap_or_default();
        extract_model_arguments(&mut call, &args, kwargs.as_ref());
        call
    }

    #[test]
    fn create_collects_keys_of_every_dict() {
        let call = model_call("create", json!([[{"name": "a"}, {"email": "b", "name": "c"}]]), None);
        assert_eq!(call.fields, vec!["name", "email"]);
        assert!(call.record_ids.is_empty());
    }

    #[test]
    fn create_records_nested_command_fields() {
        let call = model_call(
            "create",
            json!([{"name": "o", "line_ids": [[0, 0, {"product_id": 1, "qty": 2}], [6, 0, [3]], [1, 9, {"qty": 4}]]}]),
            None,
        );
        // serde_json is built with preserve_order, so fields keep the client's order.
        assert_eq!(call.fields, vec!["name", "line_ids", "line_ids.product_id", "line_ids.qty"]);
    }

    #[test]
    fn write_reads_ids_and_values() {
        let call = model_call("write", json!([[4, 5], {"phone": false}]), Some(json!({"context": {"tz": "UTC"}})));
        assert_eq!(call.record_ids, vec![4, 5]);
        assert_eq!(call.fields, vec!["phone"]);
        assert_eq!(call.context, Some(Context::Json(json!({"tz": "UTC"}))));
    }

    #[test]
    fn write_values_from_kwargs() {
        let call = model_call("write", json!([[4]]), Some(json!({"vals": {"name": "x"}})));
        assert_eq!(call.fields, vec!["name"]);
    }

    #[test]
    fn read_without_fields_reads_all() {
        let call = model_call("read", json!([[1]]), None);
        assert!(call.reads_all_fields);
        let call = model_call("read", json!([[1], []]), None);
        assert!(call.reads_all_fields);
        let call = model_call("read", json!([[1], ["name"]]), None);
        assert!(!call.reads_all_fields);
        assert_eq!(call.fields, vec!["name"]);
    }

    #[test]
    fn search_read_fields_from_kwargs_or_position() {
        let call = model_call("search_read", json!([[["a", "=", 1]]]), Some(json!({"fields": ["name", "email"]})));
        assert_eq!(call.fields, vec!["name", "email"]);
        assert!(!call.reads_all_fields);
        assert!(call.record_ids.is_empty());
        let call = model_call("search_read", json!([[], ["name"], 0, 5]), None);
        assert_eq!(call.fields, vec!["name"]);
        let call = model_call("search_read", json!([[]]), None);
        assert!(call.reads_all_fields);
    }

    #[test]
    fn web_read_specification_is_flattened() {
        let call = model_call("web_read", json!([[3]]), Some(json!({"specification": {"name": {}, "partner_id": {"fields": {"email": {}}}}})));
        assert_eq!(call.record_ids, vec![3]);
        assert_eq!(call.fields, vec!["name", "partner_id", "partner_id.email"]);
        assert!(!call.reads_all_fields);
    }

    #[test]
    fn record_method_keeps_positions_with_odd_ids() {
        let call = model_call("read", json!([[1.5], ["name"]]), None);
        assert!(call.record_ids.is_empty());
        assert_eq!(call.fields, vec!["name"]);
        assert!(call.mismatches.is_empty());
    }

    #[test]
    fn integral_float_ids_select_records() {
        let call = model_call("write", json!([[5.0, 6, 1e30], {"name": "x"}]), None);
        assert_eq!(call.record_ids, vec![5, 6]);
        assert!(call.mismatches.is_empty());
    }

    #[test]
    fn non_numeric_ids_are_flagged() {
        for ids in [json!(["7"]), json!([true]), json!([[1]]), json!("7"), json!(true), json!(5.0)] {
            let call = model_call("unlink", json!([ids]), None);
            assert_eq!(call.mismatches, vec!["record ids that are not all numbers"], "{ids}");
        }
        let call = model_call("unlink", json!([false]), None);
        assert!(call.mismatches.is_empty());
    }

    #[test]
    fn action_method_takes_single_id() {
        let call = model_call("action_confirm", json!([12]), None);
        assert_eq!(call.record_ids, vec![12]);
    }

    #[test]
    fn model_level_method_never_takes_ids() {
        let call = model_call("search", json!([[1, 2]]), None);
        assert!(call.record_ids.is_empty());
    }

    #[test]
    fn record_ids_are_bounded() {
        let ids: Vec<i64> = (0..(MAX_RECORD_IDS as i64 + 50)).collect();
        let call = model_call("unlink", json!([ids]), None);
        assert_eq!(call.record_ids.len(), MAX_RECORD_IDS);
    }

    #[test]
    fn too_many_fields_are_flagged() {
        let values: serde_json::Map<String, serde_json::Value> =
            (0..MAX_FIELDS + 1).map(|i| (format!("f{i}"), json!(1))).collect();
        let call = model_call("create", json!([values]), None);
        assert_eq!(call.fields.len(), MAX_FIELDS);
        assert_eq!(call.mismatches.len(), 1);
    }

    #[test]
    fn json2_body_gives_ids_and_fields() {
        let mut call = Call::new(Protocol::Json2, CallKind::Model);
        call.method = Some("read".to_owned());
        extract_named_arguments(&mut call, &json!({"ids": [1, 2], "fields": ["name"], "context": {"lang": "fr_BE"}}));
        assert_eq!(call.record_ids, vec![1, 2]);
        assert_eq!(call.fields, vec!["name"]);
        assert!(!call.reads_all_fields);
        assert_eq!(call.context, Some(Context::Json(json!({"lang": "fr_BE"}))));
    }

    /// A step of [`field_set_matches_list_model`].
    #[derive(Clone, Debug)]
    enum Step {
        /// Adds name `n` of a pool of more than [`MAX_FIELDS`] names.
        Add(usize),
        /// Adds a run of consecutive pool names, so that sets grow past the
        /// hashing thresholds within a few steps.
        AddRun(usize, usize),
        Mark,
        /// Rolls back to the latest mark not yet used.
        Rollback,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..MAX_FIELDS + 50).prop_map(Step::Add),
            2 => (0..MAX_FIELDS + 50, 1..400usize).prop_map(|(start, len)| Step::AddRun(start, len)),
            1 => Just(Step::Mark),
            1 => Just(Step::Rollback),
        ]
    }

    /// Runs `steps` on a [`FieldSet`] and on a plain list searched from the
    /// front, and checks that both give every name the same index and end
    /// with the same names and overflow flag.
    fn check_steps(steps: &[Step]) {
        let mut set = FieldSet::default();
        let mut model: Vec<String> = Vec::new();
        let mut model_overflowed = false;
        let mut marks = Vec::new();
        let add = |set: &mut FieldSet, model: &mut Vec<String>, overflowed: &mut bool, name: String| {
            let expected = model.iter().position(|seen| *seen == name).or_else(|| {
                if model.len() >= MAX_FIELDS {
                    *overflowed = true;
                    return None;
                }
                model.push(name.clone());
                Some(model.len() - 1)
            });
            assert_eq!(set.add("", &name), expected, "index of {name}");
        };
        for step in steps {
            match *step {
                Step::Add(n) => add(&mut set, &mut model, &mut model_overflowed, format!("f{n}")),
                Step::AddRun(start, len) => {
                    for n in start..start + len {
                        add(&mut set, &mut model, &mut model_overflowed, format!("f{n}"));
                    }
                }
                Step::Mark => marks.push((set.mark(), model.len(), model_overflowed)),
                Step::Rollback => {
                    if let Some((mark, len, overflowed)) = marks.pop() {
                        set.rollback(mark);
                        model.truncate(len);
                        model_overflowed = overflowed;
                    }
                }
            }
        }
        let (names, overflowed) = set.into_names();
        assert_eq!(names, model);
        assert_eq!(overflowed, model_overflowed);
    }

    #[test]
    fn field_set_rollback_across_hash_thresholds() {
        // Grows past the linear scan and the fast hasher, falls back below
        // both, then grows again: names rolled back are new once more.
        check_steps(&[
            Step::AddRun(0, 10),
            Step::Mark,
            Step::AddRun(10, 200),
            Step::Rollback,
            Step::AddRun(5, 300),
            Step::Mark,
            Step::AddRun(900, 200),
            Step::Add(3),
            Step::Rollback,
            Step::Add(1049),
            Step::AddRun(290, 20),
        ]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..proptest::prelude::ProptestConfig::default() })]

        #[test]
        fn field_set_matches_list_model(steps in proptest::collection::vec(step(), 0..40)) {
            check_steps(&steps);
        }
    }
}
