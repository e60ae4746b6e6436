use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::grant::Grants;
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
    let allowed = Verdict::allow("");
    let denied = Verdict::deny("");
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
    Integration { name, matcher, rules, enabled: true, rate: None, web_routes: Vec::new() }
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
        // A denial may name the rule that refused the call; an allow names
        // the first rule that allows it.
        let allowing_rule = if verdict.allowed { verdict.rule } else { None };
        prop_assert_eq!(allowing_rule, expected);
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
                enabled: true,
                rate: None,
                web_routes: Vec::new(),
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

// === rule limits ===

const LIMITS: &str = r#"
[[integration]]
name = "erp"
match = { ip = ["10.0.0.0/8"] }
allow = [
  { models = ["res.partner"], methods = ["create", "write"], fields = ["name", "email", "child_ids", "child_ids.name"], max_records = 2 },
  { models = ["res.partner"], methods = ["read", "search_read"], read_fields = ["name", "email"], narrow_reads = true },
  { models = ["sale.order"], methods = ["read"], read_fields = ["name"] },
  { models = ["crm.lead"], methods = ["create"], hours = ["Mon-Fri 08:00-18:00"], timezone = "Europe/Brussels" },
  { models = ["*"], methods = ["*"], enabled = false },
  { models = ["res.users"], methods = ["write"], fields = ["groups_id"] },
]

[[integration]]
name = "paused"
match = { ip = ["192.0.2.0/24"] }
enabled = false
allow = [{ models = ["*"], methods = ["*"] }]

[[integration]]
name = "admin"
match = { ip = ["198.51.100.0/24"] }
allow = [{ models = ["*"], methods = ["*"] }]
"#;

fn limits() -> Config {
    parse(&format!("{HEAD}{LIMITS}"), "test.toml").expect("valid limits config")
}

fn with_fields(mut call: Call, fields: &[&str]) -> Call {
    call.fields = fields.iter().map(|f| (*f).to_owned()).collect();
    call
}

/// 2026-12-07, a Monday, at `hour`:00 UTC.
fn monday_at(hour: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_601_600 + hour * 3600)
}

fn limited(call: &Call, integration: &str) -> Verdict {
    decide(call, &by(Some(integration)), &limits(), monday_at(10))
}

#[test]
fn listed_fields_are_allowed() {
    let call = with_fields(model_call("res.partner", "write"), &["name", "child_ids", "child_ids.name"]);
    let v = limited(&call, "erp");
    assert!(v.allowed, "{v:?}");
    assert_eq!(v.rule.as_deref(), Some("erp.allow[0]"));
}

#[test]
fn unlisted_field_names_rule_and_field() {
    let call = with_fields(model_call("res.partner", "write"), &["name", "child_ids.vat"]);
    let v = limited(&call, "erp");
    assert!(!v.allowed);
    assert_eq!(v.rule.as_deref(), Some("erp.allow[0]"));
    assert_eq!(v.reason, "erp.allow[0] refuses res.partner.write: field child_ids.vat is not in fields");
}

#[test]
fn max_records_limits_ids() {
    let mut call = with_fields(model_call("res.partner", "write"), &["name"]);
    call.record_ids = vec![1, 2];
    assert!(limited(&call, "erp").allowed);
    call.record_ids = vec![1, 2, 3];
    let v = limited(&call, "erp");
    assert!(!v.allowed);
    assert_eq!(v.reason, "erp.allow[0] refuses res.partner.write: the call targets 3 records, above max_records = 2");
}

#[test]
fn read_of_all_fields_offers_narrowing() {
    let mut call = model_call("res.partner", "search_read");
    call.reads_all_fields = true;
    let v = limited(&call, "erp");
    assert!(!v.allowed);
    assert_eq!(v.reason, "erp.allow[1] refuses res.partner.search_read: the call reads all fields, but read_fields limits them");
    assert_eq!(narrowing(&call, &v), Some(vec!["name".to_owned(), "email".to_owned()]));

    // The proxy's rewritten request passes.
    let narrowed = with_fields(model_call("res.partner", "search_read"), &["name", "email"]);
    assert!(limited(&narrowed, "erp").allowed);
}

#[test]
fn extra_read_field_narrows_to_allowed() {
    let call = with_fields(model_call("res.partner", "read"), &["name", "vat"]);
    let v = limited(&call, "erp");
    assert!(!v.allowed);
    assert_eq!(narrowing(&call, &v), Some(vec!["name".to_owned()]));
    let only_forbidden = with_fields(model_call("res.partner", "read"), &["vat"]);
    assert_eq!(narrowing(&only_forbidden, &limited(&only_forbidden, "erp")), None);
}

#[test]
fn read_without_narrow_reads_is_refused() {
    let mut call = model_call("sale.order", "read");
    call.reads_all_fields = true;
    let v = limited(&call, "erp");
    assert!(!v.allowed);
    assert_eq!(v.rule.as_deref(), Some("erp.allow[2]"));
    assert_eq!(narrowing(&call, &v), None);
}

#[test]
fn hours_follow_time_zone() {
    let call = model_call("crm.lead", "create");
    let at = |time| decide(&call, &by(Some("erp")), &limits(), time);
    // 07:30 UTC is 08:30 in Brussels in winter.
    assert!(at(monday_at(7) + std::time::Duration::from_secs(1800)).allowed);
    let v = at(monday_at(17));
    assert!(!v.allowed);
    assert_eq!(
        v.reason,
        "erp.allow[3] refuses crm.lead.create: the call is outside hours [Mon-Fri 08:00-18:00] in Europe/Brussels"
    );
}

