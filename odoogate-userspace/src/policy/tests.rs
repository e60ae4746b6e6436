use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::audit::record::Identity;
use crate::config::{Match, parse};
use crate::http::message::Headers;
use crate::identity::{SessionTable, Source, resolve};
use crate::rpc::call::Protocol;

const HEAD: &str =
    "[odoo]\nports = [8069]\ninterfaces = [\"lo\"]\n[policy]\nmode = \"observe\"\nunidentified = \"deny\"\n";

const EXAMPLE: &str = r#"
[[integration]]
name = "website-form"
match = { ip = ["203.0.113.10/32"] }
allow = [{ models = ["crm.lead"], methods = ["create"] }]

[[integration]]
name = "mcp-assistant"
match = { ip = ["10.0.0.0/8"] }
allow = [
  { models = ["sale.order", "crm.lead"], methods = ["read", "search*"] },
  { models = ["sale.*"], methods = ["write", "_compute_amount"] },
  { models = ["db"], methods = ["list"] },
]

[[integration]]
name = "importer"
match = { ip = ["192.0.2.1"] }
allow = [{ models = ["*"], methods = ["*"] }]
"#;

fn example() -> Config {
    parse(&format!("{HEAD}{EXAMPLE}"), "test.toml").expect("valid test config")
}

fn model_call(model: &str, method: &str) -> Call {
    let mut call = Call::new(Protocol::XmlRpc, CallKind::Model);
    call.model = Some(model.to_owned());
    call.method = Some(method.to_owned());
    call
}

fn by(integration: Option<&str>) -> Resolution {
    Resolution {
        integration: integration.map(str::to_owned),
        identity: if integration.is_some() { Identity::Ip } else { Identity::None },
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        key_fingerprint: None,
    }
}

fn verdict(call: &Call, integration: Option<&str>) -> Verdict {
    decide(call, &by(integration), &example(), SystemTime::UNIX_EPOCH)
}

// === unit cases ===

#[test]
fn rule_allows_call_and_is_named() {
    let v = verdict(&model_call("crm.lead", "create"), Some("website-form"));
    assert!(v.allowed);
    assert_eq!(v.rule.as_deref(), Some("website-form.allow[0]"));
    assert_eq!(v.reason, "website-form.allow[0] allows crm.lead.create");
}

#[test]
fn missing_rule_denies_with_reason() {
    let v = verdict(&model_call("crm.lead", "unlink"), Some("website-form"));
    assert!(!v.allowed);
    assert_eq!(v.rule, None);
    assert_eq!(v.reason, "no rule of website-form allows crm.lead.unlink");
}

#[test]
fn first_allowing_rule_is_named() {
    let v = verdict(&model_call("sale.order", "write"), Some("mcp-assistant"));
    assert_eq!(v.rule.as_deref(), Some("mcp-assistant.allow[1]"));
    let v = verdict(&model_call("sale.order", "search_count"), Some("mcp-assistant"));
    assert_eq!(v.rule.as_deref(), Some("mcp-assistant.allow[0]"));
}

#[test]
fn model_glob_needs_both_model_and_method() {
    assert!(!verdict(&model_call("crm.lead", "write"), Some("mcp-assistant")).allowed);
    assert!(!verdict(&model_call("res.partner", "read"), Some("mcp-assistant")).allowed);
}

#[test]
fn database_calls_match_model_db() {
    let mut call = Call::new(Protocol::XmlRpc, CallKind::Database);
    call.method = Some("list".to_owned());
    let v = verdict(&call, Some("mcp-assistant"));
    assert!(v.allowed);
    assert_eq!(v.rule.as_deref(), Some("mcp-assistant.allow[2]"));

    call.method = Some("drop".to_owned());
    assert_eq!(verdict(&call, Some("mcp-assistant")).reason, "no rule of mcp-assistant allows db.drop");
    assert_eq!(verdict(&call, Some("website-form")).reason, "no rule of website-form allows db.drop");
}

#[test]
fn wildcard_does_not_allow_private_method() {
    let v = verdict(&model_call("res.partner", "_read_group_raw"), Some("importer"));
    assert!(!v.allowed);
    assert_eq!(v.reason, "no rule of importer names the private method res.partner._read_group_raw exactly");
    assert!(verdict(&model_call("res.partner", "read"), Some("importer")).allowed);
}

#[test]
fn exact_rule_allows_private_method() {
    let v = verdict(&model_call("sale.order", "_compute_amount"), Some("mcp-assistant"));
    assert!(v.allowed);
    assert_eq!(v.rule.as_deref(), Some("mcp-assistant.allow[1]"));
}

