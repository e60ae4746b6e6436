//! Observe mode end to end: real eBPF programs in namespaces made by the
//! test, a private journald, the Odoo-like upstream and real Odoo clients
//! from PyPI. Each test asserts the exact audit records the calls produce.

mod common;

use common::{API_KEY, CLIENT_IPV6_ADDRESS, OTHER_API_KEY, PASSWORD, Record, Site, assert_field, calls, find};
use odoogate::secret::Secret;

fn sha256(value: &str) -> String {
    Secret::new(value).sha256_hex()
}

fn all_ok(results: &[serde_json::Value]) {
    for result in results {
        if let Some(ok) = result.get("ok") {
            assert_eq!(ok, true, "client call failed: {result}");
        }
    }
}

#[test]
fn xmlrpc_calls_attributed_by_api_key() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = format!(
        r#"[[integration]]
name = "reporting-script"
match = {{ api_key_sha256 = ["{}"] }}
allow = [{{ models = ["res.partner", "res.partner.category"], methods = ["search_read", "search", "create", "write"] }}]
"#,
        sha256(API_KEY)
    );
    let mut site = Site::start("apikey", &[], &integrations, "allow")?;
    let results = site.run_client("xmlrpc_stdlib_client.py", &[&site.local_url(), API_KEY], None, false)?;
    let unlink = results.iter().find(|r| r["call"] == "res.partner.unlink").expect("unlink result");
    assert_eq!(unlink["ok"], true, "observe mode must not change the traffic");
    let records = site.stop_and_read(7)?;

    let version = find(&records, None, "common.version");
    assert_eq!(version.len(), 1, "common.version records");
    assert_field(version[0], "ODOOGATE_DECISION", "allow");
    assert_field(version[0], "ODOOGATE_IDENTITY", "none");
    assert_field(version[0], "ODOOGATE_PROTOCOL", "xmlrpc");

    let login = find(&records, None, "common.authenticate");
    assert_eq!(login.len(), 1, "common.authenticate records");
    assert_field(login[0], "ODOOGATE_INTEGRATION", "reporting-script");
    assert_field(login[0], "ODOOGATE_IDENTITY", "api_key");
    assert_field(login[0], "ODOOGATE_LOGIN", "admin");
    assert_field(login[0], "ODOOGATE_UID", "2");
    assert_field(login[0], "ODOOGATE_KEY_FINGERPRINT", &sha256(API_KEY));

    let search_read = find(&records, Some("res.partner"), "search_read");
    assert_eq!(search_read.len(), 1, "search_read records");
    let record = search_read[0];
    assert_field(record, "ODOOGATE_DECISION", "allow");
    assert_field(record, "ODOOGATE_INTEGRATION", "reporting-script");
    assert_field(record, "ODOOGATE_IDENTITY", "api_key");
    assert_field(record, "ODOOGATE_PROTOCOL", "xmlrpc");
    assert_field(record, "ODOOGATE_DB", "odoo19");
    assert_field(record, "ODOOGATE_UID", "2");
    assert_field(record, "ODOOGATE_OUTCOME", "ok");
    assert_field(record, "ODOOGATE_SRC_IP", "127.0.0.1");
    assert_field(record, "ODOOGATE_FIELDS", "name,email");
    assert!(record.contains_key("ODOOGATE_LATENCY_US"), "latency is recorded");
    assert!(record.get("ODOOGATE_RULE").is_some_and(|rule| rule.starts_with("reporting-script")), "rule is named");
    assert!(
        !record.values().any(|value| value.contains(API_KEY)),
        "no record field may contain the API key"
    );

    let create = find(&records, Some("res.partner.category"), "create");
    assert_eq!(create.len(), 1, "category create records");
    assert_field(create[0], "ODOOGATE_DECISION", "allow");
    assert_field(create[0], "ODOOGATE_FIELDS", "name");

    let write = find(&records, Some("res.partner"), "write");
    assert_eq!(write.len(), 1, "write records");
    assert_field(write[0], "ODOOGATE_DECISION", "allow");
    assert_field(write[0], "ODOOGATE_RECORD_IDS", "3");

    let unlink = find(&records, Some("res.partner"), "unlink");
    assert_eq!(unlink.len(), 1, "unlink records");
    assert_field(unlink[0], "ODOOGATE_DECISION", "would_deny");
    assert_field(unlink[0], "ODOOGATE_INTEGRATION", "reporting-script");
    assert_field(unlink[0], "ODOOGATE_RECORD_IDS", "1,2");
    assert_field(unlink[0], "ODOOGATE_OUTCOME", "ok");
    assert!(unlink[0]["ODOOGATE_REASON"].contains("unlink"), "reason names the method");
    assert_eq!(unlink[0]["PRIORITY"], "4", "denials are warnings");

    let legacy: Vec<_> = calls(&records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_PROTOCOL").map(String::as_str) == Some("xmlrpc_legacy"))
        .collect();
    assert_eq!(legacy.len(), 1, "legacy /xmlrpc/object records");
    assert_field(legacy[0], "ODOOGATE_MODEL", "res.partner");
    assert_field(legacy[0], "ODOOGATE_METHOD", "search");
    assert_field(legacy[0], "ODOOGATE_DECISION", "allow");

    assert_eq!(calls(&records).len(), 7, "one record per call");
    Ok(())
}

