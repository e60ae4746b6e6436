use super::*;
use crate::audit::record::Identity;

const HEAD: &str =
    "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n\n[policy]\nmode = \"observe\"\nunidentified = \"allow\"\n";

/// Lines in [`HEAD`], so tests can give absolute line numbers.
const HEAD_LINES: usize = 7;

const FINGERPRINT: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

fn invalid(text: &str) -> InvalidConfig {
    match parse(text, "gate.toml") {
        Err(ConfigError::Invalid(error)) => *error,
        Err(other) => panic!("expected an invalid-config error, got {other}"),
        Ok(config) => panic!("expected an error, got {config:?}"),
    }
}

fn assert_at(error: &InvalidConfig, line: usize, key: &str, fragment: &str) {
    assert_eq!(error.line, line, "line of: {error}");
    assert_eq!(error.key, key, "key of: {error}");
    assert!(error.message.contains(fragment), "{fragment:?} not in: {error}");
}

// === valid configurations ===

#[test]
fn full_example_parses() {
    let text = with_head(&format!(
        r#"
[capture]
ring_buffer_bytes = 1048576
idle_timeout_secs = 60

[audit]
output = "file"
file = "/tmp/audit.jsonl"
error_records_per_minute = 5

[[integration]]
name = "website-form"
match = {{ ip = ["203.0.113.10/32", "2001:db8::1"] }}
allow = [{{ models = ["crm.lead"], methods = ["create"] }}]

[[integration]]
name = "stats-sync"
match = {{ cgroup = "/system.slice/stats-sync.service" }}
allow = [{{ models = ["x_saas_stat"], methods = ["create", "write", "search_read"] }}]

[[integration]]
name = "mcp-assistant"
match = {{ api_key_sha256 = ["{FINGERPRINT}"], cgroup = ["user.slice/**"] }}
allow = [
  {{ models = ["sale.order", "crm.lead"], methods = ["read", "search*"] }},
  {{ models = ["sale.*"], methods = ["write"] }},
]
"#
    ));
    let config = parse(&text, "gate.toml").expect("valid config");

    assert_eq!(config.odoo.ports, vec![8069]);
    assert_eq!(config.odoo.interfaces, vec!["lo".to_owned()]);
    assert!(config.odoo.trusted_proxies.is_empty());
    assert_eq!(config.policy.mode, Mode::Observe);
    assert_eq!(config.capture.ring_buffer_bytes, 1_048_576);
    assert_eq!(config.capture.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.capture.max_flows, CaptureConfig::default().max_flows);
    assert_eq!(config.audit.output, AuditOutput::File);
    assert_eq!(config.audit.file, PathBuf::from("/tmp/audit.jsonl"));
    assert_eq!(config.audit.error_records_per_minute, 5);

    let names: Vec<&str> = config.integrations.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["website-form", "stats-sync", "mcp-assistant"]);
    assert_eq!(config.integrations[0].matcher.ip.len(), 2);
    assert!(config.integrations[1].matcher.cgroup[0].matches("system.slice/stats-sync.service"));
    assert_eq!(config.integrations[2].matcher.kinds(), ["api_key_sha256", "cgroup"]);
    assert_eq!(config.integrations[2].rules.len(), 2);
    assert!(config.integrations[2].rules[1].models[0].matches("sale.order.line"));
}

#[test]
fn optional_sections_take_defaults() {
    let config = parse(HEAD, "gate.toml").expect("valid config");
    assert_eq!(config.capture, CaptureConfig::default());
    assert_eq!(config.audit, AuditConfig::default());
    assert_eq!(config.capture.ring_buffer_bytes, 64 * 1024 * 1024);
    assert_eq!(config.audit.file, PathBuf::from(DEFAULT_AUDIT_FILE));
    assert!(config.integrations.is_empty());
}

