//! `odoogate explain` on the Odoo 19 captures: the exact lines for the
//! integration, the rules and the decision, and the exit status.

use std::path::{Path, PathBuf};
use std::process::Command;

use odoogate::scratch::ScratchDir;
use sha2::Digest as _;

fn captures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures")
}

/// A scratch directory with a configuration: `website-form` by address,
/// `sync` by the captures' password and a cgroup, `reader` by the JSON-2
/// captures' bearer key.
fn setup(name: &str) -> (ScratchDir, PathBuf) {
    let dir = ScratchDir::new(&format!("explain-{name}"));
    let password = hex::encode(sha2::Sha256::digest(b"PASSWORD_PLACEHOLDER"));
    let bearer = hex::encode(sha2::Sha256::digest(b"APIKEY_PLACEHOLDER_000000000000000000000"));
    let config = dir.join("odoogate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[odoo]
ports = [8069]
interfaces = ["lo"]

[policy]
mode = "observe"
unidentified = "deny"

[tokens]
store = "{}"

[[integration]]
name = "website-form"
match = {{ ip = ["203.0.113.10/32"] }}
allow = [{{ models = ["crm.lead"], methods = ["create"] }}]

[[integration]]
name = "sync"
match = {{ api_key_sha256 = ["{password}"], cgroup = "system.slice/*.service" }}
allow = [
  {{ models = ["res.partner"], methods = ["search", "read"] }},
  {{ models = ["res.partner.category"], methods = ["create"] }},
]

[[integration]]
name = "reader"
match = {{ api_key_sha256 = ["{bearer}"] }}
allow = [{{ models = ["res.partner"], methods = ["read", "search_read"] }}]
"#,
            dir.join("no-tokens.json").display()
        ),
    )
    .unwrap();
    (dir, config)
}

/// Runs `odoogate explain` and returns its exit status and standard output.
fn explain(config: &Path, request: &Path, extra: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_odoogate"))
        .arg("explain")
        .arg("--config")
        .arg(config)
        .args(extra)
        .arg(request)
        .output()
        .expect("odoogate runs");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.code().is_some(), "killed by a signal: {stderr}");
    (output.status.code().unwrap(), stdout)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn explain_allowed_by_second_integration() {
    let (_dir, config) = setup("allowed");
    let request = captures().join("odoolib_xmlrpc/003-req.http");
    let (status, out) = explain(&config, &request, &["--cgroup", "system.slice/sync.service"]);

    assert_eq!(
        lines(&out),
        [
            "request: POST /xmlrpc/object",
            "call: xmlrpc_legacy model call res.partner.search",
            "database: odoo19",
            "client: 127.0.0.1 (peer 127.0.0.1:0), cgroup system.slice/sync.service",
            "integrations tried (the first whose match holds takes the call):",
            "  website-form: match does not hold",
            "    [no] ip: client 127.0.0.1 is not in 203.0.113.10/32",
            "  sync: match holds",
            "    [yes] api_key_sha256: the credential's fingerprint is listed",
            "    [yes] cgroup: system.slice/sync.service matches system.slice/*.service",
            "integration: sync (identity api_key)",
            "rule sync.allow[0] (models res.partner, methods search, read): allows: sync.allow[0] allows res.partner.search",
            "rule sync.allow[1] (models res.partner.category, methods create): does not allow: no rule of sync allows res.partner.search",
            "observe: allow: sync.allow[0] allows res.partner.search",
            "enforce: allow: sync.allow[0] allows res.partner.search",
        ]
    );
    assert_eq!(status, 0);
}

#[test]
fn explain_write_denied_by_every_rule() {
    let (_dir, config) = setup("denied");
    let request = captures().join("odoolib_xmlrpc/009-req.http");
    let (status, out) = explain(&config, &request, &["--cgroup", "system.slice/sync.service"]);

    let out = lines(&out);
    assert!(out.contains(&"call: xmlrpc_legacy model call res.partner.write"), "{out:#?}");
    assert!(out.contains(&"integration: sync (identity api_key)"), "{out:#?}");
    assert!(
        out.contains(&"rule sync.allow[0] (models res.partner, methods search, read): does not allow: no rule of sync allows res.partner.write"),
        "{out:#?}"
    );
    assert_eq!(out.last(), Some(&"enforce: deny: no rule of sync allows res.partner.write"));
    assert!(out.contains(&"observe: would_deny: no rule of sync allows res.partner.write"), "{out:#?}");
    assert_eq!(status, 1);
}

