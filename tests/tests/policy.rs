//! Rule limits end to end, through the PyPI clients: time windows,
//! `max_records`, written fields, guarded calls, rule rate limits and read
//! narrowing (also of the positional `object.execute`). Enforce mode denies with each protocol's error, and
//! the call never reaches Odoo. Observe mode lets it through and records
//! `would_deny` with the same rule and reason.

mod common;

use common::{API_KEY, Record, Site, assert_field, find};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use odoogate::secret::Secret;
use serde_json::Value as Json;

/// The zone of the time windows: one with daylight saving time.
const ZONE: &str = "America/New_York";

/// Windows around the current hour in [`ZONE`]: one open from an hour
/// before to two hours after it (across midnight when the hour is 23 or
/// 0), and two closed ones, six and twelve hours away. The test takes
/// minutes, so none of them opens or closes while it runs.
fn windows() -> (String, [String; 2]) {
    let zone = TimeZone::get(ZONE).expect("the tz database has America/New_York");
    let hour = i32::from(Timestamp::now().to_zoned(zone).hour());
    let window = |from: i32, to: i32| format!("Mon-Sun {:02}:00-{:02}:00", from.rem_euclid(24), to.rem_euclid(24));
    (window(hour - 1, hour + 2), [window(hour + 6, hour + 7), window(hour + 12, hour + 13)])
}

/// Two integrations with the same rules but for `res.users.write`:
/// `assistant` reaches it only through a wildcard rule, `admin-sync` names
/// it exactly. Both may call what OdooRPC calls at login, and `search`,
/// since odoo-client-lib's `search_read` is a `search` and a `read`.
/// `identity` is `token` for scoped tokens, else the two API keys.
fn integrations(identity: &str) -> String {
    let (open, [closed, later]) = windows();
    let rules = |extra: &str| {
        format!(
            r#"allow = [
  {{ models = ["res.partner"], methods = ["search_read", "search"], hours = ["{open}"], timezone = "{ZONE}" }},
  {{ models = ["res.partner"], methods = ["search_count"], hours = ["{closed}", "{later}"], timezone = "{ZONE}" }},
  {{ models = ["res.partner"], methods = ["write"], fields = ["phone"], max_records = 2 }},
  {{ models = ["res.partner"], methods = ["name_search"], rate = "1/h", burst = 2 }},
  {{ models = ["res.partner"], methods = ["read"], read_fields = ["name"], narrow_reads = true }},
  {{ models = ["res.users", "ir.model"], methods = ["context_get", "search", "read", "search_read"] }},
  {extra},
]"#
        )
    };
    let (assistant, admin) = match identity {
        "token" => ("{ token = true }".to_owned(), "{ token = true }".to_owned()),
        _ => (
            format!("{{ api_key_sha256 = [\"{}\"] }}", Secret::new(API_KEY).sha256_hex()),
            format!("{{ api_key_sha256 = [\"{}\"] }}", Secret::new(common::OTHER_API_KEY).sha256_hex()),
        ),
    };
    format!(
        "[[integration]]\nname = \"assistant\"\nmatch = {assistant}\n{}\n\n\
         [[integration]]\nname = \"admin-sync\"\nmatch = {admin}\n{}\n\n\
         [[integration]]\nname = \"hosts\"\nmatch = {{ ip = [\"127.0.0.1/32\", \"10.214.0.0/24\"] }}\n",
        rules(r#"{ models = ["res.users", "ir.*"], methods = ["*"] }"#),
        rules(r#"{ models = ["res.users"], methods = ["write"] }"#),
    )
}

/// Returns the line a client printed for `step`.
fn step<'a>(lines: &'a [Json], step: &str) -> &'a Json {
    lines.iter().find(|line| line["step"] == step).unwrap_or_else(|| panic!("no {step} line in {lines:?}"))
}

/// Asserts that `step` failed with the refusal of its protocol.
fn assert_refused(library: &str, lines: &[Json], name: &str) {
    assert_refused_with(library, lines, name, "403");
}