#[test]
fn session_lifetime_defaults_to_odoos() {
    let config = parse(HEAD, "gate.toml").expect("valid config");
    assert_eq!(config.policy.session_lifetime, crate::identity::SESSION_LIFETIME);
    let text = HEAD.replace("unidentified = \"allow\"\n", "unidentified = \"allow\"\nsession_lifetime_secs = 3600\n");
    assert_eq!(parse(&text, "gate.toml").unwrap().policy.session_lifetime, std::time::Duration::from_secs(3600));

    let text = HEAD.replace("unidentified = \"allow\"\n", "unidentified = \"allow\"\nsession_lifetime_secs = 0\n");
    assert_at(&invalid(&text), HEAD_LINES + 1, "policy.session_lifetime_secs", "at least 1");
    // Sites may keep Odoo sessions longer than the proxy's 7-day timeout cap.
    let text = HEAD.replace("unidentified = \"allow\"\n", "unidentified = \"allow\"\nsession_lifetime_secs = 2592000\n");
    assert_eq!(parse(&text, "gate.toml").unwrap().policy.session_lifetime, std::time::Duration::from_secs(2_592_000));
    let text = HEAD.replace("unidentified = \"allow\"\n", "unidentified = \"allow\"\nsession_lifetime_secs = 18446744073709551615\n");
    assert_eq!(parse(&text, "gate.toml").unwrap().policy.session_lifetime, std::time::Duration::from_secs(u64::MAX));
}

#[test]
fn enforce_mode_is_accepted() {
    let text = HEAD.replace("\"observe\"", "\"enforce\"");
    assert_eq!(parse(&text, "gate.toml").unwrap().policy.mode, Mode::Enforce);
}

#[test]
fn integration_without_rules_is_valid() {
    let config =
        parse(&with_head("[[integration]]\nname = \"probe\"\nmatch = { ip = [\"10.0.0.1\"] }\n"), "g").unwrap();
    assert!(config.integrations[0].rules.is_empty());
    assert_eq!(config.integrations[0].matcher.kinds(), ["ip"]);
}

// === syntax and type errors ===

#[test]
fn syntax_error_names_its_line() {
    let error = invalid(&HEAD.replace("\"observe\"", "observe"));
    assert_eq!(error.line, 6);
    assert_eq!(error.column, 8);
    assert_eq!(error.origin, "gate.toml");
    assert!(error.to_string().starts_with("gate.toml:6:8: policy.mode: "), "{error}");
}

#[test]
fn unknown_key_is_rejected() {
    let error = invalid(&HEAD.replace("ports = [8069]", "ports = [8069]\nport = 8069"));
    assert_at(&error, 3, "odoo.port", "unknown field `port`");
    assert_eq!(error.column, 1);
}

#[test]
fn unknown_section_is_rejected() {
    let error = invalid(&with_head("[polcy]\nmode = \"observe\"\n"));
    assert_at(&error, HEAD_LINES + 1, "polcy", "unknown field `polcy`");
}

#[test]
fn unknown_key_in_rule_is_rejected() {
    let text = with_head(
        "[[integration]]\nname = \"a\"\nmatch = { ip = [\"10.0.0.1\"] }\nallow = [{ models = [\"x\"], method = [\"read\"] }]\n",
    );
    let error = invalid(&text);
    assert_at(&error, HEAD_LINES + 4, "integration[0].allow[0].method", "unknown field `method`");
}

#[test]
fn wrong_type_names_element() {
    let error = invalid(&HEAD.replace("ports = [8069]", "ports = [\"8069\"]"));
    assert_at(&error, 2, "odoo.ports[0]", "invalid type");
    assert!(error.message.contains("expected a whole number from 0 to 65535"), "{error}");
    assert_eq!(error.column, 10);
}

#[test]
fn port_out_of_range_is_rejected() {
    let error = invalid(&HEAD.replace("ports = [8069]", "ports = [8069, 70000]"));
    assert_at(&error, 2, "odoo.ports[1]", "70000");
}

#[test]
fn bad_mode_lists_choices() {
    let error = invalid(&HEAD.replace("\"observe\"", "\"block\""));
    assert_at(&error, 6, "policy.mode", "unknown variant `block`");
    assert!(error.message.contains("`observe`") && error.message.contains("`enforce`"), "{error}");
}

#[test]
fn missing_section_is_rejected() {
    let error = invalid("[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n");
    assert!(error.message.contains("missing field `policy`"), "{error}");
    assert_eq!(error.line, 1);
    assert_eq!(error.key, "", "the document lacks the section, not the first table: {error}");

    let error = invalid("[policy]\nmode = \"observe\"\nunidentified = \"allow\"\n");
    assert!(error.message.contains("missing field `odoo`"), "{error}");
    assert!(error.message.contains("`ports`"), "{error}");
    assert!(error.message.contains("`interfaces`"), "{error}");
    assert_eq!(error.key, "", "{error}");
}

