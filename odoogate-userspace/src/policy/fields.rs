//! Field limits of a rule: `fields` for what a call sets, `read_fields` for
//! what it returns, and the narrowing `narrow_reads` allows.
//!
//! The decoders put the fields a call writes and the fields it reads in one
//! list ([`Call::fields`]), so the method tells which limit applies.
//! `web_save` both writes and reads: every field in its list must pass each
//! limit the rule sets.

use crate::config::Rule;
use crate::policy::glob::Glob;
use crate::rpc::call::Call;

/// Methods whose field list is the values they set.
const WRITES: &[&str] = &["create", "write", "copy", "web_save"];

/// Methods that set fields odoogate cannot see (`load` takes a header
/// row, `name_create` sets the record name field).
const UNSEEN_WRITES: &[&str] = &["load", "name_create"];

/// Methods whose field list is the values they return.
const READS: &[&str] = &["read", "search_read", "web_read", "web_search_read", "read_group", "export_data", "web_save"];

/// Methods that return grouped field values without a list odoogate
/// decodes.
const UNSEEN_READS: &[&str] = &["web_read_group", "formatted_read_group"];

/// Methods whose flat `fields` list the proxy can rewrite.
pub const NARROWABLE: &[&str] = &["read", "search_read"];

/// A field limit that refuses a call, with the narrowing that would let it
/// through instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRefusal {
    pub reason: String,
    pub narrowing: Option<Vec<String>>,
}

/// Checks the fields `method` sets against `rule.fields`.
pub fn check_writes(call: &Call, method: &str, rule: &Rule) -> Result<(), FieldRefusal> {
    let Some(allowed) = &rule.fields else {
        return Ok(());
    };
    if UNSEEN_WRITES.contains(&method) {
        return Err(refusal(format!("{method} sets fields odoogate cannot check against fields")));
    }
    if !WRITES.contains(&method) {
        return Ok(());
    }
    match call.fields.iter().find(|field| !matches_any(allowed, field)) {
        Some(field) => Err(refusal(format!("field {field} is not in fields"))),
        None => Ok(()),
    }
}

/// Checks the fields `method` returns against `rule.read_fields`.
pub fn check_reads(call: &Call, method: &str, rule: &Rule) -> Result<(), FieldRefusal> {
    let Some(allowed) = &rule.read_fields else {
        return Ok(());
    };
    if UNSEEN_READS.contains(&method) {
        return Err(refusal(format!("{method} returns fields odoogate cannot check against read_fields")));
    }
    if !READS.contains(&method) {
        return Ok(());
    }

    let narrowing = || (rule.narrow_reads && NARROWABLE.contains(&method)).then(|| narrowed(call, allowed)).flatten();
    if call.reads_all_fields {
        let reason = "the call reads all fields, but read_fields limits them".to_owned();
        return Err(FieldRefusal { reason, narrowing: narrowing() });
    }
    match call.fields.iter().find(|field| !matches_any(allowed, field)) {
        Some(field) => {
            let reason = format!("field {field} is not in read_fields");
            Err(FieldRefusal { reason, narrowing: narrowing() })
        }
        None => Ok(()),
    }
}

/// Returns the field list a read is narrowed to: the requested fields that
/// `allowed` matches, or every field `allowed` names when all were
/// requested. `None` when that list would be empty (Odoo reads an empty
/// list as all fields) or when a glob with a wildcard cannot be listed.
fn narrowed(call: &Call, allowed: &[Glob]) -> Option<Vec<String>> {
    let fields: Vec<String> = if call.reads_all_fields {
        allowed.iter().map(|glob| glob.literal().map(str::to_owned)).collect::<Option<_>>()?
    } else {
        call.fields.iter().filter(|field| matches_any(allowed, field)).map(str::to_owned).collect()
    };
    (!fields.is_empty()).then_some(fields)
}

fn matches_any(globs: &[Glob], field: &str) -> bool {
    globs.iter().any(|glob| glob.matches(field))
}

fn refusal(reason: String) -> FieldRefusal {
    FieldRefusal { reason, narrowing: None }
}
