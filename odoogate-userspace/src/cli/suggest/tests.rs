use std::io::Write as _;
use std::net::IpAddr;
use std::time::SystemTime;

use super::suggest_rules;
use crate::audit::jsonl::encode_line;
use crate::audit::reader::{self, AuditQuery};
use crate::audit::record::{AuditEvent, AuditRecord, Decision};

fn call(integration: Option<&str>, model: Option<&str>, method: &str, fields: &[&str]) -> AuditRecord {
    let mut record = AuditRecord::new(AuditEvent::Call, "call");
    record.decision = Some(Decision::Allow);
    record.integration = integration.map(str::to_owned);
    record.model = model.map(str::to_owned);
    record.method = Some(method.to_owned());
    record.fields = fields.iter().map(|field| (*field).to_owned()).collect();
    record
}

fn from(mut record: AuditRecord, ip: &str, cgroup: Option<&str>) -> AuditRecord {
    record.src_ip = Some(ip.parse::<IpAddr>().unwrap());
    record.cgroup = cgroup.map(str::to_owned);
    record
}

/// Writes `records` as a JSON lines audit file and reads it back with the
/// audit reader.
fn round_trip(name: &str, records: &[AuditRecord]) -> Vec<reader::AuditEntry> {
    let path = std::env::temp_dir().join(format!("odoogate-suggest-{name}-{}.jsonl", std::process::id()));
    let mut file = std::fs::File::create(&path).unwrap();
    for record in records {
        file.write_all(encode_line(record, SystemTime::now()).as_bytes()).unwrap();
    }
    drop(file);
    let entries = reader::read(&AuditQuery { file: Some(path.clone()), ..AuditQuery::default() }).unwrap().entries;
    std::fs::remove_file(&path).unwrap();
    entries
}

fn synthetic() -> Vec<AuditRecord> {
    let crm = Some("crm");
    vec![
        call(crm, None, "common.authenticate", &[]),
        call(crm, Some("crm.lead"), "search_read", &["name", "email_from"]),
        call(crm, Some("crm.lead"), "search_read", &["name", "stage_id"]),
        call(crm, Some("crm.lead"), "write", &["stage_id"]),
        call(crm, Some("res.partner"), "search_read", &["name"]),
        call(crm, Some("res.partner"), "write", &["name"]),
        call(crm, Some("res.partner"), "write", &["email"]),
        call(crm, Some("crm.lead"), "search_read", &["name"]),
        call(Some("sync"), Some("product.product"), "read", &[]),
        call(Some("sync"), Some("product.template"), "read", &[]),
        call(Some("sync"), None, "db.list", &[]),
        from(call(None, Some("res.partner"), "create", &["name"]), "127.0.0.1", Some("system.slice/n8n.service")),
        from(call(None, Some("res.partner"), "search", &[]), "203.0.113.7", None),
        AuditRecord::new(AuditEvent::DecodeError, "not a call"),
    ]
}

#[test]
fn suggest_groups_models_by_methods_and_fields() {
    let entries = round_trip("exact", &synthetic());
    let expected = r#"# crm: 7 model calls
[[integration]]
name = "crm"
allow = [
    # 4 calls: crm.lead.search_read 3, crm.lead.write 1
    { models = ["crm.lead"], methods = ["search_read", "write"], fields = ["stage_id"], read_fields = ["email_from", "name", "stage_id"] },
    # 3 calls: res.partner.search_read 1, res.partner.write 2
    { models = ["res.partner"], methods = ["search_read", "write"], fields = ["email", "name"], read_fields = ["name"] },
]

# sync: 3 model calls
[[integration]]
name = "sync"
allow = [
    # 1 call: db.list 1
    { models = ["db"], methods = ["list"] },
    # 2 calls: product.product.read 1, product.template.read 1
    { models = ["product.product", "product.template"], methods = ["read"] },
]

# Unidentified calls by source: candidate integrations to rename and paste.

# unidentified calls from cgroup system.slice/n8n.service: 1 model call
[[integration]]
name = "candidate-1"
match = { cgroup = "system.slice/n8n.service" }
allow = [
    # 1 call: res.partner.create 1
    { models = ["res.partner"], methods = ["create"], fields = ["name"] },
]

# unidentified calls from 203.0.113.7: 1 model call
[[integration]]
name = "candidate-2"
match = { ip = ["203.0.113.7/32"] }
allow = [
    # 1 call: res.partner.search 1
    { models = ["res.partner"], methods = ["search"] },
]

"#;
    assert_eq!(suggest_rules(&entries), expected);
}

#[test]
fn suggest_output_is_valid_config() {
    let entries = round_trip("parse", &synthetic());
    let suggested = suggest_rules(&entries);
    // The identified integrations keep their own match; give them one here.
    let with_matches = suggested
        .replace("name = \"crm\"\n", "name = \"crm\"\nmatch = { ip = [\"10.0.0.1/32\"] }\n")
        .replace("name = \"sync\"\n", "name = \"sync\"\nmatch = { ip = [\"10.0.0.2/32\"] }\n");
    let text = format!("[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n\n[policy]\nmode = \"observe\"\nunidentified = \"deny\"\n\n{with_matches}");
    let config = crate::config::parse(&text, "suggested.toml").unwrap_or_else(|error| panic!("{error}\n{text}"));
    assert_eq!(config.integrations.len(), 4);
    assert_eq!(config.integration("crm").unwrap().rules.len(), 2);
}

#[test]
fn suggest_read_all_drops_read_fields() {
    let crm = Some("crm");
    let records = [
        call(crm, Some("crm.lead"), "read", &["name"]),
        call(crm, Some("crm.lead"), "read", &[]),
    ];
    let suggested = suggest_rules(&round_trip("all", &records));
    assert!(suggested.contains("{ models = [\"crm.lead\"], methods = [\"read\"] },"), "{suggested}");
}

#[test]
fn suggest_without_calls_is_empty() {
    assert_eq!(suggest_rules(&[]), "");
}