#[test]
fn type_errors_name_toml_values() {
    let error = invalid(&format!("{HEAD}\n[proxy]\nmax_connections = \"many\"\n"));
    assert!(error.message.ends_with("expected a whole number, 0 or more"), "{error}");
    assert!(!error.message.contains("usize"), "{error}");

    let error = invalid("odoo = 1\n[policy]\nmode = \"observe\"\nunidentified = \"allow\"\n");
    assert!(error.message.ends_with("expected a table"), "{error}");
}

#[test]
fn single_bracket_integration_hints_array_table() {
    let single = "\n[integration]\nname = \"a\"\nmatch = { ip = [\"10.0.0.1/32\"] }\n";
    let error = invalid(&with_head(single));
    assert_at(&error, HEAD_LINES + 2, "integration", "invalid type: map");
    assert!(error.message.contains("`[[integration]]`"), "{error}");

    let two = format!("{single}[integration]\nname = \"b\"\n");
    let error = invalid(&with_head(&two));
    assert_at(&error, HEAD_LINES + 5, "integration", "duplicate key");
    assert!(error.message.contains("`[[integration]]`"), "{error}");
}

#[test]
fn missing_match_points_at_integration() {
    let error = invalid(&with_head("\n[[integration]]\nname = \"a\"\n"));
    assert_at(&error, HEAD_LINES + 2, "integration[0]", "missing field `match`");
}

// === [odoo] checks ===

#[test]
fn port_zero_is_rejected() {
    let error = invalid(&HEAD.replace("ports = [8069]", "ports = [8069, 0]"));
    assert_at(&error, 2, "odoo.ports[1]", "expected a port from 1 to 65535, found 0");
}

#[test]
fn empty_port_list_is_rejected() {
    let error = invalid(&HEAD.replace("ports = [8069]", "ports = []"));
    assert_at(&error, 2, "odoo.ports", "expected at least one port");
}

#[test]
fn duplicate_port_is_rejected() {
    let error = invalid(&HEAD.replace("ports = [8069]", "ports = [8069, 8069]"));
    assert_at(&error, 2, "odoo.ports[1]", "port 8069 is listed twice");
}

#[test]
fn bad_interface_is_rejected() {
    let error = invalid(&HEAD.replace("[\"lo\"]", "[\"lo\", \"a-very-long-interface\"]"));
    assert_at(&error, 3, "odoo.interfaces[1]", "a-very-long-interface");
    let error = invalid(&HEAD.replace("[\"lo\"]", "[]"));
    assert_at(&error, 3, "odoo.interfaces", "at least one interface");
}

#[test]
fn bad_trusted_proxy_is_rejected() {
    let text = HEAD.replace("interfaces = [\"lo\"]", "interfaces = [\"lo\"]\ntrusted_proxies = [\"127.0.0.1/33\"]");
    let error = invalid(&text);
    assert_at(&error, 4, "odoo.trusted_proxies[0]", "expected a CIDR");
    assert!(error.message.contains("127.0.0.1/33"), "{error}");
}

#[test]
fn trusted_proxy_accepts_bare_address() {
    let text = HEAD.replace("interfaces = [\"lo\"]", "interfaces = [\"lo\"]\ntrusted_proxies = [\"::1\"]");
    let config = parse(&text, "g").unwrap();
    assert_eq!(config.odoo.trusted_proxies, vec!["::1/128".parse::<IpNet>().unwrap()]);
}

// === [capture] and [audit] checks ===

#[test]
fn ring_buffer_must_be_power_of_two() {
    let error = invalid(&with_head("[capture]\nring_buffer_bytes = 100000\n"));
    assert_at(&error, HEAD_LINES + 2, "capture.ring_buffer_bytes", "power of two");
}

#[test]
fn zero_bound_is_rejected() {
    let error = invalid(&with_head("[capture]\nmax_flows = 0\n"));
    assert_at(&error, HEAD_LINES + 2, "capture.max_flows", "expected at least 1 (flows), found 0");
}

#[test]
fn audit_file_needs_file_output() {
    let error = invalid(&with_head("[audit]\noutput = \"journald\"\nfile = \"/tmp/a.jsonl\"\n"));
    assert_at(&error, HEAD_LINES + 3, "audit.file", "only used with output = \"file\"");
}

#[test]
fn audit_file_must_be_absolute() {
    let error = invalid(&with_head("[audit]\noutput = \"file\"\nfile = \"audit.jsonl\"\n"));
    assert_at(&error, HEAD_LINES + 3, "audit.file", "expected an absolute path");
}

