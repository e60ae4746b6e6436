use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::audit::record::Identity;
use crate::grant::store::{self, GrantRequest};
use crate::rpc::call::{CallKind, Protocol};
use crate::scratch::ScratchDir;

fn config(grants_file: &Path) -> Config {
    let text = format!(
        r#"
[odoo]
ports = [8069]
interfaces = ["lo"]

[policy]
mode = "enforce"
unidentified = "deny"
grants_file = "{}"

[[integration]]
name = "erp"
match = {{ ip = ["10.0.0.0/8"] }}
allow = [{{ models = ["res.partner"], methods = ["read"], rate = "1/h", burst = 2 }}]

[[integration]]
name = "night-import"
enabled = false
match = {{ ip = ["192.0.2.1/32"] }}
allow = [{{ models = ["*"], methods = ["create"] }}]
"#,
        grants_file.display()
    );
    crate::config::parse(&text, "test.toml").expect("valid test config")
}

fn call(method: &str) -> Call {
    let mut call = Call::new(Protocol::XmlRpc, CallKind::Model);
    call.model = Some("res.partner".to_owned());
    call.method = Some(method.to_owned());
    call
}

fn by(integration: &str) -> Resolution {
    Resolution {
        integration: Some(integration.to_owned()),
        identity: Identity::Ip,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        key_fingerprint: None,
    }
}

fn temp_dir(name: &str) -> ScratchDir {
    ScratchDir::new(&format!("runtime-{name}"))
}

#[test]
fn rate_limit_denies_after_burst() {
    let dir = temp_dir("rate");
    let config = config(&dir.join("grants.json"));
    let mut runtime = PolicyRuntime::new(&config.policy.grants_file);
    let start = Instant::now();

    for _ in 0..2 {
        let decided = runtime.decide(&call("read"), &by("erp"), &config, SystemTime::now(), start);
        assert!(decided.verdict.allowed, "{}", decided.verdict.reason);
        assert_eq!(decided.rate_limited, None);
    }
    let decided = runtime.decide(&call("read"), &by("erp"), &config, SystemTime::now(), start);
    assert!(!decided.verdict.allowed);
    assert_eq!(decided.verdict.rule.as_deref(), Some("erp.allow[0]"));
    assert!(decided.verdict.reason.contains("erp.allow[0].rate = 1/h, burst 2"), "{}", decided.verdict.reason);
    let limited = decided.rate_limited.expect("the rate limit is named");
    assert_eq!(limited.retry_after, Duration::from_secs(3600));

    let levels = runtime.buckets(start);
    assert_eq!(levels.len(), 1);
    assert_eq!(levels[0].available, 0);
}

#[test]
fn denied_call_takes_no_token() {
    let dir = temp_dir("denied");
    let config = config(&dir.join("grants.json"));
    let mut runtime = PolicyRuntime::new(&config.policy.grants_file);
    let start = Instant::now();

    let decided = runtime.decide(&call("unlink"), &by("erp"), &config, SystemTime::now(), start);
    assert!(!decided.verdict.allowed);
    assert!(runtime.buckets(start).is_empty());
}

#[test]
fn grant_file_reread_on_message_or_due() {
    let dir = temp_dir("grant");
    let grants_file = dir.join("grants.json");
    let config = config(&grants_file);
    let mut runtime = PolicyRuntime::new(&grants_file);
    let create = || {
        let mut call = call("create");
        call.model = Some("crm.lead".to_owned());
        call
    };
    let start = Instant::now();

    let decided = runtime.decide(&create(), &by("night-import"), &config, SystemTime::now(), start);
    assert!(!decided.verdict.allowed);
    assert!(decided.verdict.reason.contains("disabled"), "{}", decided.verdict.reason);

    let request = GrantRequest { integration: "night-import".to_owned(), rule: None, duration: Duration::from_secs(3600), reason: None };
    let grant = store::add(&grants_file, request, SystemTime::now()).unwrap();
    // No message and not due: the grants read before stay in force.
    let decided = runtime.decide(&create(), &by("night-import"), &config, SystemTime::now(), start);
    assert!(!decided.verdict.allowed);

    // The message `odoogate grant` sends to the daemon.
    runtime.reread_grants();
    let decided = runtime.decide(&create(), &by("night-import"), &config, SystemTime::now(), start);
    assert!(decided.verdict.allowed, "{}", decided.verdict.reason);
    assert_eq!(decided.verdict.grant.as_deref(), Some(grant.id.as_str()));
    assert_eq!(runtime.active_grants(SystemTime::now()), vec![grant.clone()]);

    // No message, but the check is due.
    store::revoke(&grants_file, &grant.id, SystemTime::now()).unwrap();
    let due = start + GRANT_FILE_CHECK_INTERVAL;
    let decided = runtime.decide(&create(), &by("night-import"), &config, SystemTime::now(), due);
    assert!(!decided.verdict.allowed);
    assert!(runtime.active_grants(SystemTime::now()).is_empty());
}

#[test]
fn invalid_grant_file_means_no_grants() {
    let dir = temp_dir("invalid");
    let grants_file = dir.join("grants.json");
    std::fs::write(&grants_file, "not json").unwrap();
    let config = config(&grants_file);
    let mut runtime = PolicyRuntime::new(&grants_file);
    let mut create = call("create");
    create.model = Some("crm.lead".to_owned());

    let decided = runtime.decide(&create, &by("night-import"), &config, SystemTime::now(), Instant::now());
    assert!(!decided.verdict.allowed);
    assert!(runtime.active_grants(SystemTime::now()).is_empty());
}

#[test]
fn counts_by_integration_and_decision() {
    let counts = CallCounts::new();
    let record = |integration: Option<&str>, decision| {
        let mut record = AuditRecord::new(AuditEvent::Call, "m");
        record.integration = integration.map(str::to_owned);
        record.decision = Some(decision);
        record
    };
    counts.count(&record(Some("erp"), Decision::Allow));
    counts.count(&record(Some("erp"), Decision::Allow));
    counts.count(&record(Some("erp"), Decision::Deny));
    counts.count(&record(None, Decision::WouldDeny));
    counts.count(&AuditRecord::new(AuditEvent::DecodeError, "not a call"));

    let snapshot = counts.snapshot();
    assert_eq!(snapshot.len(), 2);
    assert_eq!(snapshot["erp"], DecisionCounts { allow: 2, deny: 1, would_deny: 0 });
    assert_eq!(snapshot[UNIDENTIFIED], DecisionCounts { allow: 0, deny: 0, would_deny: 1 });
}

#[test]
fn counts_are_bounded() {
    let counts = CallCounts::new();
    for index in 0..MAX_COUNTED_INTEGRATIONS + 5 {
        let mut record = AuditRecord::new(AuditEvent::Call, "m");
        record.integration = Some(format!("i{index}"));
        record.decision = Some(Decision::Allow);
        counts.count(&record);
    }
    let snapshot = counts.snapshot();
    assert_eq!(snapshot.len(), MAX_COUNTED_INTEGRATIONS + 1);
    assert_eq!(snapshot[OTHER].allow, 5);
}