#[test]
fn mismatch_denies_even_allowed_call() {
    let mut call = model_call("crm.lead", "create");
    call.mismatches.push("JSON-2 body names model res.users".to_owned());
    let v = verdict(&call, Some("importer"));
    assert!(!v.allowed);
    assert_eq!(v.reason, "request mismatch: JSON-2 body names model res.users");
}

#[test]
fn unidentified_follows_policy() {
    let denied = verdict(&model_call("crm.lead", "read"), None);
    assert!(!denied.allowed);
    assert_eq!(denied.reason, "no integration matches the call; policy.unidentified = \"deny\"");

    let mut config = example();
    config.policy.unidentified = Unidentified::Allow;
    let allowed = decide(&model_call("crm.lead", "read"), &by(None), &config, SystemTime::UNIX_EPOCH);
    assert!(allowed.allowed);
    assert_eq!(allowed.reason, "no integration matches the call; policy.unidentified = \"allow\"");
}

#[test]
fn auth_and_meta_need_no_rule() {
    let mut login = Call::new(Protocol::XmlRpc, CallKind::Auth);
    login.method = Some("authenticate".to_owned());
    let v = verdict(&login, Some("website-form"));
    assert!(v.allowed);
    assert_eq!(v.rule, None);
    assert_eq!(v.reason, "authentication calls need no rule");

    let version = Call::new(Protocol::XmlRpc, CallKind::Meta);
    assert_eq!(verdict(&version, Some("website-form")).reason, "metadata calls need no rule");
}

#[test]
fn unknown_integration_is_denied() {
    let v = verdict(&model_call("crm.lead", "read"), Some("removed"));
    assert!(!v.allowed);
    assert_eq!(v.reason, "integration removed is not in the configuration");
}

#[test]
fn call_without_model_is_denied() {
    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.method = Some("read".to_owned());
    assert_eq!(verdict(&call, Some("importer")).reason, "the call names no model");
    call.model = Some("res.partner".to_owned());
    call.method = None;
    assert_eq!(verdict(&call, Some("importer")).reason, "the call names no method");
}

#[test]
fn decision_maps_mode() {
    let allowed = Verdict { allowed: true, rule: None, reason: String::new() };
    let denied = Verdict { allowed: false, rule: None, reason: String::new() };
    assert_eq!(decision(&allowed, Mode::Observe), Decision::Allow);
    assert_eq!(decision(&allowed, Mode::Enforce), Decision::Allow);
    assert_eq!(decision(&denied, Mode::Observe), Decision::WouldDeny);
    assert_eq!(decision(&denied, Mode::Enforce), Decision::Deny);
}

// === properties ===

const MODEL_GLOBS: &[&str] = &["crm.lead", "sale.*", "*", "db", "res.?artner", "x_stat"];
const METHOD_GLOBS: &[&str] = &["read", "search*", "*", "write", "_private", "unlink", "cre?te"];
const MODELS: &[&str] = &["crm.lead", "sale.order", "sale.order.line", "res.partner", "x_stat", "db"];
const METHODS: &[&str] = &["read", "search_read", "write", "_private", "_other", "unlink", "create"];

fn rule_strategy() -> impl Strategy<Value = Rule> {
    (proptest::sample::subsequence(MODEL_GLOBS, 1..=3), proptest::sample::subsequence(METHOD_GLOBS, 1..=3))
        .prop_map(|(models, methods)| Rule::new(&models, &methods).expect("valid globs"))
}

fn integration_named(name: String, rules: Vec<Rule>) -> Integration {
    let matcher = Match { ip: vec!["10.0.0.0/8".parse().unwrap()], ..Match::default() };
    Integration { name, matcher, rules }
}

fn config_strategy() -> impl Strategy<Value = Config> {
    proptest::collection::vec(proptest::collection::vec(rule_strategy(), 0..4), 1..4).prop_map(|rule_sets| {
        let mut config = parse(HEAD, "test.toml").expect("valid head");
        config.integrations = rule_sets
            .into_iter()
            .enumerate()
            .map(|(index, rules)| integration_named(format!("i{index}"), rules))
            .collect();
        config
    })
}

fn call_strategy() -> impl Strategy<Value = Call> {
    let kind = prop_oneof![
        4 => Just(CallKind::Model),
        1 => Just(CallKind::Database),
        1 => Just(CallKind::Auth),
        1 => Just(CallKind::Meta),
    ];
    (kind, proptest::sample::select(MODELS), proptest::sample::select(METHODS), proptest::bool::weighted(0.1)).prop_map(
        |(kind, model, method, mismatch)| {
            let mut call = Call::new(Protocol::JsonRpc, kind.clone());
            if kind == CallKind::Model {
                call.model = Some(model.to_owned());
            }
            call.method = Some(method.to_owned());
            if mismatch {
                call.mismatches.push("body names another model".to_owned());
            }
            call
        },
    )
}

