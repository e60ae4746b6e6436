//! `odoogate suggest`: least-privilege allow rules from the audit records.
//!
//! For each integration, the model calls it made become rules that allow
//! exactly those calls: models that saw the same methods (and the same
//! fields) share one rule, so the rules' models times methods is the set
//! of calls seen. Calls no integration matched are grouped by source into
//! candidate integrations with a `match` table. The output is TOML with the
//! call counts as comments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::reader::{self, AuditEntry, AuditQuery};
use crate::policy::DATABASE_MODEL;

/// Methods whose `ODOOGATE_FIELDS` are the values they set, for `fields`.
// NOTE: the same lists as the policy engine's field checks (the `fields`
// and `read_fields` doc comments in config); keep them in step.
const WRITES: &[&str] = &["create", "write", "copy", "web_save"];
/// Methods that set fields the records do not show: a rule with `fields`
/// would refuse them.
const UNSEEN_WRITES: &[&str] = &["load", "name_create"];
/// Methods whose `ODOOGATE_FIELDS` are the values they return, for
/// `read_fields`.
const READS: &[&str] = &["read", "search_read", "web_read", "web_search_read", "read_group", "export_data", "web_save"];
/// Methods that return fields the records do not show.
const UNSEEN_READS: &[&str] = &["web_read_group", "formatted_read_group"];

#[derive(clap::Args)]
pub struct SuggestArgs {
    /// Only records since this time: `7d`, `2h`, `30m`, or anything
    /// `journalctl --since` accepts.
    #[arg(long, default_value = "7d")]
    since: String,
    /// Only this integration (`unidentified` for the candidates only).
    #[arg(long)]
    integration: Option<String>,
    /// Read JSON lines written with `[audit] output = "file"` instead of
    /// journald.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Read the journal files in this directory (`journalctl -D`).
    #[arg(long)]
    directory: Option<PathBuf>,
}

pub fn suggest(args: &SuggestArgs) -> anyhow::Result<ExitCode> {
    let query = AuditQuery {
        since: Some(args.since.clone()),
        integration: args.integration.clone(),
        decision: None,
        model: None,
        file: args.file.clone(),
        journal_directory: args.directory.clone(),
    };
    let read = reader::read(&query)?;
    if let Some(note) = super::audit::skipped_lines_note(&query, read.skipped_lines) {
        eprintln!("{note}");
    }
    print!("{}", suggest_rules(&read.entries));
    Ok(ExitCode::SUCCESS)
}

/// Returns the suggested TOML for the call records among `entries`.
pub fn suggest_rules(entries: &[AuditEntry]) -> String {
    let mut identified: BTreeMap<String, Usage> = BTreeMap::new();
    let mut unidentified: BTreeMap<Source, Usage> = BTreeMap::new();
    for entry in entries.iter().filter(|entry| entry.field("ODOOGATE_EVENT") == Some("call")) {
        let Some(call) = SeenCall::of(entry) else { continue };
        match entry.field("ODOOGATE_INTEGRATION") {
            Some(name) => identified.entry(name.to_owned()).or_default().add(&call),
            None => unidentified.entry(Source::of(entry)).or_default().add(&call),
        }
    }

    let mut out = String::new();
    for (name, usage) in &identified {
        let _ = writeln!(out, "# {name}: {}", plural(usage.calls, "model call"));
        let _ = writeln!(out, "[[integration]]");
        let _ = writeln!(out, "name = {}", quote(name));
        write_allow(&mut out, usage);
        out.push('\n');
    }
    if !unidentified.is_empty() {
        let _ = writeln!(out, "# Unidentified calls by source: candidate integrations to rename and paste.");
        out.push('\n');
    }
    for (index, (source, usage)) in unidentified.iter().enumerate() {
        let _ = writeln!(out, "# {}: {}", source.describe(), plural(usage.calls, "model call"));
        let _ = writeln!(out, "[[integration]]");
        let _ = writeln!(out, "name = \"candidate-{}\"", index + 1);
        let _ = writeln!(out, "match = {}", source.match_table());
        write_allow(&mut out, usage);
        out.push('\n');
    }
    out
}

/// One model call read back from a record.
struct SeenCall<'a> {
    model: &'a str,
    method: &'a str,
    /// `None` when the record has no `ODOOGATE_FIELDS`.
    fields: Option<Vec<&'a str>>,
}

impl<'a> SeenCall<'a> {
    /// Reads a model or database call. Authentication and metadata calls
    /// need no rule and give `None`.
    fn of(entry: &'a AuditEntry) -> Option<Self> {
        let method = entry.field("ODOOGATE_METHOD")?;
        let fields = entry.field("ODOOGATE_FIELDS").map(|list| list.split(',').filter(|f| !f.is_empty()).collect());
        match entry.field("ODOOGATE_MODEL") {
            Some(model) => Some(Self { model, method, fields }),
            // Database calls are recorded as `db.<method>` without a model
            // and are matched as model `db`.
            None => method.strip_prefix("db.").map(|method| Self { model: DATABASE_MODEL, method, fields: None }),
        }
    }
}

/// What one integration (or one unidentified source) did, by model.
#[derive(Default)]
struct Usage {
    calls: u64,
    models: BTreeMap<String, ModelUsage>,
}

