//! Enforce mode end to end: `odoogate run` steered by sk_lookup in the
//! Odoo namespace, in front of the Odoo-like upstream, with scoped tokens
//! made by `odoogate token create`, the service credential in a 0600 file,
//! the cgroup guard, and audit records in a private journald. Clients keep
//! dialing Odoo's own address and port.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{API_KEY, Record, Site, assert_field, calls, find};
use odoogate::demo::lab::{self, ChildGuard, Placement};
use odoogate::secret::Secret;
use serde_json::Value as Json;

fn sha256_prefix(value: &str) -> String {
    Secret::new(value).sha256_hex()[..12].to_owned()
}

/// An integration identified by scoped token only, allowed to read
/// partners (with what OdooRPC reads first: the user context, the model
/// and its fields), and
/// the site's hosts with no rule, so their calls without a token (OdooRPC
/// requests the server version first) get metadata only.
const TOKEN_INTEGRATION: &str = r#"[[integration]]
name = "assistant"
match = { token = true }
allow = [
  { models = ["res.partner"], methods = ["search_read", "search", "read", "search_count", "fields_get"] },
  { models = ["res.users"], methods = ["context_get"] },
  { models = ["ir.model"], methods = ["search", "read", "search_read"] },
]

[[integration]]
name = "hosts"
match = { ip = ["127.0.0.1/32", "10.214.0.0/24"] }
"#;

/// Returns the line a client printed for `step`.
fn step<'a>(lines: &'a [Json], step: &str) -> &'a Json {
    lines.iter().find(|line| line["step"] == step).unwrap_or_else(|| panic!("no {step} line in {lines:?}"))
}

/// Returns the upstream entries for model calls of `method`, any protocol.
fn upstream_calls<'a>(requests: &'a [Json], method: &str) -> Vec<&'a Json> {
    requests
        .iter()
        .filter(|entry| entry["params"]["model_method"] == method || entry["method"] == method)
        .collect()
}