/// Asserts that `step` failed with the refusal of its protocol, and for
/// JSON-2 with `status`.
fn assert_refused_with(library: &str, lines: &[Json], name: &str, status: &str) {
    let line = step(lines, name);
    assert_eq!(line["ok"], false, "{library} {name} is refused: {line}");
    let message = line["message"].as_str().unwrap_or_default();
    match library {
        "xmlrpc" => assert_eq!(line["fault_code"], 4, "{library} {name}: {line}"),
        "odoolib-xmlrpc" => assert!(line["fault_code"].as_str().is_some_and(|code| code.contains("AccessError")), "{line}"),
        "odoorpc" => assert_eq!(line["odoo_error"], "odoo.exceptions.AccessError", "{library} {name}: {line}"),
        "odoolib-jsonrpc" => assert!(message.contains("odoo.exceptions.AccessError"), "{library} {name}: {line}"),
        "odoolib-json2" => assert!(message.contains(status), "{library} {name}: {line}"),
        other => panic!("unknown library {other}"),
    }
}

/// Returns the records of `model.method` calls whose reason contains
/// `reason`.
fn refusals<'a>(records: &'a [Record], model: &str, method: &str, reason: &str) -> Vec<&'a Record> {
    find(records, Some(model), method)
        .into_iter()
        .filter(|record| record.get("ODOOGATE_REASON").is_some_and(|text| text.contains(reason)))
        .collect()
}

const LIBRARIES: [&str; 5] = ["xmlrpc", "odoorpc", "odoolib-xmlrpc", "odoolib-jsonrpc", "odoolib-json2"];

#[test]
fn rule_limits_through_real_clients() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let mut site = Site::start_enforce("limits", &[], &integrations("token"), "deny", None)?;
    let assistant = site.create_token("assistant")?;
    let admin = site.create_token("admin-sync")?;
    let port = site.port.to_string();

    for (run, library) in LIBRARIES.into_iter().enumerate() {
        let lines = site.run_client("enforce_client.py", &[library, "127.0.0.1", &port, &assistant, "policy"], None, false)?;
        let ok = |name: &str| {
            let line = step(&lines, name);
            assert_eq!(line["ok"], true, "{library} {name} is allowed: {lines:?}");
            line["result"].clone()
        };
        assert_eq!(ok("in_hours")["rows"], 3, "{library}: {lines:?}");
        assert_refused(library, &lines, "out_of_hours");
        assert_eq!(ok("write_two"), true, "{library}");
        assert_refused(library, &lines, "write_three");
        assert_refused(library, &lines, "write_email");
        assert_refused(library, &lines, "write_groups");
        // The rule's bucket has room for two calls and refills one an hour,
        // so the first client spends it and every later call is over the
        // limit.
        for name in ["rate_1", "rate_2", "rate_3"] {
            if run == 0 && name != "rate_3" {
                ok(name);
            } else {
                assert_refused_with(library, &lines, name, "429");
            }
        }
        assert_eq!(ok("narrowed")["fields"], serde_json::json!(["id", "name"]), "{library}: only the allowed field comes back");
        if matches!(library, "xmlrpc" | "odoorpc") {
            let narrowed = ok("narrowed_execute");
            assert_eq!(narrowed["rows"], 2, "{library}");
            assert_eq!(narrowed["fields"], serde_json::json!(["id", "name"]), "{library}: object.execute is narrowed too");
        }

        let admin_lines = site.run_client("enforce_client.py", &[library, "127.0.0.1", &port, &admin, "policy"], None, false)?;
        let groups = step(&admin_lines, "write_groups");
        assert_eq!(groups["ok"], true, "{library}: a rule naming res.users.write allows the groups write: {admin_lines:?}");
    }

    // Odoo never saw a refused call, and the narrowed reads asked it for
    // the allowed field only.
    let requests = site.upstream_requests();
    let of = |method: &str| -> Vec<&Json> {
        requests.iter().filter(|entry| entry["params"]["model_method"] == method || entry["method"] == method).collect()
    };
    assert!(of("search_count").is_empty(), "out-of-hours calls stayed out: {requests:?}");
    assert_eq!(
        of("write").len(),
        3 * LIBRARIES.len(),
        "both tokens' two-record writes and admin-sync's groups writes only: {requests:?}"
    );
    let reads = of("read");
    assert!(!reads.is_empty(), "{requests:?}");
    for read in &reads {
        if let Some(fields) = read["params"].get("fields") {
            assert_eq!(fields, &serde_json::json!(["name"]), "Odoo received the narrowed field list: {read}");
        }
    }

    let records = site.stop_and_read(40)?;
    for (method, reason, index, per_client) in [
        ("search_count", "the call is outside", 1, 1),
        ("write", "the call targets 3 records, above max_records = 2", 2, 1),
        ("write", "field email is not in fields", 2, 1),
        ("name_search", "rate", 3, 3),
    ] {
        let refused = refusals(&records, "res.partner", method, reason);
        let expected = 2 * (LIBRARIES.len() * per_client - if per_client == 3 { 2 } else { 0 });
        assert_eq!(refused.len(), expected, "{method} refused for {reason:?} by each client and token: {refused:?}");
        for record in refused {
            assert_field(record, "ODOOGATE_DECISION", "deny");
            let integration = &record["ODOOGATE_INTEGRATION"];
            assert_field(record, "ODOOGATE_RULE", &format!("{integration}.allow[{index}]"));
        }
    }
    let guarded = refusals(&records, "res.users", "write", "is a guarded call because");
    assert_eq!(guarded.len(), LIBRARIES.len(), "assistant's groups writes: {guarded:?}");
    for record in &guarded {
        assert_field(record, "ODOOGATE_INTEGRATION", "assistant");
        assert_field(record, "ODOOGATE_RULE", "assistant.allow[6]");
    }
    let narrowed = refusals(&records, "res.partner", "read", "with the read narrowed to fields name");
    assert!(narrowed.len() >= 2 * LIBRARIES.len(), "{narrowed:?}");
    assert!(narrowed.iter().all(|record| record["ODOOGATE_DECISION"] == "allow"), "{narrowed:?}");
    Ok(())
}