// === [[integration]] checks ===

fn integration(name: &str, matcher: &str, allow: &str) -> String {
    format!("\n[[integration]]\nname = \"{name}\"\nmatch = {matcher}\nallow = {allow}\n")
}

const ANY_RULE: &str = "[{ models = [\"*\"], methods = [\"read\"] }]";

#[test]
fn duplicate_name_names_first_line() {
    let text = with_head(&format!(
        "{}{}",
        integration("n8n", "{ ip = [\"10.0.0.1\"] }", ANY_RULE),
        integration("n8n", "{ ip = [\"10.0.0.2\"] }", ANY_RULE)
    ));
    let error = invalid(&text);
    assert_at(&error, HEAD_LINES + 8, "integration[1].name", "duplicate integration name \"n8n\"");
    assert!(error.message.contains(&format!("first defined on line {}", HEAD_LINES + 3)), "{error}");
}

#[test]
fn bad_name_is_rejected() {
    let error = invalid(&with_head(&integration("my form", "{ ip = [\"10.0.0.1\"] }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 3, "integration[0].name", "found \"my form\"");
}

#[test]
fn bad_cidr_names_index() {
    let text = with_head(&format!(
        "{}{}",
        integration("a", "{ ip = [\"10.0.0.1\"] }", ANY_RULE),
        integration("b", "{ ip = [\"10.0.0.0/8\", \"10.0.0.300\"] }", ANY_RULE)
    ));
    let error = invalid(&text);
    assert_at(&error, HEAD_LINES + 9, "integration[1].match.ip[1]", "found \"10.0.0.300\"");
}

#[test]
fn empty_match_is_rejected() {
    let error = invalid(&with_head(&integration("a", "{}", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match", "policy.unidentified");
}

#[test]
fn empty_ip_list_is_rejected() {
    let error = invalid(&with_head(&integration("a", "{ ip = [] }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.ip", "at least one CIDR");
}

#[test]
fn short_fingerprint_has_hint() {
    let error = invalid(&with_head(&integration("a", "{ api_key_sha256 = [\"abc123\"] }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.api_key_sha256[0]", "printf %s KEY | sha256sum");
    assert!(error.message.contains("found 6 characters"), "{error}");
}

#[test]
fn pasted_api_key_is_not_echoed() {
    let key = "0123456789abcdef0123456789abcdef01234567";
    let matcher = format!("{{ api_key_sha256 = [\"{key}\"] }}");
    let error = invalid(&with_head(&integration("a", &matcher, ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.api_key_sha256[0]", "length of an Odoo API key");
    assert!(!error.to_string().contains(key), "{error}");
}

#[test]
fn non_hex_fingerprint_is_rejected() {
    let matcher = format!("{{ api_key_sha256 = [\"{}\"] }}", "z".repeat(64));
    let error = invalid(&with_head(&integration("a", &matcher, ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.api_key_sha256[0]", "not hexadecimal");
}

#[test]
fn token_match_is_a_boolean() {
    let config = parse(&with_head(&integration("a", "{ token = true, ip = [\"10.0.0.1\"] }", ANY_RULE)), "g").unwrap();
    assert!(config.integrations[0].matcher.token);
    assert_eq!(config.integrations[0].matcher.kinds(), ["token", "ip"]);

    let error = invalid(&with_head(&integration("a", "{ token = \"x\" }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.token", "expected a boolean");
}

#[test]
fn token_false_alone_is_empty_match() {
    let error = invalid(&with_head(&integration("a", "{ token = false }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match", "empty match");
}

#[test]
fn tokens_section_takes_defaults() {
    let config = parse(HEAD, "g").unwrap();
    assert_eq!(config.tokens, TokensConfig::default());
    assert_eq!(config.tokens.store, PathBuf::from(DEFAULT_TOKEN_STORE));

    let text = with_head("[tokens]\nstore = \"/srv/tokens.json\"\ncredentials_file = \"/etc/c.toml\"\ninject_context = true\n");
    let tokens = parse(&text, "g").unwrap().tokens;
    assert_eq!(tokens.store, PathBuf::from("/srv/tokens.json"));
    assert_eq!(tokens.credentials_file, Some(PathBuf::from("/etc/c.toml")));
    assert!(tokens.inject_context);
}

#[test]
fn tokens_relative_store_is_rejected() {
    let error = invalid(&with_head("[tokens]\nstore = \"tokens.json\"\n"));
    assert_at(&error, HEAD_LINES + 2, "tokens.store", "absolute path");
}

#[test]
fn credential_in_main_config_is_rejected() {
    for key in ["default", "credential", "password", "api_key"] {
        let text = with_head(&format!("[tokens]\n{key} = \"s3cret-value\"\n"));
        let error = invalid(&text);
        assert_at(&error, HEAD_LINES + 2, &format!("tokens.{key}"), "must not be in the main configuration");
        assert!(!error.to_string().contains("s3cret-value"), "{error}");
    }
}

#[test]
fn bad_cgroup_glob_is_rejected() {
    let error = invalid(&with_head(&integration("a", "{ cgroup = \"system.slice/**x\" }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.cgroup", "`**` must be a whole path segment");

    let error = invalid(&with_head(&integration("a", "{ cgroup = [\"ok.slice\", \"a//b\"] }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.cgroup[1]", "empty path segment");
}

#[test]
fn cgroup_glob_with_mount_point_is_rejected() {
    let cases = [
        ("/sys/fs/cgroup/unified/ogtrial3/n8n", "/sys/fs/cgroup/unified", "write \"ogtrial3/n8n\""),
        ("/sys/fs/cgroup/system.slice/n8n.service", "/sys/fs/cgroup,", "write \"system.slice/n8n.service\""),
        ("sys/fs/cgroup/system.slice/*.service", "/sys/fs/cgroup,", "write \"system.slice/*.service\""),
        ("/sys/fs/cgroup//user.slice/**", "/sys/fs/cgroup,", "write \"user.slice/**\""),
        ("/sys/fs/cgroup/", "/sys/fs/cgroup,", "write the path of a cgroup below it"),
        ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified,", "write the path of a cgroup below it"),
    ];
    for (pattern, mount, fix) in cases {
        let matcher = format!("{{ cgroup = {pattern:?} }}");
        let error = invalid(&with_head(&integration("a", &matcher, ANY_RULE)));
        assert_at(&error, HEAD_LINES + 4, "integration[0].match.cgroup", &format!("invalid cgroup glob {pattern:?}"));
        assert!(error.message.contains(&format!("cgroup mount point {mount}")), "{pattern}: {error}");
        assert!(error.message.contains(fix), "{pattern}: {error}");
    }

    let error = invalid(&with_head(&integration("a", "{ cgroup = [\"ok.slice\", \"/sys/fs/cgroup/a.slice\"] }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.cgroup[1]", "write \"a.slice\"");
}

#[test]
fn cgroup_glob_like_mount_point_is_valid() {
    // Only a whole `sys/fs/cgroup` prefix names the mount point.
    let text = with_head(&integration("a", "{ cgroup = [\"/sys/fs/cgroups/a\", \"/sys/fs/cgroupx\", \"/ogtrial3/n8n\"] }", ANY_RULE));
    let config = parse(&text, "gate.toml").expect("valid config");
    let globs = &config.integrations[0].matcher.cgroup;
    assert_eq!(globs.len(), 3);
    assert!(globs[2].matches("ogtrial3/n8n"));
}

#[test]
fn guard_cgroup_with_mount_point_is_rejected() {
    let text = with_head("\n[guard]\nallow_cgroups = [\"system.slice/n8n.service\", \"/sys/fs/cgroup/unified/ogtrial3/n8n\"]\n");
    let error = invalid(&text);
    assert_at(&error, HEAD_LINES + 3, "guard.allow_cgroups[1]", "invalid cgroup glob \"/sys/fs/cgroup/unified/ogtrial3/n8n\"");
    assert!(error.message.contains("write \"ogtrial3/n8n\""), "{error}");
}

#[test]
fn cgroup_of_wrong_type_is_explained() {
    let error = invalid(&with_head(&integration("a", "{ cgroup = 5 }", ANY_RULE)));
    assert_at(&error, HEAD_LINES + 4, "integration[0].match.cgroup", "a string or a list of strings");
}

#[test]
fn empty_glob_list_is_rejected() {
    let error =
        invalid(&with_head(&integration("a", "{ ip = [\"10.0.0.1\"] }", "[{ models = [], methods = [\"read\"] }]")));
    assert_at(&error, HEAD_LINES + 5, "integration[0].allow[0].models", "at least one model glob");
}

#[test]
fn empty_glob_is_rejected() {
    let allow = "[\n  { models = [\"x\"], methods = [\"read\"] },\n  { models = [\"x\"], methods = [\"\"] },\n]";
    let error = invalid(&with_head(&integration("a", "{ ip = [\"10.0.0.1\"] }", allow)));
    assert_at(&error, HEAD_LINES + 7, "integration[0].allow[1].methods[0]", "empty pattern");
}

#[test]
fn glob_syntax_error_is_rejected() {
    let error = invalid(&with_head(&integration(
        "a",
        "{ ip = [\"10.0.0.1\"] }",
        "[{ models = [\"crm.[lead]\"], methods = [\"read\"] }]",
    )));
    assert_at(&error, HEAD_LINES + 5, "integration[0].allow[0].models[0]", "reserved glob syntax");
    assert_eq!(error.column, 22);
}

// === load and check ===

#[test]
fn load_reads_file_and_check_summarises() {
    let path = std::env::temp_dir().join(format!("odoogate-config-test-{}.toml", std::process::id()));
    let text = with_head(&format!(
        "{}{}",
        integration("website-form", "{ ip = [\"203.0.113.10/32\"] }", ANY_RULE),
        integration("mcp", &format!("{{ api_key_sha256 = [\"{FINGERPRINT}\"], ip = [\"10.0.0.0/8\"] }}"), "[]")
    ));
    std::fs::write(&path, text).unwrap();

    let summary = check(&path);
    std::fs::remove_file(&path).unwrap();
    let summary = summary.expect("valid config");

    assert_eq!(summary.mode, Mode::Observe);
    assert_eq!(summary.ports, vec![8069]);
    assert_eq!(summary.integrations[1].match_kinds, ["api_key_sha256", "ip"]);
    assert_eq!(summary.integrations[1].rules, 0);
    let printed = summary.to_string();
    assert!(printed.contains("mode: observe\n"), "{printed}");
    assert!(printed.contains("  website-form: match ip, 1 rule\n"), "{printed}");
    assert!(printed.contains("  mcp: match api_key_sha256 + ip, 0 rules\n"), "{printed}");
}

#[test]
fn load_names_file_in_errors() {
    let missing = Path::new("/nonexistent/odoogate.toml");
    let error = load(missing).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }));
    assert!(error.to_string().contains("/nonexistent/odoogate.toml"), "{error}");

    let path = std::env::temp_dir().join(format!("odoogate-config-bad-{}.toml", std::process::id()));
    std::fs::write(&path, HEAD.replace("[8069]", "[0]")).unwrap();
    let error = load(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(error.to_string().starts_with(&format!("{}:2:10: odoo.ports[0]: ", path.display())), "{error}");
}

#[test]
fn identity_names_match_summary_kinds() {
    // The summary's strongest-first order follows the identity ranking.
    assert_eq!(Identity::ApiKey.as_str(), "api_key");
    let matcher =
        Match { ip: vec!["10.0.0.0/8".parse().unwrap()], cgroup: vec![Glob::path("a").unwrap()], ..Match::default() };
    assert_eq!(matcher.kinds(), ["cgroup", "ip"]);
}

// === rule limits ===

#[test]
fn rule_limits_parse() {
    let text = with_head(
        r#"
[[integration]]
name = "erp"
match = { ip = ["10.0.0.0/8"] }
enabled = false
rate = "600/min"
allow = [{ models = ["res.partner"], methods = ["read"], read_fields = ["name"], narrow_reads = true,
           hours = ["Mon-Fri 08:00-18:00"], timezone = "Europe/Brussels", max_records = 10,
           rate = "10/s", burst = 20, enabled = false, fields = ["name"] }]
"#,
    );
    let config = parse(&text, "test.toml").expect("valid config");
    let erp = &config.integrations[0];
    assert!(!erp.enabled);
    assert_eq!(erp.rate.map(|rate| rate.to_string()).as_deref(), Some("600/min, burst 10"));
    let rule = &erp.rules[0];
    assert!(rule.narrow_reads);
    assert!(!rule.enabled);
    assert_eq!(rule.max_records, Some(10));
    assert_eq!(rule.rate.map(|rate| rate.burst), Some(20));
    assert_eq!(rule.hours.as_ref().map(ToString::to_string).as_deref(), Some("hours [Mon-Fri 08:00-18:00] in Europe/Brussels"));
}

#[test]
fn rule_limit_errors_name_key() {
    let rule = |body: &str| {
        with_head(&format!("[[integration]]\nname = \"erp\"\nmatch = {{ ip = [\"10.0.0.0/8\"] }}\nallow = [{{ models = [\"*\"], methods = [\"*\"], {body} }}]\n"))
    };
    let cases = [
        ("hours = [\"Mon 08:00-18:00\"]", "hours needs a timezone"),
        ("hours = [\"Mon 8-18\"], timezone = \"UTC\"", "expected a time from 00:00 to 24:00, found \"8\""),
        ("hours = [\"Mon 08:00-18:00\"], timezone = \"Mars/Base\"", "unknown time zone"),
        ("timezone = \"UTC\"", "timezone is only used with hours"),
        ("narrow_reads = true", "narrow_reads needs read_fields"),
        ("max_records = 1000", "expected a record count from 1 to 999"),
        ("rate = \"10/day\"", "expected COUNT/UNIT"),
        ("burst = 5", "burst is only used with rate"),
        ("fields = []", "expected at least one field glob"),
        ("read_fields = [\"partner id\"]", "invalid glob"),
    ];
    for (body, fragment) in cases {
        let error = parse(&rule(body), "test.toml").expect_err(body);
        assert!(error.to_string().contains(fragment), "{body}: {error}");
    }
}

// === [policy] grants_file and [control] ===

#[test]
fn grants_file_and_socket_defaults() {
    let config = parse(HEAD, "gate.toml").unwrap();
    assert_eq!(config.policy.grants_file, PathBuf::from("/var/lib/odoogate/grants.json"));
    assert_eq!(config.control.socket, PathBuf::from("/run/odoogate/control.sock"));
}

#[test]
fn grants_file_and_socket_are_read() {
    let text = HEAD.replace("unidentified = \"allow\"\n", "unidentified = \"allow\"\ngrants_file = \"/srv/grants.json\"\n")
        + "\n[control]\nsocket = \"/srv/odoogate.sock\"\n";
    let config = parse(&text, "gate.toml").unwrap();
    assert_eq!(config.policy.grants_file, PathBuf::from("/srv/grants.json"));
    assert_eq!(config.control.socket, PathBuf::from("/srv/odoogate.sock"));
}

#[test]
fn grants_file_must_be_absolute() {
    let text = HEAD.replace("unidentified = \"allow\"\n", "unidentified = \"allow\"\ngrants_file = \"grants.json\"\n");
    let error = invalid(&text);
    assert_at(&error, HEAD_LINES + 1, "policy.grants_file", "expected an absolute path");
}

#[test]
fn control_socket_must_be_absolute() {
    let error = invalid(&with_head("\n[control]\nsocket = \"control.sock\"\n"));
    assert_at(&error, HEAD_LINES + 3, "control.socket", "expected an absolute path");
}

// === odoogate check: the guard ===

#[test]
fn check_summary_lists_guard_globs() {
    let enforce = HEAD.replace("mode = \"observe\"", "mode = \"enforce\"");
    let always = "odoogate's own cgroup and the cgroups of the processes listening on Odoo's ports";

    let with_guard = format!("{enforce}\n[guard]\nallow_cgroups = [\"system.slice/n8n.service\", \"system.slice/cron-*.service\"]\n");
    let printed = CheckSummary::from(&parse(&with_guard, "gate.toml").unwrap()).to_string();
    let expected = format!("guard: on, allows \"system.slice/n8n.service\", \"system.slice/cron-*.service\", {always}\n");
    assert!(printed.contains(&expected), "{printed}");

    let empty = format!("{enforce}\n[guard]\nallow_cgroups = []\n");
    let printed = CheckSummary::from(&parse(&empty, "gate.toml").unwrap()).to_string();
    assert!(printed.contains(&format!("guard: on, allows only {always}\n")), "{printed}");

    let printed = CheckSummary::from(&parse(&enforce, "gate.toml").unwrap()).to_string();
    assert!(printed.contains("guard: off (no [guard] section)\n"), "{printed}");
}

#[test]
fn check_summary_omits_guard_in_observe_mode() {
    let text = with_head("\n[guard]\nallow_cgroups = [\"system.slice/n8n.service\"]\n");
    let summary = CheckSummary::from(&parse(&text, "gate.toml").unwrap());
    assert_eq!(summary.guard, None);
    assert!(!summary.to_string().contains("guard:"), "{summary}");
}