#[test]
fn real_clients_use_scoped_tokens() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let mut site = Site::start_enforce("tokens", &[], TOKEN_INTEGRATION, "deny", None)?;
    let token = site.create_token("assistant")?;
    let port = site.port.to_string();

    let libraries = ["xmlrpc", "odoorpc", "odoolib-xmlrpc", "odoolib-jsonrpc", "odoolib-json2"];
    let mut results = Vec::new();
    for library in libraries {
        let lines = site.run_client("enforce_client.py", &[library, "127.0.0.1", &port, &token], None, false)?;
        results.push((library, lines));
    }
    // OdooRPC from the clients namespace, to Odoo's address on the veth.
    let remote = site.run_client("enforce_client.py", &["odoorpc", common::ODOO_ADDRESS, &port, &token], None, true)?;

    for (library, lines) in &results {
        let allowed = step(lines, "allowed");
        assert_eq!(allowed["ok"], true, "{library}: the allowed call went through: {lines:?}");
        assert!(allowed["result"].as_u64().is_some_and(|rows| rows > 0), "{library}: {allowed}");
        if *library != "odoolib-json2" {
            assert_eq!(step(lines, "login")["result"], 2, "{library}: login answers the shared user's uid");
        }
    }
    let denied = |library: &str| step(&results.iter().find(|(name, _)| *name == library).unwrap().1, "denied").clone();
    let xmlrpc = denied("xmlrpc");
    assert_eq!(xmlrpc["error"], "xmlrpc.client.Fault", "{xmlrpc}");
    assert_eq!(xmlrpc["fault_code"], 4, "AccessError is fault 4: {xmlrpc}");
    // odoo-client-lib calls the legacy /xmlrpc/object, whose faults carry
    // the exception as a string code.
    let legacy = denied("odoolib-xmlrpc");
    assert_eq!(legacy["error"], "xmlrpc.client.Fault", "{legacy}");
    assert!(legacy["fault_code"].as_str().is_some_and(|code| code.starts_with("warning -- AccessError")), "{legacy}");
    let odoorpc = denied("odoorpc");
    assert_eq!(odoorpc["error"], "odoorpc.error.RPCError", "{odoorpc}");
    assert_eq!(odoorpc["odoo_error"], "odoo.exceptions.AccessError", "{odoorpc}");
    let jsonrpc = denied("odoolib-jsonrpc");
    assert_eq!(jsonrpc["error"], "odoolib.tools.JsonRPCException", "{jsonrpc}");
    assert!(jsonrpc["message"].as_str().unwrap().contains("odoo.exceptions.AccessError"), "{jsonrpc}");
    let json2 = denied("odoolib-json2");
    assert_eq!(json2["error"], "builtins.ValueError", "{json2}");
    assert!(json2["message"].as_str().unwrap().contains("403"), "json2 denial is 403: {json2}");
    assert_eq!(step(&remote, "login")["result"], 2, "remote login: {remote:?}");
    assert_eq!(step(&remote, "denied")["odoo_error"], "odoo.exceptions.AccessError", "{remote:?}");

    // Odoo saw the service credential only, and no denied call.
    let requests = site.upstream_requests();
    let credentials: Vec<&Json> = requests.iter().filter_map(|entry| entry["params"].get("credential_sha256_prefix")).collect();
    assert!(credentials.len() >= 10, "logins and calls reached Odoo: {requests:?}");
    for credential in &credentials {
        assert_eq!(credential.as_str(), Some(sha256_prefix(API_KEY).as_str()), "only the service key reaches Odoo");
    }
    assert!(upstream_calls(&requests, "unlink").is_empty(), "no denied call reached Odoo: {requests:?}");
    assert!(!upstream_calls(&requests, "search_read").is_empty(), "json2 and RPC reads reached Odoo");

    let records = site.stop_and_read(20)?;
    let unlinks = find(&records, Some("res.partner"), "unlink");
    assert_eq!(unlinks.len(), libraries.len() + 1, "one denied unlink per client: {unlinks:?}");
    for record in &unlinks {
        assert_field(record, "ODOOGATE_DECISION", "deny");
        assert_field(record, "ODOOGATE_IDENTITY", "token");
        assert_field(record, "ODOOGATE_INTEGRATION", "assistant");
    }
    let reads: Vec<&Record> = calls(&records)
        .into_iter()
        .filter(|r| r.get("ODOOGATE_METHOD").is_some_and(|m| m == "search_read" || m == "search" || m == "read"))
        .collect();
    assert!(!reads.is_empty(), "reads are recorded");
    for record in &reads {
        assert_field(record, "ODOOGATE_DECISION", "allow");
        assert_field(record, "ODOOGATE_IDENTITY", "token");
        assert_field(record, "ODOOGATE_INTEGRATION", "assistant");
        assert_field(record, "ODOOGATE_OUTCOME", "ok");
    }
    assert!(
        !records.iter().any(|r| r.values().any(|value| value.contains(&token) || value.contains(API_KEY))),
        "no record contains the token or the service key"
    );
    Ok(())
}

#[test]
fn revoked_token_denied_without_restart() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let mut site = Site::start_enforce("revoke", &[], TOKEN_INTEGRATION, "deny", None)?;
    let token = site.create_token("assistant")?;
    let port = site.port.to_string();
    let args = ["xmlrpc", "127.0.0.1", port.as_str(), token.as_str()];

    let before = site.run_client("enforce_client.py", &args, None, false)?;
    assert_eq!(step(&before, "login")["result"], 2, "{before:?}");

    let list = site.odoogate(&["token", "list", "--config", &site.config_path().to_string_lossy()])?;
    let id = list
        .lines()
        .find(|line| line.contains("assistant"))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token listed: {list}"))
        .to_owned();
    site.change_tokens(&["token", "revoke", &id, "--config", &site.config_path().to_string_lossy()])?;

    let after = site.run_client("enforce_client.py", &args, None, false)?;
    let login = step(&after, "login");
    assert_eq!(login["fault_code"], 3, "a revoked token gets AccessDenied: {after:?}");
    assert!(site.upstream_requests().len() <= 2, "the revoked login never reached Odoo: {:?}", site.upstream_requests());

    let records = site.stop_and_read(2)?;
    let revoked_logins: Vec<_> = find(&records, None, "common.login")
        .into_iter()
        .filter(|r| r.get("ODOOGATE_ERROR_CODE").map(String::as_str) == Some("revoked_token"))
        .collect();
    assert!(!revoked_logins.is_empty(), "the revoked login is recorded: {:?}", find(&records, None, "common.login"));
    assert_field(revoked_logins[0], "ODOOGATE_DECISION", "deny");
    Ok(())
}