#[test]
fn explain_unidentified_without_cgroup() {
    let (_dir, config) = setup("unidentified");
    let request = captures().join("odoolib_xmlrpc/003-req.http");
    let (status, out) = explain(&config, &request, &[]);

    let out = lines(&out);
    assert!(
        out.contains(&"    [no] cgroup: the request has no cgroup (give --cgroup), so system.slice/*.service cannot match"),
        "{out:#?}"
    );
    assert!(out.contains(&"integration: none (unidentified, policy.unidentified = \"deny\")"), "{out:#?}");
    assert!(!out.iter().any(|line| line.starts_with("rule ")), "no rule is tried: {out:#?}");
    assert_eq!(status, 1);
}

#[test]
fn explain_json2_bearer_key_and_source_address() {
    let (_dir, config) = setup("json2");
    let request = captures().join("odoolib_json2/006-req.http");

    let (status, out) = explain(&config, &request, &[]);
    let out = lines(&out);
    assert!(out.contains(&"integration: reader (identity api_key)"), "{out:#?}");
    assert!(out.contains(&"enforce: allow: reader.allow[0] allows res.partner.read"), "{out:#?}");
    assert_eq!(status, 0);

    // From the form's address the first integration takes the call.
    let (status, out) = explain(&config, &request, &["--from", "203.0.113.10:40000"]);
    let out = lines(&out);
    assert!(out.contains(&"client: 203.0.113.10 (peer 203.0.113.10:40000), cgroup unknown"), "{out:#?}");
    assert!(out.contains(&"integration: website-form (identity ip)"), "{out:#?}");
    assert!(out.contains(&"observe: would_deny: no rule of website-form allows res.partner.read"), "{out:#?}");
    assert_eq!(status, 1);
}

#[test]
fn explain_reads_lf_only_file() {
    let (dir, config) = setup("lf");
    let original = std::fs::read(captures().join("odoolib_xmlrpc/003-req.http")).unwrap();
    let head_end = original.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let mut lf_only = String::from_utf8(original[..head_end].to_vec()).unwrap().replace("\r\n", "\n").into_bytes();
    lf_only.extend_from_slice(b"\n\n");
    lf_only.extend_from_slice(&original[head_end + 4..]);
    let request = dir.join("lf-req.http");
    std::fs::write(&request, lf_only).unwrap();

    let (status, from_lf) = explain(&config, &request, &["--cgroup", "system.slice/sync.service"]);
    let (_, from_crlf) = explain(&config, &captures().join("odoolib_xmlrpc/003-req.http"), &["--cgroup", "system.slice/sync.service"]);
    assert_eq!(from_lf, from_crlf);
    assert_eq!(status, 0);
}

#[test]
fn explain_authentication_needs_no_rule() {
    let (_dir, config) = setup("auth");
    let request = captures().join("odoolib_xmlrpc/001-req.http");
    let (status, out) = explain(&config, &request, &["--from", "203.0.113.10"]);
    let out = lines(&out);
    assert!(out.contains(&"call: xmlrpc_legacy authentication call login"), "{out:#?}");
    assert!(!out.iter().any(|line| line.starts_with("rule ")), "{out:#?}");
    assert_eq!(out.last(), Some(&"enforce: allow: authentication calls need no rule"));
    assert_eq!(status, 0);
}

#[test]
fn explain_non_rpc_request_passes() {
    let (_dir, config) = setup("page");
    let request = captures().join("json2_requests_docstyle/015-req.http");
    let (status, out) = explain(&config, &request, &[]);
    assert_eq!(
        lines(&out),
        [
            "request: GET /json/2/res.partner/search_count",
            "call: none (not an RPC call, so no integration or rule applies)",
            "observe: not recorded as a call",
            "enforce: passed through to Odoo",
        ]
    );
    assert_eq!(status, 0);
}

#[test]
fn explain_ambiguous_framing_rejected_in_enforce() {
    let (dir, config) = setup("framing");
    let body = r#"{"jsonrpc":"2.0","method":"call","params":{"service":"common","method":"version","args":[]}}"#;
    let raw = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: odoo\r\nContent-Length: {len}\r\nContent-Length: {len}\r\n\r\n{body}",
        len = body.len()
    );
    let request = dir.join("dup-req.http");
    std::fs::write(&request, raw).unwrap();

    let (status, out) = explain(&config, &request, &[]);
    let out = lines(&out);
    assert!(out.contains(&"framing anomalies: duplicate_content_length"), "{out:#?}");
    assert_eq!(out.last(), Some(&"enforce: rejected with HTTP 400 (ambiguous framing: duplicate_content_length)"));
    assert_eq!(status, 1);
}

#[test]
fn explain_missing_file_exits_2() {
    let (dir, config) = setup("missing");
    let (status, out) = explain(&config, &dir.join("absent-req.http"), &[]);
    assert_eq!(out, "");
    assert_eq!(status, 2);
}

