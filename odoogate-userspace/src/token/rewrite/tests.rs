use serde_json::json;

use super::*;

const TOKEN: &str = "odg_0000000000000000000000000000000000000000000000000";
const KEY: &str = "0123456789abcdef0123456789abcdef01234567";

fn request(target: &str, headers: &[(&str, &str)], body: &str) -> HttpRequest {
    HttpRequest {
        method: "POST".to_owned(),
        target: target.to_owned(),
        version: HttpVersion::Http11,
        headers: Headers(headers.iter().map(|(n, v)| ((*n).into(), Bytes::from(v.to_string()))).collect()),
        body: Bytes::from(body.to_owned()),
        body_truncated: false,
        anomalies: Vec::new(),
        first_byte_ns: 0,
        last_byte_ns: 0,
    }
}

fn decode(request: &HttpRequest) -> Call {
    rpc::decode_request(request, &DecodeLimits::default()).unwrap().unwrap()
}

/// Splits rewritten bytes into head and body.
fn split(bytes: &Bytes) -> (String, String) {
    let text = std::str::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn rewrite(request: &HttpRequest, inject: Option<&str>) -> Result<(String, String), RewriteError> {
    let call = decode(request);
    rewrite_request(request, &call, &Secret::new(KEY), inject).map(|bytes| split(&bytes))
}

fn jsonrpc_body(password: &str, kwargs: Option<Json>) -> String {
    let mut args = json!(["odoo19", 2, password, "res.partner", "read", [[1]]]);
    if let Some(kwargs) = kwargs {
        args.as_array_mut().unwrap().push(kwargs);
    }
    json!({"jsonrpc": "2.0", "method": "call", "params": {"service": "object", "method": "execute_kw", "args": args}, "id": 7})
        .to_string()
}

#[test]
fn jsonrpc_password_slot_is_swapped() {
    let req = request("/jsonrpc", &[("Content-Type", "application/json")], &jsonrpc_body(TOKEN, None));
    let (head, body) = rewrite(&req, None).unwrap();
    let value: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(value["params"]["args"][2], json!(KEY));
    assert_eq!(value["id"], json!(7));
    assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    assert!(!body.contains(TOKEN));
}

#[test]
fn header_token_is_removed_and_slot_filled() {
    let headers = [("X-Odoogate-Token", TOKEN), ("Transfer-Encoding", "chunked"), ("Content-Length", "999")];
    let req = request("/jsonrpc", &headers, &jsonrpc_body("placeholder", None));
    let (head, body) = rewrite(&req, None).unwrap();
    assert!(!head.to_ascii_lowercase().contains("x-odoogate-token"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"), "{head}");
    assert_eq!(head.matches("Content-Length").count(), 1, "{head}");
    let value: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(value["params"]["args"][2], json!(KEY));
}

#[test]
fn context_injection_replaces_client_value() {
    let kwargs = json!({"context": {"lang": "fr_BE", "odoogate_integration": "spoofed"}, "fields": ["name"]});
    let req = request("/jsonrpc", &[], &jsonrpc_body(TOKEN, Some(kwargs)));
    let (_, body) = rewrite(&req, Some("n8n")).unwrap();
    let value: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(value["params"]["args"][6]["context"], json!({"lang": "fr_BE", "odoogate_integration": "n8n"}));
    assert_eq!(value["params"]["args"][6]["fields"], json!(["name"]));
}

#[test]
fn context_injection_adds_kwargs() {
    let req = request("/jsonrpc", &[], &jsonrpc_body(TOKEN, None));
    let (_, body) = rewrite(&req, Some("n8n")).unwrap();
    let value: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(value["params"]["args"][6], json!({"context": {"odoogate_integration": "n8n"}}));
}

#[test]
fn json2_bearer_is_replaced() {
    let headers = [("Authorization", &*format!("Bearer {TOKEN}")), ("X-Odoo-Database", "odoo19")];
    let req = request("/json/2/res.partner/read", &headers, r#"{"ids": [1], "context": {"lang": "en_US"}}"#);
    let (head, body) = rewrite(&req, Some("n8n")).unwrap();
    assert!(head.contains(&format!("Authorization: bearer {KEY}")), "{head}");
    assert!(!head.contains(TOKEN));
    let value: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(value["context"], json!({"lang": "en_US", "odoogate_integration": "n8n"}));
}

#[test]
fn json2_header_token_gets_bearer() {
    let req = request("/json/2/res.partner/read", &[("X-Odoogate-Token", TOKEN)], r#"{"ids": [1]}"#);
    let (head, body) = rewrite(&req, None).unwrap();
    assert!(head.ends_with(&format!("Authorization: bearer {KEY}\r\nContent-Length: {}", body.len())), "{head}");
    assert_eq!(body, r#"{"ids": [1]}"#, "the body is kept byte for byte");
}

#[test]
fn web_authenticate_password_is_swapped() {
    let body = json!({"params": {"db": "odoo19", "login": "bot", "password": TOKEN}}).to_string();
    let (_, body) = rewrite(&request("/web/session/authenticate", &[], &body), Some("n8n")).unwrap();
    let value: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(value["params"]["password"], json!(KEY));
}

#[test]
fn xmlrpc_credential_is_swapped_in_place() {
    let body = format!(
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>login</methodName>\n<params>\n\
         <param>\n<value><string>odoo19</string></value>\n</param>\n\
         <param>\n<value><string>bot</string></value>\n</param>\n\
         <param>\n<value><string>{TOKEN}</string></value>\n</param>\n</params>\n</methodCall>\n"
    );
    let (_, out) = rewrite(&request("/xmlrpc/2/common", &[], &body), None).unwrap();
    assert_eq!(out, body.replace(TOKEN, KEY));
}

#[test]
fn big_integer_is_rejected() {
    let body = jsonrpc_body(TOKEN, Some(json!({"limit": 1}))).replace("\"limit\":1", "\"limit\":12345678901234567890123");
    let req = request("/jsonrpc", &[], &body);
    // The splice leaves the integer's digits as they are.
    let (_, spliced) = rewrite(&req, None).unwrap();
    assert_eq!(spliced, body.replace(TOKEN, KEY));

    // The full rewrite would turn it into a float, so it refuses.
    let mut call = decode(&req);
    call.credential.as_mut().unwrap().span = None;
    assert!(matches!(rewrite_request(&req, &call, &Secret::new(KEY), None), Err(RewriteError::Json(_))));
}

#[test]
fn truncated_body_is_rejected() {
    let mut req = request("/jsonrpc", &[], &jsonrpc_body(TOKEN, None));
    let call = decode(&req);
    req.body_truncated = true;
    assert_eq!(rewrite_request(&req, &call, &Secret::new(KEY), None), Err(RewriteError::Truncated(req.body.len())));
}

#[test]
fn control_character_credential_is_rejected() {
    let req = request("/json/2/res.partner/read", &[("X-Odoogate-Token", TOKEN)], "{}");
    let call = decode(&req);
    let error = rewrite_request(&req, &call, &Secret::new("key\r\nX-Evil: 1"), None).unwrap_err();
    assert_eq!(error, RewriteError::InvalidCredential);
}

#[test]
fn call_that_differs_from_body_is_rejected() {
    let req = request("/jsonrpc", &[], &jsonrpc_body(TOKEN, None));
    let mut call = decode(&req);
    call.method = Some("unlink".to_owned());
    // The splice trusts that the call was decoded from this body, so the
    // check runs on the full rewrite.
    call.credential.as_mut().unwrap().span = None;
    let error = rewrite_request(&req, &call, &Secret::new(KEY), None).unwrap_err();
    assert_eq!(error, RewriteError::Changed("call fields"));
}

#[test]
fn errors_never_echo_secrets() {
    let body = jsonrpc_body(TOKEN, None).replace("\"id\":7", "\"id\":7,");
    let req = request("/jsonrpc", &[], &body);
    let call = Call::new(Protocol::JsonRpc, CallKind::Model);
    let error = rewrite_request(&req, &call, &Secret::new(KEY), None).unwrap_err().to_string();
    assert!(!error.contains(TOKEN) && !error.contains(KEY), "{error}");
}

/// Rewrites `request` twice: as the proxy does, and with the credential's
/// span forgotten, which forces the full rewrite. Returns both results.
fn spliced_and_full(request: &HttpRequest) -> (Bytes, Bytes) {
    let call = decode(request);
    let spliced = rewrite_request(request, &call, &Secret::new(KEY), None).unwrap();
    let mut without_span = call.clone();
    without_span.credential.as_mut().unwrap().span = None;
    let full = rewrite_request(request, &without_span, &Secret::new(KEY), None).unwrap();
    (spliced, full)
}

/// Parses rewritten bytes back into a request.
fn reparse(bytes: &Bytes) -> HttpRequest {
    let (head, body) = split(bytes);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, target) = (request_line.next().unwrap(), request_line.next().unwrap());
    let headers: Vec<(&str, &str)> = lines.map(|line| line.split_once(": ").unwrap()).collect();
    let mut parsed = request(target, &headers, &body);
    parsed.method = method.to_owned();
    parsed
}

#[test]
fn xmlrpc_password_span_is_verbatim() {
    let body = |password: &str| {
        format!(
            "<?xml version=\"1.0\"?><methodCall><methodName>execute_kw</methodName><params>\
             <param><value><string>odoo19</string></value></param><param><value><int>2</int></value></param>\
             <param><value>{password}</value></param><param><value>res.partner</value></param>\
             <param><value>read</value></param><param><value><array><data/></array></value></param>\
             </params></methodCall>"
        )
    };
    let span_of = |password: &str| {
        let text = body(password);
        let call = decode(&request("/xmlrpc/2/object", &[], &text));
        let credential = call.credential.unwrap();
        credential.span.map(|span| text[span].to_owned())
    };
    assert_eq!(span_of(TOKEN).as_deref(), Some(TOKEN));
    assert_eq!(span_of(&format!("<string>{TOKEN}</string>")).as_deref(), Some(TOKEN));
    // Text that is not one verbatim run of the body has no span.
    assert_eq!(span_of(&format!("<string><![CDATA[{TOKEN}]]></string>")), None);
    assert_eq!(span_of(&format!("<string>&#111;{}</string>", &TOKEN[1..])), None);
    assert_eq!(span_of(&format!("<string>odg<!-- a comment -->{}</string>", &TOKEN[3..])), None);
    assert_eq!(span_of("<string></string>"), None);
}

#[test]
fn splice_matches_full_rewrite() {
    let in_string = format!(
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>execute_kw</methodName>\n<params>\n\
         <param>\n<value><string>odoo19</string></value>\n</param>\n<param>\n<value><int>2</int></value>\n</param>\n\
         <param>\n<value><string>{TOKEN}</string></value>\n</param>\n\
         <param>\n<value><string>res.partner</string></value>\n</param>\n\
         <param>\n<value><string>search_read</string></value>\n</param>\n\
         <param>\n<value><array><data><value><array><data></data></array></value></data></array></value>\n</param>\n\
         </params>\n</methodCall>\n"
    );
    let req = request("/xmlrpc/2/object", &[("X-Forwarded-For", "10.0.0.1"), ("Content-Length", "1")], &in_string);
    let (spliced, full) = spliced_and_full(&req);
    assert_eq!(spliced, full);
    assert!(!split(&spliced).1.contains(TOKEN));

    // A bare `<value>` text becomes `<string>` in the full rewrite; both
    // decode to the same call.
    let bare = in_string.replace(&format!("<string>{TOKEN}</string>"), TOKEN);
    let req = request("/xmlrpc/2/object", &[], &bare);
    let (spliced, full) = spliced_and_full(&req);
    assert_ne!(spliced, full);
    assert_eq!(decode(&reparse(&spliced)), decode(&reparse(&full)));
    assert_eq!(split(&spliced).1, bare.replace(TOKEN, KEY));
}

#[test]
fn spliced_credential_is_escaped() {
    let body = format!(
        "<?xml version='1.0'?><methodCall><methodName>login</methodName><params>\
         <param><value><string>odoo19</string></value></param><param><value><string>bot</string></value></param>\
         <param><value><string>{TOKEN}</string></value></param></params></methodCall>"
    );
    let req = request("/xmlrpc/2/common", &[], &body);
    let call = decode(&req);
    let password = Secret::new("a<b&c>\"d'");
    let out = rewrite_request(&req, &call, &password, None).unwrap();
    let rewritten = decode(&reparse(&out));
    assert_eq!(rewritten.credential.unwrap().secret.expose(), password.expose());
    // A password outside ASCII takes the full rewrite.
    let out = rewrite_request(&req, &call, &Secret::new("pässword"), None).unwrap();
    assert_eq!(decode(&reparse(&out)).credential.unwrap().secret.expose(), "pässword");
}

/// Checks every request of the captures whose head starts with `start`
/// and that takes a password, with the password replaced by a token: the
/// token has a span, and splicing gives the full rewrite's call without
/// the token, which the full rewrite's own check accepts. At least 10
/// calls must be spliced.
fn assert_captures_splice_like_full_rewrite(start: &[u8]) {
    let captures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures");
    let mut spliced_calls = 0;
    for folder in std::fs::read_dir(&captures).unwrap().filter_map(Result::ok) {
        for file in std::fs::read_dir(folder.path()).into_iter().flatten().filter_map(Result::ok) {
            let raw = std::fs::read(file.path()).unwrap();
            if !file.file_name().to_string_lossy().ends_with("-req.http") || !raw.starts_with(start) {
                continue;
            }
            let split_at = raw.windows(4).position(|window| window == b"\r\n\r\n").unwrap();
            let target = std::str::from_utf8(&raw[..split_at]).unwrap().split(' ').nth(1).unwrap().to_owned();
            let body = String::from_utf8(raw[split_at + 4..].to_vec()).unwrap();
            if !body.contains("PASSWORD_PLACEHOLDER") {
                continue;
            }
            let req = request(&target, &[], &body.replace("PASSWORD_PLACEHOLDER", TOKEN));
            let call = decode(&req);
            if call.credential.as_ref().map(|credential| credential.slot) != Some(CredentialSlot::Password) {
                continue;
            }
            assert!(call.credential.as_ref().unwrap().span.is_some(), "no span in {}", file.path().display());
            let (spliced, full) = spliced_and_full(&req);
            let upstream = reparse(&spliced);
            assert_eq!(decode(&upstream), decode(&reparse(&full)), "{}", file.path().display());
            assert!(!split(&spliced).1.contains(TOKEN), "{}", file.path().display());
            let slot = Some(CredentialSlot::Password);
            confirm(&upstream, &call, &Secret::new(KEY), slot, None).unwrap();
            spliced_calls += 1;
        }
    }
    assert!(spliced_calls >= 10, "only {spliced_calls} captured calls were spliced");
}

#[test]
fn captures_splice_like_full_rewrite() {
    assert_captures_splice_like_full_rewrite(b"POST /xmlrpc/");
}

/// Text read by two end tags makes two values in Python, so a password
/// inside another typed element must not be spliced. The credential would
/// land in the outer value too, and Odoo's error for that value would show
/// it to the client. The call is flagged, so the policy denies it before
/// any rewrite, and the full rewrite refuses it as well.
#[test]
fn password_read_twice_has_no_span() {
    let wrapped_in_datetime = format!(
        "<?xml version='1.0'?><methodCall><methodName>login</methodName><params>\
         <param><value><string>odoo19</string></value></param>\
         <param><value><string>bot</string></value></param>\
         <param><value><dateTime.iso8601><string>{TOKEN}</string></dateTime.iso8601></value></param>\
         </params></methodCall>"
    );
    let req = request("/xmlrpc/2/common", &[], &wrapped_in_datetime);
    let call = decode(&req);
    assert_eq!(call.credential.as_ref().unwrap().span, None);
    assert_eq!(call.mismatches.len(), 1, "the policy denies such a call");
    assert!(rewrite_request(&req, &call, &Secret::new(KEY), None).is_err());

    // The uid and the password read the same text here, and the full
    // rewrite rejects the body.
    let shared_with_uid = format!(
        "<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params>\
         <param><value><string>odoo19</string></value></param>\
         <param><value><string><string>{TOKEN}</string></string></value></param>\
         <param><value><string>res.partner</string></value></param>\
         <param><value><string>read</string></value></param>\
         <param><value><array><data><value><int>1</int></value></data></array></value></param>\
         </params></methodCall>"
    );
    let req = request("/xmlrpc/2/object", &[], &shared_with_uid);
    let call = decode(&req);
    assert_eq!(call.credential.as_ref().unwrap().span, None);
    assert!(rewrite_request(&req, &call, &Secret::new(KEY), None).is_err());
}

#[test]
fn given_headers_replace_request_headers() {
    let xmlrpc = format!(
        "<?xml version='1.0'?>\n<methodCall>\n<methodName>login</methodName>\n<params>\n\
         <param>\n<value><string>odoo19</string></value>\n</param>\n\
         <param>\n<value><string>bot</string></value>\n</param>\n\
         <param>\n<value><string>{TOKEN}</string></value>\n</param>\n</params>\n</methodCall>\n"
    );
    let cases = [
        ("/xmlrpc/2/common", xmlrpc, None),
        ("/jsonrpc", jsonrpc_body(TOKEN, None), None),
        ("/jsonrpc", jsonrpc_body(TOKEN, None), Some("n8n")),
        ("/json/2/res.partner/read", r#"{"ids": [1]}"#.to_owned(), None),
    ];
    let given = [
        ("Host", "odoo"),
        ("X-Odoogate-Token", TOKEN),
        ("Authorization", "Basic abc"),
        ("content-length", "12"),
        ("X-Forwarded-For", "192.0.2.1"),
        ("Accept", "*/*"),
        ("Connection", "keep-alive"),
    ];
    for (target, body, inject) in cases {
        let own = request(target, &[("X-Client-Only", "1"), ("Authorization", &format!("Bearer {TOKEN}"))], &body);
        let call = decode(&own);
        let headers = request(target, &given, "").headers;
        let with_headers = rewrite_request_with_headers(&own, &headers, &call, &Secret::new(KEY), inject).unwrap();
        let replaced = HttpRequest { headers: headers.clone(), ..own.clone() };
        let expected = rewrite_request(&replaced, &call, &Secret::new(KEY), inject).unwrap();
        assert_eq!(with_headers, expected, "{target}");

        // The given fields go out in their order, without the token and
        // the framing fields, and none of the request's own fields do.
        let (head, _) = split(&with_headers);
        let names: Vec<&str> = head.split("\r\n").skip(1).map(|line| line.split_once(": ").unwrap().0).collect();
        let expected_names = ["Host", "Authorization", "X-Forwarded-For", "Accept", "Connection", "Content-Length"];
        assert_eq!(names, expected_names, "{target}");
        assert!(!head.contains("X-Client-Only"), "{head}");
        assert!(!head.contains(TOKEN), "{head}");
    }
}

#[test]
fn jsonrpc_password_span_is_verbatim() {
    let span_of = |password_literal: &str| {
        let body = jsonrpc_body("PLACEHOLDER", None).replace("\"PLACEHOLDER\"", password_literal);
        let call = decode(&request("/jsonrpc", &[], &body));
        let credential = call.credential.unwrap();
        credential.span.map(|span| body[span].to_owned())
    };
    assert_eq!(span_of(&format!("\"{TOKEN}\"")).as_deref(), Some(TOKEN));
    assert_eq!(span_of("\"\"").as_deref(), Some(""));
    // A string with an escape is not one verbatim run of the body.
    assert_eq!(span_of(&format!("\"\\u006f{}\"", &TOKEN[1..])), None);
    assert_eq!(span_of("\"a\\\"b\""), None);
}

#[test]
fn jsonrpc_splice_matches_full_rewrite() {
    let body = jsonrpc_body(TOKEN, Some(json!({"fields": ["name"], "context": {"lang": "en_US"}})));
    let req = request("/jsonrpc", &[("X-Forwarded-For", "10.0.0.1"), ("Content-Length", "1")], &body);
    let (spliced, full) = spliced_and_full(&req);
    assert_eq!(split(&spliced).1, body.replace(TOKEN, KEY), "only the password's bytes change");
    assert_eq!(decode(&reparse(&spliced)), decode(&reparse(&full)));
    assert!(!split(&spliced).1.contains(TOKEN));
}

#[test]
fn jsonrpc_spliced_credential_is_escaped() {
    let req = request("/jsonrpc", &[], &jsonrpc_body(TOKEN, None));
    let call = decode(&req);
    let password = Secret::new("a\"b\\c'd/e");
    let out = rewrite_request(&req, &call, &password, None).unwrap();
    let rewritten = decode(&reparse(&out));
    assert_eq!(rewritten.credential.unwrap().secret.expose(), password.expose());
    assert_eq!(rewritten.model.as_deref(), Some("res.partner"));
}

/// Python keeps the last of two `args` keys, and so does the decoder, but
/// the first stays in the body. A token there must not reach Odoo, so such
/// a body takes the full rewrite, which drops the first `args`. The same
/// holds for a token under any other key sent twice.
#[test]
fn jsonrpc_token_sent_twice_is_not_spliced() {
    let body = jsonrpc_body(TOKEN, None).replacen("\"args\":", &format!("\"args\":[\"odoo19\",2,\"{TOKEN}\"],\"args\":"), 1);
    let req = request("/jsonrpc", &[], &body);
    let call = decode(&req);
    assert_eq!(call.credential.as_ref().unwrap().span, None, "args came twice");
    let out = rewrite_request(&req, &call, &Secret::new(KEY), None).unwrap();
    let upstream = split(&out).1;
    assert!(!upstream.contains(TOKEN), "{upstream}");
    assert_eq!(decode(&reparse(&out)).credential.unwrap().secret.expose(), KEY);

    let body = jsonrpc_body(TOKEN, None).replacen("\"id\":7", &format!("\"id\":\"{TOKEN}\",\"id\":7"), 1);
    let req = request("/jsonrpc", &[], &body);
    let call = decode(&req);
    assert!(call.credential.as_ref().unwrap().span.is_some(), "params and args came once");
    let out = rewrite_request(&req, &call, &Secret::new(KEY), None).unwrap();
    let upstream = split(&out).1;
    assert!(!upstream.contains(TOKEN), "{upstream}");
    assert_eq!(decode(&reparse(&out)).credential.unwrap().secret.expose(), KEY);
}

/// A copy of the token under a key sent twice may spell a character with a
/// `\u` escape, so its bytes differ from the token's. Python ignores the
/// copy and the full rewrite drops it, so the splice must not keep it.
#[test]
fn jsonrpc_escaped_token_sent_twice_is_not_spliced() {
    let escaped = format!("\\u006f{}", &TOKEN[1..]);
    let bodies = [
        jsonrpc_body(TOKEN, None).replacen("\"id\":7", &format!("\"id\":\"{escaped}\",\"id\":7"), 1),
        jsonrpc_body(TOKEN, Some(json!({"context": {"note": "PLACEHOLDER", "lang": "en_US"}}))).replacen(
            "\"note\":\"PLACEHOLDER\"",
            &format!("\"note\":\"{escaped}\",\"note\":\"x\""),
            1,
        ),
    ];
    for body in bodies {
        let req = request("/jsonrpc", &[], &body);
        let call = decode(&req);
        assert_eq!(call.credential.as_ref().unwrap().secret.expose(), TOKEN, "{body}");
        let (spliced, full) = spliced_and_full(&req);
        assert!(!split(&full).1.contains(&TOKEN[1..]), "the full rewrite drops the copy: {body}");
        let upstream = split(&spliced).1;
        assert!(!upstream.contains(&TOKEN[1..]), "the escaped copy reached Odoo: {upstream}");
        assert_eq!(decode(&reparse(&spliced)), decode(&reparse(&full)), "{body}");
    }
}

/// A `\u` escape of a character outside the token leaves the splice on.
#[test]
fn jsonrpc_unrelated_escape_is_spliced() {
    let body = jsonrpc_body(TOKEN, Some(json!({"context": {"note": "caf\u{e9} \"x\""}})));
    let body = body.replacen('\u{e9}', "\\u00e9", 1);
    assert!(body.contains("\\u00e9"), "{body}");
    assert!(body.contains("\\\""), "{body}");
    let req = request("/jsonrpc", &[], &body);
    let (spliced, _) = spliced_and_full(&req);
    assert_eq!(split(&spliced).1, body.replace(TOKEN, KEY), "only the password's bytes change");
}

#[test]
fn jsonrpc_captures_splice_like_full_rewrite() {
    assert_captures_splice_like_full_rewrite(b"POST /jsonrpc ");
}

/// The parts of a generated `/jsonrpc` body around a token password.
#[derive(Clone, Debug)]
struct JsonRpcCase {
    /// The password literal: plain, with an escape, or not the token.
    password: &'static str,
    /// An earlier `args` key, which Python ignores, with the token in it.
    earlier_args: bool,
    /// The token also appears in a context value.
    token_in_context: bool,
    /// `args` comes before `service` and `method`.
    args_first: bool,
    /// Spaces after colons and commas.
    spaced: bool,
    /// An earlier `id` key, which Python ignores, with the token spelled
    /// with a `\u` escape.
    escaped_earlier_id: bool,
}

impl JsonRpcCase {
    fn body(&self) -> String {
        let password = match self.password {
            "token" => format!("\"{TOKEN}\""),
            "escaped" => format!("\"\\u006f{}\"", &TOKEN[1..]),
            "escaped quote" => format!("\"{TOKEN}\\\"\""),
            _ => "\"a-password\"".to_owned(),
        };
        let context = if self.token_in_context { format!("{{\"note\":\"{TOKEN}\"}}") } else { "{\"lang\":\"en_US\"}".to_owned() };
        let args = format!("\"args\":[\"odoo19\",2,{password},\"res.partner\",\"search_read\",[[]],{{\"context\":{context}}}]");
        let earlier = if self.earlier_args { format!("\"args\":[\"odoo19\",2,\"{TOKEN}\"],") } else { String::new() };
        let names = "\"service\":\"object\",\"method\":\"execute_kw\"";
        let params = match self.args_first {
            true => format!("{earlier}{args},{names}"),
            false => format!("{names},{earlier}{args}"),
        };
        let earlier_id = if self.escaped_earlier_id { format!("\"id\":\"\\u006f{}\",", &TOKEN[1..]) } else { String::new() };
        let body = format!("{{\"jsonrpc\":\"2.0\",\"method\":\"call\",\"params\":{{{params}}},{earlier_id}\"id\":7}}");
        match self.spaced {
            true => body.replace("\":", "\": ").replace(",\"", ", \""),
            false => body,
        }
    }
}

fn jsonrpc_case() -> impl proptest::strategy::Strategy<Value = JsonRpcCase> {
    use proptest::prelude::*;
    let password = proptest::sample::select(vec!["token", "escaped", "escaped quote", "other"]);
    (password, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(password, earlier_args, token_in_context, args_first, spaced, escaped_earlier_id)| JsonRpcCase {
            password,
            earlier_args,
            token_in_context,
            args_first,
            spaced,
            escaped_earlier_id,
        },
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..proptest::prelude::ProptestConfig::default() })]

    /// The splice gives the full rewrite's call, and leaves a copy of the
    /// token in the body exactly when the full rewrite does.
    #[test]
    fn jsonrpc_splice_agrees_with_full_rewrite(case in jsonrpc_case()) {
        let body = case.body();
        let req = request("/jsonrpc", &[], &body);
        let call = decode(&req);
        let (spliced, full) = spliced_and_full(&req);
        proptest::prop_assert_eq!(decode(&reparse(&spliced)), decode(&reparse(&full)), "body: {}", body);
        proptest::prop_assert_eq!(split(&spliced).1.contains(TOKEN), split(&full).1.contains(TOKEN), "body: {}", body);
        let password = call.credential.as_ref().map(|credential| credential.secret.expose().to_owned());
        // The proxy swaps only a token it verified, so the password is the
        // token. A copy spelled with an escape contains the token without
        // its first character.
        if password.as_deref() == Some(TOKEN) {
            let escaped_copy = |bytes: &Bytes| split(bytes).1.contains(&TOKEN[1..]);
            proptest::prop_assert_eq!(escaped_copy(&spliced), escaped_copy(&full), "body: {}", body);
        }
        if password.as_deref() == Some(TOKEN) && !case.earlier_args && !case.token_in_context {
            proptest::prop_assert!(!split(&spliced).1.contains(TOKEN), "body: {}", body);
        }
    }
}

/// Writes an `execute_kw` call on `/xmlrpc/2/object` whose seventh
/// parameter is `kwargs`, the inside of its `<value>`.
fn xmlrpc_execute_kw(kwargs: &str) -> HttpRequest {
    let body = format!(
        "<?xml version='1.0'?>\n<methodCall><methodName>execute_kw</methodName><params>\
         <param><value><string>odoo19</string></value></param><param><value><int>2</int></value></param>\
         <param><value><string>{TOKEN}</string></value></param>\
         <param><value><string>res.partner</string></value></param><param><value><string>read</string></value></param>\
         <param><value><array><data><value><int>1</int></value></data></array></value></param>\
         <param><value>{kwargs}</value></param></params></methodCall>\n"
    );
    request("/xmlrpc/2/object", &[], &body)
}

fn member(name: &str, value: &str) -> String {
    format!("<member><name>{name}</name><value>{value}</value></member>")
}

/// Returns the context that the full rewrite sends for an XML-RPC call,
/// read back with the XML-RPC decoder, as a JSON value.
fn rewritten_xmlrpc_context(req: &HttpRequest, inject: &str) -> Result<Json, RewriteError> {
    let (head, body) = rewrite(req, Some(inject))?;
    let upstream = request("/xmlrpc/2/object", &[], &body);
    assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    let context = decode(&upstream).context.expect("the rewrite sets a context");
    Ok(context.to_json().expect("an XML-RPC context parses"))
}

/// The full rewrite of XML-RPC calls whose context contains doubles that
/// serde_json reads back inexactly, integers beyond 64 bits, repeated
/// keys, the client's own `odoogate_integration` and characters that JSON
/// escapes, and a context as deep as the decoder allows.
#[test]
fn xmlrpc_context_injection_keeps_every_value() {
    let controls = "&#9;&#10;&#13;\"\\&lt;&#x2028;&#x2029;&#xFDD0;&#x10FFFF;";
    let context = [
        member("lang", "<string>fr_BE</string>"),
        member("d", "<double>394301.33835633675</double>"),
        member("tiny", "<double>1.0715660391465826e-75</double>"),
        member("zero", "<double>-0.0</double>"),
        member("big", "<int>123456789012345678901234567890</int>"),
        member("u64", "<i8>9223372036854775807</i8>"),
        member("odoogate_integration", "<string>spoofed</string>"),
        member("lang", "<string>en_US</string>"),
        member(controls, &format!("<string>{controls}</string>")),
        member("odoogate_integration", "<boolean>1</boolean>"),
        member("nested", &format!("<struct>{}</struct>", member("d", "<array><data><value><double>1e300</double></value></data></array>"))),
    ]
    .concat();
    let req = xmlrpc_execute_kw(&format!("<struct>{}</struct>", member("context", &format!("<struct>{context}</struct>"))));
    let original = decode(&req).context.unwrap().to_json().unwrap();
    let mut expected = original.clone();
    set_context_key(&mut expected, "n8n");
    assert_eq!(expected["lang"], "en_US");
    assert_eq!(expected["big"], "123456789012345678901234567890");
    assert_eq!(rewritten_xmlrpc_context(&req, "n8n").unwrap(), expected);
    // Odoo reads the doubles from the XML, which keeps their digits.
    let (_, body) = rewrite(&req, Some("n8n")).unwrap();
    assert!(body.contains("<double>394301.33835633675</double>"), "{body}");
    assert!(body.contains("<double>1.0715660391465826e-75</double>"), "{body}");

    // kwargs.context as deep as the proxy's decoder reads: 64 structs and
    // arrays, `kwargs` and `context` among them.
    let max_depth = DecodeLimits::default().max_depth;
    let mut deep = "<struct></struct>".to_owned();
    for _ in 0..max_depth - 3 {
        deep = format!("<array><data><value>{deep}</value></data></array>");
    }
    let deep = xmlrpc_execute_kw(&format!("<struct>{}</struct>", member("context", &format!("<struct>{}</struct>", member("k", &deep)))));
    assert!(decode(&deep).context.is_some());
    let rewritten = rewritten_xmlrpc_context(&deep, "n8n").unwrap();
    assert_eq!(rewritten["odoogate_integration"], "n8n");
}