#[test]
fn guard_refuses_unlisted_cgroups() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = r#"[[integration]]
name = "importer"
match = { cgroup = "{cgroup:trusted}" }
allow = [{ models = ["res.partner"], methods = ["search_read", "search", "read"] }]
"#;
    let mut site = Site::start_enforce("guard", &["trusted", "stranger"], integrations, "deny", Some(&["trusted"]))?;
    let port = site.port.to_string();

    let trusted = site.run_client("enforce_client.py", &["xmlrpc", "127.0.0.1", &port, API_KEY], Some("trusted"), false)?;
    assert_eq!(step(&trusted, "allowed")["ok"], true, "{trusted:?}");
    assert_eq!(step(&trusted, "denied")["fault_code"], 4, "{trusted:?}");

    // The same cgroup in the clients namespace, as a container on the Odoo
    // host would be: the veth's subnet is a container network, so the
    // daemon waits for the connection's origin and names its cgroup too.
    let contained = site.run_client("enforce_client.py", &["xmlrpc", common::ODOO_ADDRESS, &port, API_KEY], Some("trusted"), true)?;
    assert_eq!(step(&contained, "allowed")["ok"], true, "{contained:?}");
    assert_eq!(step(&contained, "denied")["fault_code"], 4, "{contained:?}");

    let stranger = site.run_client("enforce_client.py", &["connect", "127.0.0.1", &port, "-"], Some("stranger"), false)?;
    let connect = step(&stranger, "connect");
    assert_eq!(connect["ok"], false, "{connect}");
    assert_eq!(connect["errno"], nix::libc::EPERM, "the guard refuses with EPERM: {connect}");

    let records = site.stop_and_read(5)?;
    let trusted_cgroup = site.cgroups[0].relative().to_owned();
    let stranger_cgroup = site.cgroups[1].relative().to_owned();
    let search_read = find(&records, Some("res.partner"), "search_read");
    assert_eq!(search_read.len(), 2, "search_read records, from this namespace and from the clients one");
    for record in &search_read {
        assert_field(record, "ODOOGATE_IDENTITY", "cgroup");
        assert_field(record, "ODOOGATE_INTEGRATION", "importer");
        assert_field(record, "ODOOGATE_CGROUP", &trusted_cgroup);
        assert_field(record, "ODOOGATE_DECISION", "allow");
        assert!(record.get("ODOOGATE_COMM").is_some_and(|comm| comm.starts_with("python")), "{record:?}");
        assert!(record.contains_key("ODOOGATE_PID"), "the pid is recorded");
    }
    let sources: Vec<&str> = search_read.iter().filter_map(|record| record.get("ODOOGATE_SRC_IP").map(String::as_str)).collect();
    assert!(sources.contains(&"127.0.0.1"), "a call from this namespace: {sources:?}");
    assert!(sources.contains(&"10.214.0.2"), "a call from the clients namespace: {sources:?}");
    let unlink = find(&records, Some("res.partner"), "unlink");
    assert_eq!(unlink.len(), 2, "unlink records");
    assert!(unlink.iter().all(|record| record.get("ODOOGATE_DECISION").map(String::as_str) == Some("deny")), "{unlink:?}");

    let refusals: Vec<&Record> = records
        .iter()
        .filter(|r| r.get("ODOOGATE_EVENT").map(String::as_str) == Some("guard_refusal"))
        .collect();
    assert_eq!(refusals.len(), 1, "one guard_refusal record: {refusals:?}");
    assert_field(refusals[0], "ODOOGATE_DECISION", "deny");
    assert_field(refusals[0], "ODOOGATE_CGROUP", &stranger_cgroup);
    assert!(refusals[0].get("ODOOGATE_COMM").is_some_and(|comm| comm.starts_with("python")), "{:?}", refusals[0]);
    Ok(())
}