/// Writes a JSON-2 `search_read` request that presents `token`.
fn token_request(dir: &Path, token: &str) -> PathBuf {
    let body = r#"{"domain": [], "fields": ["name"]}"#;
    let text = format!(
        "POST /json/2/res.partner/search_read HTTP/1.1\r\nHost: odoo\r\nAuthorization: bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let path = dir.join("token-req.http");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn explain_valid_token_one_answer() {
    let (dir, config) = setup("token");
    let text = std::fs::read_to_string(&config).unwrap()
        + "\n[[integration]]\nname = \"assistant\"\nmatch = { token = true }\n\
           allow = [{ models = [\"res.partner\"], methods = [\"search_read\"] }]\n";
    std::fs::write(&config, text).unwrap();
    let store = dir.join("tokens.json");
    let (_, token) = odoogate::token::TokenStore::create(&store, "assistant", None, std::time::SystemTime::now()).unwrap();
    let request = token_request(&dir, token.expose());

    let (status, out) = explain(&config, &request, &["--tokens", &store.to_string_lossy()]);
    let out = lines(&out);
    assert!(out.contains(&"integration: assistant (identity token)"), "{out:#?}");
    assert!(!out.iter().any(|line| line.contains("unidentified")), "{out:#?}");
    assert!(!out.iter().any(|line| line.starts_with("integration in")), "{out:#?}");
    assert!(out.contains(&"observe: allow: assistant.allow[0] allows res.partner.search_read"), "{out:#?}");
    assert_eq!(out.last(), Some(&"enforce: allow: assistant.allow[0] allows res.partner.search_read"));
    assert_eq!(status, 0);

    // The configuration's tokens.store gives the same answer.
    std::fs::copy(&store, dir.join("no-tokens.json")).unwrap();
    let (status, from_config) = explain(&config, &request, &[]);
    assert_eq!(lines(&from_config), out);
    assert_eq!(status, 0);

    // A store without the token: both modes deny it.
    let other = dir.join("other-tokens.json");
    odoogate::token::TokenStore::create(&other, "assistant", None, std::time::SystemTime::now()).unwrap();
    let (status, out) = explain(&config, &request, &["--tokens", &other.to_string_lossy()]);
    let out = lines(&out);
    assert!(out.iter().any(|line| line.starts_with("observe: would_deny: ")), "{out:#?}");
    assert!(out.last().unwrap().starts_with("enforce: deny: "), "{out:#?}");
    assert_eq!(status, 1);
}

/// A token of an integration whose match has no `token = true` is refused
/// from every address, and the address line shows the real address.
#[test]
fn explain_token_needs_token_match() {
    let (dir, config) = setup("token-ip-only");
    let text = std::fs::read_to_string(&config).unwrap()
        + "\n[[integration]]\nname = \"local-script\"\nmatch = { ip = [\"127.0.0.1\"] }\n\
           allow = [{ models = [\"res.partner\"], methods = [\"search_read\"] }]\n";
    std::fs::write(&config, text).unwrap();
    let store = dir.join("tokens.json");
    let (_, token) = odoogate::token::TokenStore::create(&store, "local-script", None, std::time::SystemTime::now()).unwrap();
    let request = token_request(&dir, token.expose());
    let refusal = "token used outside its integration's match (sha256 ";

    for (from, ip_line) in [
        ("127.0.0.2", "    [no] ip: client 127.0.0.2 is not in 127.0.0.1/32"),
        ("127.0.0.1", "    [yes] ip: client 127.0.0.1 is in 127.0.0.1/32"),
    ] {
        let (status, out) = explain(&config, &request, &["--tokens", &store.to_string_lossy(), "--from", from]);
        let out = lines(&out);
        assert!(out.contains(&"  local-script: match does not hold"), "{from}: {out:#?}");
        assert!(
            out.contains(&"    [no] token: the call carries a scoped token, and the match has no `token = true` to accept one"),
            "{from}: {out:#?}"
        );
        assert!(out.contains(&ip_line), "{from}: {out:#?}");
        assert!(out.contains(&"integration: local-script (identity token)"), "{from}: {out:#?}");
        assert!(out.iter().any(|line| line.starts_with(&format!("observe: would_deny: {refusal}"))), "{from}: {out:#?}");
        assert!(out.last().unwrap().starts_with(&format!("enforce: deny: {refusal}")), "{from}: {out:#?}");
        assert_eq!(status, 1, "{from}");
    }
}

#[test]
fn explain_missing_tokens_file_exits_2() {
    let (dir, config) = setup("no-token-store");
    let request = token_request(&dir, "odg_0000");
    let (status, out) = explain(&config, &request, &["--tokens", &dir.join("absent.json").to_string_lossy()]);
    assert_eq!(out, "");
    assert_eq!(status, 2);
}