#[test]
fn disabled_rule_needs_grant() {
    let call = model_call("stock.picking", "read");
    let v = limited(&call, "erp");
    assert!(!v.allowed);
    assert_eq!(v.rule.as_deref(), Some("erp.allow[4]"));

    let grants = grants_for("erp", Some(4));
    let v = decide_with_grants(&call, &by(Some("erp")), &limits(), &grants, monday_at(10));
    assert!(v.allowed);
    assert_eq!(v.grant.as_deref(), Some("g-test"));
    assert_eq!(v.reason, "erp.allow[4] allows stock.picking.read under grant g-test");
    assert!(!decide_with_grants(&call, &by(Some("erp")), &limits(), &grants, monday_at(13)).allowed, "expired");
}

#[test]
fn disabled_integration_needs_grant() {
    let call = model_call("res.partner", "read");
    let v = limited(&call, "paused");
    assert!(!v.allowed);
    assert_eq!(v.reason, "integration paused is disabled (enabled = false) and has no active grant");

    let v = decide_with_grants(&call, &by(Some("paused")), &limits(), &grants_for("paused", None), monday_at(10));
    assert!(v.allowed);
    assert_eq!(v.grant.as_deref(), Some("g-test"));
}

#[test]
fn guarded_call_needs_exact_rule() {
    let promote = with_fields(model_call("res.users", "write"), &["groups_id"]);
    let v = limited(&promote, "admin");
    assert!(!v.allowed);
    assert!(v.reason.starts_with("admin.allow[0] refuses res.users.write: res.users.write is a guarded call"), "{}", v.reason);
    assert!(limited(&promote, "erp").allowed, "erp.allow[5] names res.users and write");

    let rename = with_fields(model_call("res.users", "write"), &["name"]);
    assert!(limited(&rename, "admin").allowed);

    let mut drop = Call::new(Protocol::XmlRpc, CallKind::Database);
    drop.method = Some("drop".to_owned());
    assert!(!limited(&drop, "admin").allowed);
}

/// Builds a grant for `integration` (or one of its rules) from 09:00 to
/// 12:00 on [`monday_at`]'s day.
fn grants_for(integration: &str, rule: Option<usize>) -> Grants {
    let stamp = |time: SystemTime| jiff::Timestamp::try_from(time).unwrap();
    Grants::new(vec![crate::grant::Grant {
        id: "g-test".to_owned(),
        integration: integration.to_owned(),
        rule,
        created: stamp(monday_at(9)),
        expires: stamp(monday_at(12)),
        reason: None,
    }])
}

// === limit properties ===

const FIELD_NAMES: &[&str] = &["name", "email", "vat", "child_ids", "child_ids.name", "groups_id"];

proptest! {
    /// Restricting the fields of every rule never allows a call that was
    /// denied.
    #[test]
    fn field_restriction_never_allows_more(
        mut config in config_strategy(),
        call in call_strategy(),
        resolution in resolution_strategy(),
        fields in proptest::sample::subsequence(FIELD_NAMES, 0..=6),
        write_fields in proptest::sample::subsequence(FIELD_NAMES, 1..=3),
        read_fields in proptest::sample::subsequence(FIELD_NAMES, 1..=3),
        reads_all in any::<bool>(),
    ) {
        let call = Call { fields: fields.iter().map(|f| (*f).to_owned()).collect(), reads_all_fields: reads_all, ..call };
        let before = decide(&call, &resolution, &config, SystemTime::UNIX_EPOCH);

        for integration in &mut config.integrations {
            for rule in &mut integration.rules {
                rule.fields = Some(write_fields.iter().map(|f| glob::Glob::name(f).unwrap()).collect());
                rule.read_fields = Some(read_fields.iter().map(|f| glob::Glob::name(f).unwrap()).collect());
            }
        }
        let after = decide(&call, &resolution, &config, SystemTime::UNIX_EPOCH);
        prop_assert!(before.allowed || !after.allowed, "before: {before:?}, after: {after:?}");
    }

    /// A narrower window never allows more: `Mon-Fri 08:00-18:00` is inside
    /// `Mon-Sun 06:00-20:00`, at any instant.
    #[test]
    fn narrower_hours_never_allow_more(
        call in call_strategy(),
        resolution in resolution_strategy(),
        mut config in config_strategy(),
        seconds in 0u64..(4 * 366 * 86_400),
    ) {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600 + seconds);
        let schedule = |window: &str| {
            let window = window::Window::parse(window).unwrap();
            window::Schedule::new(vec![window], "Europe/Brussels").unwrap()
        };
        let mut wide = config.clone();
        for integration in &mut wide.integrations {
            for rule in &mut integration.rules {
                rule.hours = Some(schedule("Mon-Sun 06:00-20:00"));
            }
        }
        for integration in &mut config.integrations {
            for rule in &mut integration.rules {
                rule.hours = Some(schedule("Mon-Fri 08:00-18:00"));
            }
        }
        let wide = decide(&call, &resolution, &wide, now);
        let narrow = decide(&call, &resolution, &config, now);
        prop_assert!(wide.allowed || !narrow.allowed, "wide: {wide:?}, narrow: {narrow:?}");
    }
}