#[test]
fn ambiguous_framing_rejected_when_steered() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = "[[integration]]\nname = \"local\"\nmatch = { ip = [\"127.0.0.1/32\"] }\nallow = [{ models = [\"res.partner\"], methods = [\"search_count\"] }]\n";
    let mut site = Site::start_enforce("framing", &[], integrations, "deny", None)?;
    let port = site.port.to_string();

    let lines = site.run_client("enforce_client.py", &["duplicate-content-length", "127.0.0.1", &port, API_KEY], None, false)?;
    let status = step(&lines, "duplicate-content-length")["status_line"].as_str().unwrap().to_owned();
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    assert!(site.upstream_requests().is_empty(), "nothing reached Odoo: {:?}", site.upstream_requests());

    let records = site.stop_and_read(0)?;
    let anomalies: Vec<&Record> = records
        .iter()
        .filter(|r| r.get("ODOOGATE_EVENT").map(String::as_str) == Some("framing_anomaly"))
        .collect();
    assert_eq!(anomalies.len(), 1, "{records:?}");
    assert_field(anomalies[0], "ODOOGATE_ERROR_CODE", "duplicate_content_length");
    assert_field(anomalies[0], "ODOOGATE_SRC_IP", "127.0.0.1");
    Ok(())
}

/// Counts the loop client's attempts so far: (succeeded, failed).
fn loop_attempts(log: &std::path::Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<Json> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let ok = lines.iter().filter(|line| line["ok"] == true).count();
    (ok, lines.len() - ok)
}

#[test]
fn fail_closed_across_kill_and_restart() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let integrations = "[[integration]]\nname = \"local\"\nmatch = { ip = [\"127.0.0.1/32\"] }\nallow = [{ models = [\"res.partner\"], methods = [\"search_count\"] }]\n";
    let mut site = Site::start_enforce("failclosed", &[], integrations, "deny", None)?;
    let pin_dir = site.pins.as_ref().map(|pins| pins.path.clone()).expect("an enforce site has pins");
    let count = |site: &Site| upstream_calls(&site.upstream_requests(), "search_count").len();

    let loop_log = site.workdir.join("loop.jsonl");
    let mut command = Command::new(common::python());
    command
        .arg(common::workspace_root().join("tests/clients/enforce_client.py"))
        .args(["loop", "127.0.0.1", &site.port.to_string(), API_KEY]);
    let placement = Placement { netns: Some(site.odoo.path()), ..Placement::default() };
    let mut client = ChildGuard::spawn("loop client", command, &placement, &loop_log)?;
    lab::wait_for("calls through odoogate", Duration::from_secs(20), || count(&site) >= 5)?;

    site.kill_daemon()?;
    // A request odoogate wrote before it died may still be read by Odoo;
    // after this pause nothing more can arrive from the dead daemon.
    std::thread::sleep(Duration::from_millis(500));
    let at_kill = count(&site);
    let (_, failed_at_kill) = loop_attempts(&loop_log);
    lab::wait_for("client attempts while odoogate is down", Duration::from_secs(20), || {
        loop_attempts(&loop_log).1 >= failed_at_kill + 3
    })?;
    assert_eq!(count(&site), at_kill, "no new connection reached Odoo while odoogate was down");

    site.start_daemon()?;
    let restart_log = std::fs::read_to_string(site.workdir.join("odoogate-1.log"))?;
    assert!(restart_log.contains("reused=true"), "the restart reused the pinned link:\n{restart_log}");
    lab::wait_for("calls through the restarted odoogate", Duration::from_secs(20), || count(&site) >= at_kill + 3)?;

    // While the daemon steers through the pins, uninstall refuses and
    // leaves them.
    let refused = site.odoogate(&["uninstall", "--pin-dir", &pin_dir.to_string_lossy()]);
    let message = refused.expect_err("uninstall refuses while odoogate run steers").to_string();
    assert!(message.contains("still steers through"), "{message}");
    assert!(pin_dir.join("steer_link").exists(), "the steering link stays pinned");
    let before_refusal = count(&site);
    lab::wait_for("calls through odoogate after the refusal", Duration::from_secs(20), || count(&site) >= before_refusal + 2)?;
    client.stop(Duration::from_secs(5))?;

    // `--force` removes the pins under the running daemon: Odoo is
    // reachable directly, and the daemon logs that it no longer steers.
    site.odoogate(&["uninstall", "--force", "--pin-dir", &pin_dir.to_string_lossy()])?;
    let left: Vec<_> = std::fs::read_dir(&pin_dir).map(|entries| entries.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "pins left in {}: {left:?}", pin_dir.display());
    let direct = site.run_client("enforce_client.py", &["connect", "127.0.0.1", &site.port.to_string(), "-"], None, false)?;
    assert_eq!(step(&direct, "connect")["ok"], true, "Odoo answers directly after uninstall: {direct:?}");
    let restart_log_path = site.workdir.join("odoogate-1.log");
    lab::wait_for("the daemon to notice the removed steering", Duration::from_secs(15), || {
        lab::file_contains(&restart_log_path, "The steering link was removed or detached")
    })?;

    // Every call Odoo saw was decided and recorded, except at most the one
    // in flight when the daemon died: it was decided, but its record is
    // written after Odoo's response.
    let records = site.stop_and_read(at_kill)?;
    let recorded = find(&records, Some("res.partner"), "search_count");
    for record in &recorded {
        assert_field(record, "ODOOGATE_DECISION", "allow");
    }
    let seen = count(&site);
    assert!(seen <= recorded.len() + 1, "Odoo saw {seen} calls, odoogate recorded {}", recorded.len());

    // With the daemon stopped and nothing pinned, uninstall finds nothing.
    let output = site.odoogate(&["uninstall", "--pin-dir", &pin_dir.to_string_lossy()])?;
    assert!(output.contains("nothing to remove"), "{output}");
    Ok(())
}