#[derive(Default)]
struct ModelUsage {
    methods: BTreeMap<String, u64>,
    /// Fields set; `None` once a write was seen whose fields the records
    /// cannot show.
    writes: Option<BTreeSet<String>>,
    /// Fields returned; `None` once a read of all fields was seen.
    reads: Option<BTreeSet<String>>,
}

impl Usage {
    fn add(&mut self, call: &SeenCall<'_>) {
        self.calls += 1;
        let model = self.models.entry(call.model.to_owned()).or_insert_with(|| ModelUsage {
            methods: BTreeMap::new(),
            writes: Some(BTreeSet::new()),
            reads: Some(BTreeSet::new()),
        });
        *model.methods.entry(call.method.to_owned()).or_default() += 1;
        model.note_fields(call);
    }

    /// Groups models that saw the same methods and fields into one rule,
    /// in the order of each rule's first model.
    fn rules(&self) -> Vec<(RuleKey, Vec<(&str, &ModelUsage)>)> {
        let mut rules: BTreeMap<RuleKey, Vec<(&str, &ModelUsage)>> = BTreeMap::new();
        for (model, usage) in &self.models {
            let key = RuleKey {
                methods: usage.methods.keys().cloned().collect(),
                fields: usage.writes.clone().filter(|fields| !fields.is_empty()),
                read_fields: usage.reads.clone().filter(|fields| !fields.is_empty()),
            };
            rules.entry(key).or_default().push((model, usage));
        }
        let mut rules: Vec<_> = rules.into_iter().collect();
        rules.sort_by(|(_, a), (_, b)| a[0].0.cmp(b[0].0));
        rules
    }
}

impl ModelUsage {
    fn note_fields(&mut self, call: &SeenCall<'_>) {
        let method = call.method;
        if UNSEEN_WRITES.contains(&method) {
            self.writes = None;
        }
        if UNSEEN_READS.contains(&method) {
            self.reads = None;
        }
        let fields = call.fields.as_deref().unwrap_or_default();
        if WRITES.contains(&method) {
            if let Some(writes) = &mut self.writes {
                writes.extend(fields.iter().map(|field| (*field).to_owned()));
            }
        }
        if READS.contains(&method) {
            // A read without a field list returns every field.
            match (&mut self.reads, fields.is_empty()) {
                (_, true) => self.reads = None,
                (Some(reads), false) => reads.extend(fields.iter().map(|field| (*field).to_owned())),
                (None, false) => {}
            }
        }
    }
}

/// One suggested rule: its methods and field limits.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RuleKey {
    methods: BTreeSet<String>,
    fields: Option<BTreeSet<String>>,
    read_fields: Option<BTreeSet<String>>,
}

fn write_allow(out: &mut String, usage: &Usage) {
    let _ = writeln!(out, "allow = [");
    for (key, models) in usage.rules() {
        let counts: Vec<String> = models
            .iter()
            .flat_map(|(model, usage)| usage.methods.iter().map(move |(method, count)| format!("{model}.{method} {count}")))
            .collect();
        let total: u64 = models.iter().flat_map(|(_, usage)| usage.methods.values()).sum();
        let _ = writeln!(out, "    # {}: {}", plural(total, "call"), counts.join(", "));

        let names: Vec<&str> = models.iter().map(|(model, _)| *model).collect();
        let mut rule = format!("models = {}, methods = {}", list(names), list(key.methods.iter().map(String::as_str)));
        if let Some(fields) = &key.fields {
            let _ = write!(rule, ", fields = {}", list(fields.iter().map(String::as_str)));
        }
        if let Some(fields) = &key.read_fields {
            let _ = write!(rule, ", read_fields = {}", list(fields.iter().map(String::as_str)));
        }
        let _ = writeln!(out, "    {{ {rule} }},");
    }
    let _ = writeln!(out, "]");
}

/// Where unidentified calls came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// A local client, by its cgroup (its address is the host's own).
    Cgroup(String),
    Ip(String),
    Unknown,
}

impl Source {
    fn of(entry: &AuditEntry) -> Self {
        match (entry.field("ODOOGATE_CGROUP"), entry.field("ODOOGATE_SRC_IP")) {
            (Some(cgroup), _) => Self::Cgroup(cgroup.to_owned()),
            (None, Some(ip)) => Self::Ip(ip.to_owned()),
            (None, None) => Self::Unknown,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Cgroup(path) => format!("unidentified calls from cgroup {path}"),
            Self::Ip(ip) => format!("unidentified calls from {ip}"),
            Self::Unknown => "unidentified calls from an unknown source".to_owned(),
        }
    }

    fn match_table(&self) -> String {
        match self {
            Self::Cgroup(path) => format!("{{ cgroup = {} }}", quote(path)),
            Self::Ip(ip) => {
                let prefix = if ip.contains(':') { 128 } else { 32 };
                format!("{{ ip = [{}] }}", quote(&format!("{ip}/{prefix}")))
            }
            Self::Unknown => "{ }  # TODO: no address or cgroup was recorded; write the match by hand".to_owned(),
        }
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 { format!("1 {noun}") } else { format!("{count} {noun}s") }
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.into_iter().map(quote).collect();
    format!("[{}]", quoted.join(", "))
}

/// Quotes `text` as a TOML basic string.
fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests;