#[test]
fn real_clients_attributed_by_ip_cgroup_and_key() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = format!(
        r#"[[integration]]
name = "n8n"
match = {{ ip = ["10.214.0.2/32"] }}
allow = [
  {{ models = ["res.partner", "crm.lead"], methods = ["*"] }},
  {{ models = ["res.users"], methods = ["context_get"] }},
]

[[integration]]
name = "importer"
match = {{ cgroup = "{{cgroup:importer}}" }}
allow = [{{ models = ["res.partner"], methods = ["search_read", "create"] }}]

[[integration]]
name = "mcp"
match = {{ api_key_sha256 = ["{}"] }}
allow = [{{ models = ["res.partner"], methods = ["search_read", "create"] }}]
"#,
        sha256(OTHER_API_KEY)
    );
    let mut site = Site::start("clients", &["importer", "stranger"], &integrations, "deny")?;
    let port = site.port.to_string();
    let remote_host = common::ODOO_ADDRESS;

    all_ok(&site.run_client("odoorpc_client.py", &[remote_host, &port, PASSWORD], None, true)?);
    all_ok(&site.run_client("odoolib_client.py", &["127.0.0.1", &port, "xmlrpc", PASSWORD], Some("importer"), false)?);
    all_ok(&site.run_client("odoolib_client.py", &["127.0.0.1", &port, "jsonrpc", PASSWORD], Some("stranger"), false)?);
    let json2 = site.run_client("odoolib_client.py", &["127.0.0.1", &port, "json2", OTHER_API_KEY], None, false)?;
    assert!(json2.iter().all(|r| r["ok"] == true), "json2 client calls succeed in observe mode: {json2:?}");
    let records = site.stop_and_read(20)?;

    // OdooRPC over JSON-RPC from 10.214.0.2: identified by IP.
    let n8n: Vec<_> = calls(&records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_INTEGRATION").map(String::as_str) == Some("n8n"))
        .collect();
    assert!(n8n.len() >= 6, "odoorpc calls recorded: {}", n8n.len());
    for record in &n8n {
        assert_field(record, "ODOOGATE_IDENTITY", "ip");
        assert_field(record, "ODOOGATE_SRC_IP", "10.214.0.2");
        assert_field(record, "ODOOGATE_DECISION", "allow");
    }
    let create = find(&records, Some("crm.lead"), "create");
    assert_eq!(create.len(), 1, "crm.lead.create records");
    assert_field(create[0], "ODOOGATE_PROTOCOL", "jsonrpc");
    assert_field(create[0], "ODOOGATE_INTEGRATION", "n8n");
    assert_field(create[0], "ODOOGATE_FIELDS", "name,email_from");

    // odoo-client-lib over legacy XML-RPC in the importer cgroup.
    let importer: Vec<_> = calls(&records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_INTEGRATION").map(String::as_str) == Some("importer"))
        .collect();
    assert!(importer.len() >= 4, "importer calls recorded: {}", importer.len());
    let importer_cgroup = site.cgroups[0].relative().to_owned();
    for record in &importer {
        assert_field(record, "ODOOGATE_IDENTITY", "cgroup");
        assert_field(record, "ODOOGATE_CGROUP", &importer_cgroup);
        assert_field(record, "ODOOGATE_PROTOCOL", "xmlrpc_legacy");
        assert!(record.contains_key("ODOOGATE_PID"), "pid of the connecting process");
        assert!(record.get("ODOOGATE_COMM").is_some_and(|comm| comm.starts_with("python")), "comm: {record:?}");
    }
    let importer_write: Vec<_> = importer
        .iter()
        .filter(|r| r.get("ODOOGATE_METHOD").map(String::as_str) == Some("write"))
        .collect();
    assert_eq!(importer_write.len(), 1, "importer write records");
    assert_field(importer_write[0], "ODOOGATE_DECISION", "would_deny");

    // odoo-client-lib over JSON-RPC from a cgroup no integration names.
    let stranger_cgroup = site.cgroups[1].relative().to_owned();
    let stranger: Vec<_> = calls(&records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_CGROUP") == Some(&stranger_cgroup))
        .collect();
    assert!(stranger.len() >= 3, "stranger calls recorded: {}", stranger.len());
    for record in &stranger {
        assert!(!record.contains_key("ODOOGATE_INTEGRATION"), "unidentified: {record:?}");
        assert_field(record, "ODOOGATE_IDENTITY", "none");
        assert_field(record, "ODOOGATE_DECISION", "would_deny");
        assert_field(record, "ODOOGATE_PROTOCOL", "jsonrpc");
    }

    // odoo-client-lib over JSON-2 with its own API key.
    let mcp: Vec<_> = calls(&records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_INTEGRATION").map(String::as_str) == Some("mcp"))
        .collect();
    assert_eq!(mcp.len(), 3, "json2 calls: {mcp:?}");
    for record in &mcp {
        assert_field(record, "ODOOGATE_IDENTITY", "api_key");
        assert_field(record, "ODOOGATE_PROTOCOL", "json2");
        assert_field(record, "ODOOGATE_DB", "odoo19");
        assert_field(record, "ODOOGATE_KEY_FINGERPRINT", &sha256(OTHER_API_KEY));
    }
    let unlink = find(&records, Some("res.partner"), "unlink");
    assert_eq!(unlink.len(), 1, "json2 unlink records");
    assert_field(unlink[0], "ODOOGATE_DECISION", "would_deny");
    assert_field(unlink[0], "ODOOGATE_OUTCOME", "ok");
    Ok(())
}

#[test]
fn malformed_bodies_give_decode_errors() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let mut site = Site::start("malformed", &[], "", "allow")?;
    let results = site.run_client("malformed_client.py", &["127.0.0.1", &site.port.to_string(), PASSWORD], None, false)?;
    all_ok(&results);
    assert!(site.daemon_is_running(), "the daemon survives malformed bodies");
    let records = site.stop_and_read(4)?;

    let errors: Vec<_> = records
        .iter()
        .filter(|r| r.get("ODOOGATE_EVENT").map(String::as_str) == Some("decode_error"))
        .collect();
    let codes: Vec<&str> = errors.iter().filter_map(|r| r.get("ODOOGATE_ERROR_CODE").map(String::as_str)).collect();
    assert!(codes.contains(&"invalid_xml"), "bad XML is a decode error: {codes:?}");
    assert!(codes.contains(&"invalid_json"), "truncated JSON is a decode error: {codes:?}");
    assert!(codes.contains(&"xml_doctype"), "a DOCTYPE is a decode error: {codes:?}");
    for error in &errors {
        assert_field(error, "ODOOGATE_SRC_IP", "127.0.0.1");
        assert!(error.contains_key("ODOOGATE_PATH"), "the path is recorded");
    }

    // Odoo may still run what odoogate could not decode (expat expands the
    // DOCTYPE's entity to `unlink`), so each one is also a would_deny call.
    let undecodable: Vec<_> = calls(&records).into_iter().filter(|r| r.contains_key("ODOOGATE_ERROR_CODE")).collect();
    assert_eq!(undecodable.len(), 3, "one call record per malformed body: {undecodable:?}");
    for record in &undecodable {
        assert_field(record, "ODOOGATE_DECISION", "would_deny");
        assert!(!record.contains_key("ODOOGATE_MODEL"), "no model is guessed: {record:?}");
    }

    let count = find(&records, Some("res.partner"), "search_count");
    assert_eq!(count.len(), 1, "the valid call after the malformed ones is recorded");
    assert_field(count[0], "ODOOGATE_OUTCOME", "ok");

    let table = site.journal.odoogate_audit(&["--decision", "allow", "--json"])?;
    assert!(table.contains("search_count"), "odoogate audit reads the record back: {table}");
    Ok(())
}

#[test]
fn large_bodies_are_decoded_whole() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let mut site = Site::start("large", &[], "", "allow")?;
    let sizes = ["1000", "100000", "1000000", "10000000"];
    let mut args = vec![site.local_url(), PASSWORD.to_owned()];
    args.extend(sizes.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    all_ok(&site.run_client("large_body_client.py", &args, None, false)?);
    let records = site.stop_and_read(8)?;

    let creates = find(&records, Some("res.partner"), "create");
    assert_eq!(creates.len(), sizes.len(), "one create record per body size");
    for record in &creates {
        assert_field(record, "ODOOGATE_FIELDS", "name,comment");
        assert_field(record, "ODOOGATE_OUTCOME", "ok");
    }
    let reads = find(&records, Some("res.partner"), "read");
    assert_eq!(reads.len(), sizes.len(), "one read record per body size");
    for record in &reads {
        assert_field(record, "ODOOGATE_OUTCOME", "ok");
    }
    let gaps = records
        .iter()
        .filter(|r| r.get("ODOOGATE_EVENT").map(String::as_str) == Some("capture_gap"))
        .count();
    assert_eq!(gaps, 0, "no capture gaps for sequential large bodies");
    Ok(())
}

#[test]
fn web_session_belongs_to_its_integration() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = r#"[[integration]]
name = "portal"
match = { cgroup = "{cgroup:portal}" }
allow = [{ models = ["res.partner"], methods = ["search_read", "name_search", "search_count"] }]
"#;
    let mut site = Site::start("session", &["portal", "elsewhere"], integrations, "deny")?;
    let session_file = site.workdir.join("session");
    let session_path = session_file.to_string_lossy().into_owned();
    all_ok(&site.run_client("web_session_client.py", &[&site.local_url(), "login", &session_path], Some("portal"), false)?);
    all_ok(&site.run_client("web_session_client.py", &[&site.local_url(), "use", &session_path], Some("elsewhere"), false)?);
    let records = site.stop_and_read(5)?;

    let web: Vec<_> = calls(&records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_PROTOCOL").map(String::as_str) == Some("web"))
        .collect();
    assert_eq!(web.len(), 5, "web calls: {web:?}");

    let search_read = find(&records, Some("res.partner"), "search_read");
    assert_eq!(search_read.len(), 1, "search_read records");
    assert_field(search_read[0], "ODOOGATE_INTEGRATION", "portal");
    assert_field(search_read[0], "ODOOGATE_IDENTITY", "cgroup");

    // Another process, in a cgroup no integration names, reuses the session.
    let name_search = find(&records, Some("res.partner"), "name_search");
    assert_eq!(name_search.len(), 1, "name_search records");
    assert_field(name_search[0], "ODOOGATE_INTEGRATION", "portal");
    assert_field(name_search[0], "ODOOGATE_IDENTITY", "session");
    assert_field(name_search[0], "ODOOGATE_DECISION", "allow");

    // After /web/session/destroy the session no longer identifies anyone.
    let after_logout = find(&records, Some("res.partner"), "search_count");
    assert_eq!(after_logout.len(), 1, "search_count records");
    assert_field(after_logout[0], "ODOOGATE_IDENTITY", "none");
    assert_field(after_logout[0], "ODOOGATE_DECISION", "would_deny");
    assert_field(after_logout[0], "ODOOGATE_OUTCOME", "error:odoo.http.SessionExpiredException");
    assert!(
        !records.iter().any(|r| r.values().any(|value| value.contains(&std::fs::read_to_string(&session_file).unwrap_or_default()))),
        "no record contains the session id"
    );
    Ok(())
}

/// A client on the same link sends crafted packets. Observe mode must
/// ignore what the server's kernel drops: a segment forged with the
/// server's address, and an IPv6 frame with another IP version. It cannot
/// read the first fragment of a fragmented packet whole, so it reports
/// it. It must read an IPv6 request behind a fragment header and
/// Destination Options headers, and mark a request replayed outside any
/// connection. The real segments of both directions over the same link
/// are kept.
#[test]
fn crafted_packets_are_not_read_as_segments() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = r#"[[integration]]
name = "n8n"
match = { ip = ["10.214.0.2/32"] }
allow = [{ models = ["res.partner"], methods = ["*"] }]
"#;
    let mut site = Site::start("crafted", &[], integrations, "deny")?;
    let port = site.port.to_string();
    all_ok(&site.run_client("odoorpc_client.py", &[common::ODOO_ADDRESS, &port, PASSWORD], None, true)?);
    let status = site.status()?;
    assert_eq!(status["reassembly"]["spoofed_segments"], 0, "real traffic is never taken for forged: {status}");
    assert_eq!(status["reassembly"]["ip_fragments"], 0, "{status}");
    assert_eq!(status["capture_stats"]["header_errors"], 0, "{status}");

    let ipv4 = [common::ODOO_ADDRESS, "10.214.0.2"];
    let ipv6 = [common::ODOO_IPV6_ADDRESS, common::CLIENT_IPV6_ADDRESS];
    let crafted = [
        ("spoofed-server", ipv4, "reassembly", "spoofed_segments"),
        ("first-fragment", ipv4, "reassembly", "ip_fragments"),
        ("ipv6-bad-version", ipv6, "capture_stats", "header_errors"),
    ];
    for (kind, [server, client], section, counter) in crafted {
        let args = [kind, "og-clients", server, &port, client];
        let sent = site.run_client("forge_packet.py", &args, None, true)?;
        assert!(sent[0]["sent"].as_u64().is_some_and(|bytes| bytes > 0), "{kind}: {sent:?}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = site.status()?;
            if status[section][counter] == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the {kind} packet was not counted in {counter}: {status}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    // A request behind IPv6 extension headers, which the capture steps
    // over.
    let args = ["ipv6-extension-headers", "og-clients", common::ODOO_IPV6_ADDRESS, &port, common::CLIENT_IPV6_ADDRESS];
    let sent = site.run_client("forge_packet.py", &args, None, true)?;
    assert!(sent[0]["sent"].as_u64().is_some_and(|bytes| bytes > 0), "ipv6-extension-headers: {sent:?}");

    // A request replayed outside any connection: the server's kernel
    // resets it without acknowledging a byte.
    let args = ["replayed-request", "og-clients", common::ODOO_ADDRESS, &port, "10.214.0.2"];
    let sent = site.run_client("forge_packet.py", &args, None, true)?;
    assert!(sent[0]["sent"].as_u64().is_some_and(|bytes| bytes > 0), "replayed-request: {sent:?}");
    let records = site.stop_and_read(1)?;
    let calls = calls(&records);
    let replayed: Vec<_> = calls.iter().filter(|r| r.get("ODOOGATE_SRC_PORT").map(String::as_str) == Some("40999")).collect();
    assert_eq!(replayed.len(), 1, "the replayed request gives one call record: {calls:#?}");
    assert_eq!(replayed[0].get("ODOOGATE_ERROR_CODE").map(String::as_str), Some("unacknowledged_request"), "{:#?}", replayed[0]);
    let spoofed: Vec<_> = records.iter().filter(|r| r.get("ODOOGATE_ERROR_CODE").map(String::as_str) == Some("spoofed_segment")).collect();
    assert_eq!(spoofed.len(), 1, "the forged server segment gives one record: {records:#?}");
    assert_eq!(spoofed[0].get("ODOOGATE_EVENT").map(String::as_str), Some("framing_anomaly"), "{:#?}", spoofed[0]);
    let behind_options: Vec<_> = calls.iter().filter(|r| r.get("ODOOGATE_SRC_PORT").map(String::as_str) == Some("40998")).collect();
    assert_eq!(behind_options.len(), 1, "the request behind IPv6 extension headers gives one call record: {calls:#?}");
    assert_eq!(behind_options[0].get("ODOOGATE_SRC_IP").map(String::as_str), Some(common::CLIENT_IPV6_ADDRESS));
    assert_eq!(behind_options[0].get("ODOOGATE_METHOD").map(String::as_str), Some("search_read"), "{:#?}", behind_options[0]);
    let forged_ports = [Some("40998"), Some("40999")];
    let real: Vec<_> = calls.iter().filter(|r| !forged_ports.contains(&r.get("ODOOGATE_SRC_PORT").map(String::as_str))).collect();
    assert!(!real.is_empty(), "the real calls are recorded");
    for record in real {
        assert_eq!(record.get("ODOOGATE_ERROR_CODE"), None, "a real call is not marked: {record:#?}");
    }
    Ok(())
}

/// A client in the clients namespace calls Odoo over IPv6, so the capture
/// programs parse IPv6 headers, and then over IPv4 from the same namespace.
/// Only the IPv6 calls match the integration of the client's IPv6 address.
#[test]
fn ipv6_calls_are_attributed() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = format!(
        r#"[[integration]]
name = "ipv6-client"
match = {{ ip = ["{CLIENT_IPV6_ADDRESS}/128"] }}
allow = [{{ models = ["res.partner", "res.partner.category"], methods = ["*"] }}]
"#
    );
    let mut site = Site::start("ipv6", &[], &integrations, "deny")?;
    all_ok(&site.run_client("xmlrpc_stdlib_client.py", &[&site.remote_ipv6_url(), API_KEY], None, true)?);
    all_ok(&site.run_client("xmlrpc_stdlib_client.py", &[&site.remote_url(), API_KEY], None, true)?);
    let records = site.stop_and_read(14)?;

    let source_is = |record: &&Record, address: &str| record.get("ODOOGATE_SRC_IP").map(String::as_str) == Some(address);
    let over_ipv6: Vec<_> = calls(&records).into_iter().filter(|r| source_is(r, CLIENT_IPV6_ADDRESS)).collect();
    assert_eq!(over_ipv6.len(), 7, "one record per IPv6 call: {over_ipv6:#?}");
    for record in &over_ipv6 {
        assert_field(record, "ODOOGATE_INTEGRATION", "ipv6-client");
        assert_field(record, "ODOOGATE_IDENTITY", "ip");
        assert_field(record, "ODOOGATE_DECISION", "allow");
        assert_field(record, "ODOOGATE_OUTCOME", "ok");
    }
    let search_read: Vec<_> = over_ipv6.iter().filter(|r| r.get("ODOOGATE_METHOD").map(String::as_str) == Some("search_read")).collect();
    assert_eq!(search_read.len(), 1, "IPv6 search_read records");
    assert_field(search_read[0], "ODOOGATE_MODEL", "res.partner");
    assert_field(search_read[0], "ODOOGATE_PROTOCOL", "xmlrpc");
    assert_field(search_read[0], "ODOOGATE_FIELDS", "name,email");

    let over_ipv4: Vec<_> = calls(&records).into_iter().filter(|r| source_is(r, "10.214.0.2")).collect();
    assert_eq!(over_ipv4.len(), 7, "one record per IPv4 call: {over_ipv4:#?}");
    for record in &over_ipv4 {
        assert!(!record.contains_key("ODOOGATE_INTEGRATION"), "the IPv6 match must not hold over IPv4: {record:?}");
        assert_field(record, "ODOOGATE_IDENTITY", "none");
    }
    let unlink: Vec<_> = over_ipv4.iter().filter(|r| r.get("ODOOGATE_METHOD").map(String::as_str) == Some("unlink")).collect();
    assert_eq!(unlink.len(), 1, "IPv4 unlink records");
    assert_field(unlink[0], "ODOOGATE_DECISION", "would_deny");

    assert_eq!(calls(&records).len(), 14, "no call record from another source: {records:#?}");
    Ok(())
}