/// Local clients may read partners, which the keep-alive client does one
/// partner per call.
const READ_INTEGRATION: &str = "[[integration]]\nname = \"local\"\nmatch = { ip = [\"127.0.0.1/32\"] }\nallow = [{ models = [\"res.partner\"], methods = [\"read\"] }]\n";

/// The threads that serve client connections in `odoogate run`
/// (`PROXY_THREADS` in odoogate-userspace/src/cli/run/enforce.rs). Each
/// reuses only the upstream connections it opened, so calls made one after
/// another use at most one upstream connection per thread.
const PROXY_THREADS: usize = 2;

/// Runs the keep-alive client with `connections` client connections and
/// `rounds` rounds of reads, `pause` seconds apart, and checks each
/// call's response: the partner requested, on the same client connection
/// as the other calls of that connection.
fn keep_alive_calls(site: &Site, connections: usize, rounds: usize, pause: &str) -> anyhow::Result<Vec<Json>> {
    let port = site.port.to_string();
    let (connections_arg, rounds_arg) = (connections.to_string(), rounds.to_string());
    let args = ["keep-alive", "127.0.0.1", &port, API_KEY, &connections_arg, &rounds_arg, pause];
    let lines = site.run_client("enforce_client.py", &args, None, false)?;

    assert_eq!(lines.len(), connections * rounds, "one line per call: {lines:?}");
    for line in &lines {
        assert_eq!(line["ok"], true, "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["result"], serde_json::json!([line["record_id"]]), "the response contains the partner requested: {line}");
        assert_ne!(line["connection_header"], "close", "odoogate kept the client connection open: {line}");
    }
    for index in 0..connections {
        let ports: BTreeSet<u64> =
            lines.iter().filter(|line| line["connection"] == index).filter_map(|line| line["local_port"].as_u64()).collect();
        assert_eq!(ports.len(), 1, "client connection {index} carried all its calls: {lines:?}");
    }
    let ports: BTreeSet<u64> = lines.iter().filter_map(|line| line["local_port"].as_u64()).collect();
    assert_eq!(ports.len(), connections, "each client connection has its own port: {lines:?}");
    Ok(lines)
}

/// Returns the upstream connection number of each `read` that Odoo
/// received, in order. The Odoo-like server numbers its connections with
/// `--keep-alive`.
fn upstream_connections(site: &Site) -> Vec<u64> {
    upstream_calls(&site.upstream_requests(), "read")
        .iter()
        .map(|entry| entry["connection"].as_u64().unwrap_or_else(|| panic!("no connection number in {entry}")))
        .collect()
}

/// Checks the audit record of each call in `lines`: allowed, with outcome
/// `ok` and status 200, and found by the client's port with the partner it
/// requested. The calls of one client connection share a connection id,
/// which no other client connection has.
fn assert_read_records(records: &[Record], lines: &[Json]) {
    let reads = find(records, Some("res.partner"), "read");
    assert_eq!(reads.len(), lines.len(), "one record per call: {reads:?}");
    for record in &reads {
        assert_field(record, "ODOOGATE_DECISION", "allow");
        assert_field(record, "ODOOGATE_INTEGRATION", "local");
        assert_field(record, "ODOOGATE_PROTOCOL", "jsonrpc");
        assert_field(record, "ODOOGATE_OUTCOME", "ok");
        assert_field(record, "ODOOGATE_HTTP_STATUS", "200");
    }

    let ports: BTreeSet<u64> = lines.iter().filter_map(|line| line["local_port"].as_u64()).collect();
    let mut conn_ids = BTreeSet::new();
    for port in &ports {
        let on_port: Vec<&Record> =
            reads.iter().copied().filter(|record| record.get("ODOOGATE_SRC_PORT") == Some(&port.to_string())).collect();
        let mut recorded: Vec<String> = on_port.iter().filter_map(|record| record.get("ODOOGATE_RECORD_IDS").cloned()).collect();
        let mut requested: Vec<String> =
            lines.iter().filter(|line| line["local_port"] == *port).map(|line| line["record_id"].to_string()).collect();
        recorded.sort();
        requested.sort();
        assert_eq!(recorded, requested, "the partners read through client port {port}: {on_port:?}");

        let ids: BTreeSet<&str> = on_port.iter().filter_map(|record| record.get("ODOOGATE_CONN_ID").map(String::as_str)).collect();
        assert_eq!(ids.len(), 1, "the calls of client port {port} share one connection id: {on_port:?}");
        conn_ids.extend(ids);
    }
    assert_eq!(conn_ids.len(), ports.len(), "each client connection has its own connection id: {conn_ids:?}");
}

#[test]
fn keep_alive_upstream_connections_reused() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let mut site = Site::start_enforce_with_upstream_args("keepalive", READ_INTEGRATION, "deny", &["--keep-alive"])?;

    // The calls of one client connection all go on one upstream
    // connection: each response leaves it reusable, and the next call
    // takes it from the pool of the proxy thread serving the client.
    let single_connection = keep_alive_calls(&site, 1, 4, "0")?;
    let first = upstream_connections(&site);
    assert_eq!(first.len(), 4, "every call reached Odoo: {first:?}");
    assert!(first.iter().all(|connection| *connection == first[0]), "one upstream connection carried them: {first:?}");

    // Three client connections calling in turn share the upstream
    // connections, at most one per proxy thread.
    let several_connections = keep_alive_calls(&site, 3, 3, "0")?;
    let all = upstream_connections(&site);
    assert_eq!(all.len(), 13, "every call reached Odoo: {all:?}");
    let second: BTreeSet<u64> = all[first.len()..].iter().copied().collect();
    assert!(second.len() <= PROXY_THREADS, "9 calls on 3 client connections used {} upstream connections: {all:?}", second.len());

    let records = site.stop_and_read(13)?;
    assert_read_records(&records, &[single_connection, several_connections].concat());
    Ok(())
}