fn resolution_strategy() -> impl Strategy<Value = Resolution> {
    prop_oneof![
        1 => Just(by(None)),
        6 => (0usize..4).prop_map(|index| by(Some(&format!("i{index}")))),
    ]
}

fn unidentified_strategy() -> impl Strategy<Value = Unidentified> {
    prop_oneof![Just(Unidentified::Allow), Just(Unidentified::Deny)]
}

proptest! {
    #[test]
    fn adding_rule_never_denies_allowed_call(
        mut config in config_strategy(),
        call in call_strategy(),
        resolution in resolution_strategy(),
        unidentified in unidentified_strategy(),
        rule in rule_strategy(),
        target in any::<proptest::sample::Index>(),
        position in any::<proptest::sample::Index>(),
    ) {
        config.policy.unidentified = unidentified;
        let before = decide(&call, &resolution, &config, SystemTime::UNIX_EPOCH);

        let integration = target.get_mut(&mut config.integrations);
        let at = position.index(integration.rules.len() + 1);
        integration.rules.insert(at, rule);
        let after = decide(&call, &resolution, &config, SystemTime::UNIX_EPOCH);

        prop_assert!(!before.allowed || after.allowed, "before: {before:?}, after: {after:?}");
    }

    #[test]
    fn decide_is_deterministic(
        config in config_strategy(),
        call in call_strategy(),
        resolution in resolution_strategy(),
    ) {
        let first = decide(&call, &resolution, &config, SystemTime::UNIX_EPOCH);
        let second = decide(&call.clone(), &resolution.clone(), &config.clone(), SystemTime::now());
        prop_assert_eq!(first, second);
    }

    #[test]
    fn first_allowing_rule_is_reported(
        config in config_strategy(),
        call in call_strategy(),
        index in 0usize..4,
    ) {
        let name = format!("i{index}");
        prop_assume!(config.integration(&name).is_some() && call.mismatches.is_empty());
        prop_assume!(matches!(call.kind, CallKind::Model | CallKind::Database));
        let resolution = by(Some(&name));
        let verdict = decide(&call, &resolution, &config, SystemTime::UNIX_EPOCH);

        // Each rule alone: which of them allow the call?
        let rules = config.integration(&name).unwrap().rules.clone();
        let alone: Vec<bool> = rules
            .iter()
            .map(|rule| {
                let mut single = config.clone();
                single.integrations.retain(|i| i.name == name);
                single.integrations[0].rules = vec![rule.clone()];
                decide(&call, &resolution, &single, SystemTime::UNIX_EPOCH).allowed
            })
            .collect();

        let expected = alone.iter().position(|allowed| *allowed).map(|i| format!("{name}.allow[{i}]"));
        prop_assert_eq!(verdict.allowed, expected.is_some());
        prop_assert_eq!(verdict.rule, expected);
    }

    #[test]
    fn first_matching_integration_wins(
        nets in proptest::collection::vec(proptest::sample::select(&["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32", "192.0.2.0/24"][..]), 1..5),
        peer in proptest::sample::select(&["10.1.2.3", "10.9.9.9", "192.0.2.7", "198.51.100.1"][..]),
    ) {
        let mut config = parse(HEAD, "test.toml").expect("valid head");
        config.integrations = nets
            .iter()
            .enumerate()
            .map(|(index, net)| Integration {
                name: format!("i{index}"),
                matcher: Match { ip: vec![net.parse().unwrap()], ..Match::default() },
                rules: Vec::new(),
            })
            .collect();
        let source = Source { peer: SocketAddr::new(peer.parse().unwrap(), 1234), cgroup: None, pid: None, comm: None, conn_id: 7 };
        let resolved = resolve(&config, None, &Headers::default(), &source, &SessionTable::default());

        // Each integration alone: does its match hold?
        let holds: Vec<bool> = config
            .integrations
            .iter()
            .map(|integration| {
                let mut single = config.clone();
                single.integrations = vec![integration.clone()];
                resolve(&single, None, &Headers::default(), &source, &SessionTable::default()).integration.is_some()
            })
            .collect();
        let expected = holds.iter().position(|h| *h).map(|i| format!("i{i}"));
        prop_assert_eq!(resolved.integration, expected);
    }
}