#[test]
fn rule_limits_observed_as_would_deny() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let mut site = Site::start("limits-observe", &[], &integrations("api_key"), "allow")?;
    let port = site.port.to_string();
    for library in ["xmlrpc", "odoolib-json2"] {
        let lines = site.run_client("enforce_client.py", &[library, "127.0.0.1", &port, API_KEY, "policy"], None, false)?;
        for name in ["in_hours", "out_of_hours", "write_two", "write_three", "write_email", "write_groups", "rate_3", "narrowed"] {
            assert_eq!(step(&lines, name)["ok"], true, "{library} {name}: observe mode changes nothing: {lines:?}");
        }
        assert_eq!(
            step(&lines, "narrowed")["result"]["fields"],
            serde_json::json!(["email", "id", "name"]),
            "{library}: observe mode narrows nothing"
        );
    }

    let records = site.stop_and_read(14)?;
    // xmlrpc.client also reads through object.execute: three reads in all.
    // The first client spends the rate bucket, and a call over the limit
    // uses up nothing, so the second client's three calls are all over it.
    for (model, method, reason, count) in [
        ("res.partner", "search_count", "the call is outside", 2),
        ("res.partner", "write", "the call targets 3 records, above max_records = 2", 2),
        ("res.partner", "write", "field email is not in fields", 2),
        ("res.partner", "name_search", "rate", 4),
        ("res.users", "write", "is a guarded call because", 2),
        ("res.partner", "read", "field email is not in read_fields", 3),
    ] {
        let refused = refusals(&records, model, method, reason);
        assert_eq!(refused.len(), count, "{model}.{method} would be refused once per call: {refused:?}");
        for record in refused {
            assert_field(record, "ODOOGATE_DECISION", "would_deny");
            assert_field(record, "ODOOGATE_INTEGRATION", "assistant");
            assert_field(record, "ODOOGATE_OUTCOME", "ok");
        }
    }
    Ok(())
}