#[test]
fn upstream_idle_close_reconnects() -> anyhow::Result<()> {
    if !common::can_run() {
        return Ok(());
    }
    let upstream_args = ["--keep-alive", "--keep-alive-timeout", "0.2", "--verbose"];
    let mut site = Site::start_enforce_with_upstream_args("idleclose", READ_INTEGRATION, "deny", &upstream_args)?;

    // The upstream closes its connection 0.2 s after the first response.
    // odoogate keeps an idle connection for 1 s, so at the second call,
    // 0.8 s later, the closed connection is still in the pool unless the
    // machine stalled. The peek before reuse finds the close, and the call
    // goes on a new connection. Sent on the closed one, this POST would
    // have got a 502, because odoogate does not send a POST twice.
    let lines = keep_alive_calls(&site, 1, 2, "0.8")?;
    let connections = upstream_connections(&site);
    assert_eq!(connections.len(), 2, "both calls reached Odoo: {connections:?}");
    assert_ne!(connections[0], connections[1], "the second call went on a new upstream connection");
    let upstream_log = site.upstream_log();
    assert!(upstream_log.contains("Request timed out"), "the upstream closed the idle connection itself:\n{upstream_log}");

    let records = site.stop_and_read(2)?;
    assert_read_records(&records, &lines);
    Ok(())
}
