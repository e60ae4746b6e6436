//! The scanner against quick-xml: on every body the scanner does not defer,
//! both must return the same document or the same error. Bodies are
//! generated XML-RPC documents, byte-level mutations of them, hand-picked
//! well-formedness cases, and every XML-RPC body of the Odoo 19 captures.

use std::path::Path;

use proptest::prelude::*;

use super::*;

/// Checks that the scanner agrees with quick-xml on `body` in both stop
/// modes, and returns the scanner's reading without a stop.
fn assert_tokenizers_agree(body: &[u8]) -> Option<String> {
    let mut unstopped = None;
    for stop_at_params in [false, true] {
        let readings = read_with_each_tokenizer(body, 8, stop_at_params);
        if let Some(scanner) = &readings.scanner {
            assert_eq!(scanner, &readings.quick_xml, "stop_at_params {stop_at_params}, body {:?}", String::from_utf8_lossy(body));
        }
        if !stop_at_params {
            unstopped = readings.scanner;
        }
    }
    unstopped
}

/// Checks that the scanner defers or rejects `body`, for documents expat
/// rejects.
fn assert_scanner_does_not_accept(body: &str) {
    assert_tokenizers_agree(body.as_bytes());
    let readings = read_with_each_tokenizer(body.as_bytes(), 8, false);
    if let Some(scanner) = readings.scanner {
        assert!(scanner.starts_with("Err("), "the scanner accepted {body:?}: {scanner}");
    }
}

fn call_with(params: &str) -> String {
    format!("<?xml version='1.0'?>\n<methodCall>\n<methodName>execute_kw</methodName>\n<params>\n{params}</params>\n</methodCall>\n")
}

fn string_param(text: &str) -> String {
    call_with(&format!("<param><value><string>{text}</string></value></param>\n"))
}

// === generated documents ===

const TEXT_PIECES: &[&str] = &[
    "a",
    "Partner 1",
    " ",
    "\n",
    "\t",
    "&amp;",
    "&lt;",
    "&gt;",
    "&quot;",
    "&apos;",
    "&#233;",
    "&#x1F680;",
    "&#65;",
    "&#x00041;",
    "é",
    "🚀",
    ">",
    "]",
    "]]",
    "]>",
    "'",
    "\"",
    "x y",
    "ü",
    "=",
    "/",
    "?",
    "!",
    "-",
    ";",
    "#",
    "<![CDATA[<a> & ]]>",
    "<![CDATA[]]>",
];
const INT_TAGS: &[&str] = &["int", "i1", "i2", "i4", "i8", "biginteger", "ex:i8"];
const INT_TEXTS: &[&str] = &["42", "-7", " 3\n", "+8", "1_000", "007", "99999999999999999999", "0", "&#52;2", "x", "1.5"];
const BOOLEAN_TEXTS: &[&str] = &["0", "1", "0", "1", " 1"];
const DOUBLE_TEXTS: &[&str] = &["1.5", "-1e3", "nan", "-inf", " 1_0.5 ", "0.30000000000000004", "x"];
const SCALAR_TEXTS: &[&str] = &["aGk=", "20200101T12:00:00", "1.10", "é", ""];
const NIL_SPELLINGS: &[&str] = &["<nil/>", "<nil />", "<ex:nil/>", "<nil></nil>", "<nil\n/>"];
const SEPARATORS: &[&str] = &["", "\n", " ", "\n  ", "\t"];
const METHOD_NAMES: &[&str] = &["execute_kw", "execute", "login", "version", "write", "a&amp;b"];
/// XML declarations and what may precede the root element. The first
/// five are inside the scanner's subset.
const DECLARATIONS: &[&str] = &[
    "",
    "<?xml version='1.0'?>\n",
    "<?xml version=\"1.0\"?>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
    "<?xml version='1.0' encoding='utf-8'?>",
    "\u{feff}<?xml version=\"1.0\"?>\n",
    "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>",
    "<?xml version=\"1.0\" standalone=\"yes\"?>",
    " <?xml version=\"1.0\"?>",
    "<!-- c -->\n",
];

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(TEXT_PIECES), 0..6).prop_map(|pieces| pieces.concat())
}

fn scalar() -> impl Strategy<Value = String> {
    // Invalid scalars end the unmarshalling early, so they are rare.
    prop_oneof![
        4 => (proptest::sample::select(INT_TAGS), proptest::sample::select(INT_TEXTS))
            .prop_map(|(tag, text)| format!("<{tag}>{text}</{tag}>")),
        2 => proptest::sample::select(BOOLEAN_TEXTS).prop_map(|text| format!("<boolean>{text}</boolean>")),
        2 => proptest::sample::select(DOUBLE_TEXTS).prop_map(|text| format!("<double>{text}</double>")),
        6 => text().prop_map(|text| format!("<string>{text}</string>")),
        3 => text(),
        2 => (proptest::sample::select(&["base64", "dateTime.iso8601", "bigdecimal", "name", "float"][..]), proptest::sample::select(SCALAR_TEXTS))
            .prop_map(|(tag, text)| format!("<{tag}>{text}</{tag}>")),
        2 => proptest::sample::select(NIL_SPELLINGS).prop_map(str::to_owned),
        1 => text().prop_map(|text| format!("<unknown>{text}</unknown>")),
    ]
}

fn value() -> impl Strategy<Value = String> {
    scalar().prop_recursive(4, 24, 4, |inner| {
        let separator = proptest::sample::select(SEPARATORS);
        prop_oneof![
            (proptest::collection::vec(inner.clone(), 0..4), separator.clone()).prop_map(|(items, separator)| {
                let items: String = items.iter().map(|item| format!("<value>{item}</value>{separator}")).collect();
                format!("<array><data>{separator}{items}</data></array>")
            }),
            (proptest::collection::vec((text(), inner), 0..4), separator).prop_map(|(members, separator)| {
                let members: String = members
                    .iter()
                    .map(|(key, value)| {
                        format!("<member>{separator}<name>{key}</name>{separator}<value>{value}</value>{separator}</member >{separator}")
                    })
                    .collect();
                format!("<struct>{separator}{members}</struct>")
            }),
        ]
    })
}

fn params() -> impl Strategy<Value = String> {
    proptest::collection::vec((value(), proptest::sample::select(SEPARATORS)), 0..4).prop_map(|params| {
        params.iter().map(|(value, separator)| format!("<param>{separator}<value>{value}</value>{separator}</param>\n")).collect::<String>()
    })
}

fn document() -> impl Strategy<Value = String> {
    let declaration = prop_oneof![3 => proptest::sample::select(&DECLARATIONS[..5]), 1 => proptest::sample::select(DECLARATIONS)];
    let trailer = proptest::sample::select(&["", "\n", "", "\n", " \n\t", "x", "<!-- c -->"][..]);
    prop_oneof![
        (declaration.clone(), proptest::sample::select(METHOD_NAMES), params(), trailer.clone()).prop_map(
            |(declaration, method, params, trailer)| {
                format!("{declaration}<methodCall>\n<methodName>{method}</methodName>\n<params>\n{params}</params>\n</methodCall>{trailer}")
            }
        ),
        (declaration.clone(), params(), trailer.clone()).prop_map(|(declaration, params, trailer)| format!(
            "{declaration}<methodResponse><params>{params}</params></methodResponse>{trailer}"
        )),
        (declaration, value(), trailer).prop_map(|(declaration, value, trailer)| {
            format!("{declaration}<methodResponse><fault><value>{value}</value></fault></methodResponse>{trailer}")
        }),
    ]
}

/// Bytes and snippets that the mutations insert: markup, references,
/// characters XML does not allow, and invalid UTF-8.
const INSERTIONS: &[&[u8]] = &[
    b"<",
    b">",
    b"&",
    b"/",
    b";",
    b"]",
    b"\r",
    b"\r\n",
    b"\0",
    b"\x01",
    b" ",
    b"!",
    b"?",
    b"#",
    b"x",
    b":",
    b"a",
    b"1",
    b"-",
    b".",
    b"\"",
    b"'",
    b"=",
    "é".as_bytes(),
    "\u{fffe}".as_bytes(),
    "\u{ffff}".as_bytes(),
    "\u{feff}".as_bytes(),
    b"\xef",
    b"\xbf",
    b"<!-- c -->",
    b"<![CDATA[x]]>",
    b"<![CDATA[",
    b"<![CDATA[<&]]>",
    b"<?pi x?>",
    b"<!DOCTYPE a>",
    b"]]>",
    b"&#0;",
    b"&#1;",
    b"&#xD800;",
    b"&#x110000;",
    b"&#X41;",
    b"&#+65;",
    b"&#;",
    b"&nbsp;",
    b"&amp",
    b"</x>",
    b"<x a=\"1\">",
    b"<x/>",
    b"< x>",
    b"<1a>",
    b"<-a>",
    b"<a/ >",
    b"</value >",
    b"<value>",
    b"</value>",
    b"<array>",
    b"</struct>",
    b"<params>",
];

#[derive(Clone, Debug)]
enum Mutation {
    Insert(usize, &'static [u8]),
    Delete(usize, usize),
    Replace(usize, &'static [u8]),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let insertion = proptest::sample::select(INSERTIONS);
    prop_oneof![
        (any::<usize>(), insertion.clone()).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1..8usize).prop_map(|(at, length)| Mutation::Delete(at, length)),
        (any::<usize>(), insertion).prop_map(|(at, bytes)| Mutation::Replace(at, bytes)),
    ]
}

fn mutate(body: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = body.as_bytes().to_vec();
    for mutation in mutations {
        let at = |index: usize| index % (bytes.len() + 1);
        match *mutation {
            Mutation::Insert(index, insertion) => {
                let index = at(index);
                bytes.splice(index..index, insertion.iter().copied());
            }
            Mutation::Delete(index, length) => {
                let index = at(index);
                let end = (index + length).min(bytes.len());
                bytes.drain(index..end);
            }
            Mutation::Replace(index, replacement) => {
                let index = at(index);
                let end = (index + replacement.len()).min(bytes.len());
                bytes.splice(index..end, replacement.iter().copied());
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn generated_documents_agree(body in document()) {
        assert_tokenizers_agree(body.as_bytes());
    }

    #[test]
    fn mutated_documents_agree(body in document(), mutations in proptest::collection::vec(mutation(), 1..3)) {
        assert_tokenizers_agree(&mutate(&body, &mutations));
    }
}

// === hand-picked cases ===

#[test]
fn common_shapes_take_the_scanner() {
    let bodies = [
        string_param("a &amp; b &lt;c&gt; &#233;&#x1F680;&quot;&apos; ]] ] > é"),
        call_with("<param><value><array><data>\n<value><int>1</int></value>\n<value><nil/></value></data></array></value></param>\n"),
        call_with("<param><value><struct><member><name>k</name><value><boolean>1</boolean></value></member ></struct></value></param>"),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><methodCall><methodName>version</methodName><params/></methodCall>".to_owned(),
        "\u{feff}<methodCall><methodName>version</methodName></methodCall>\n\n".to_owned(),
        string_param("x<![CDATA[<p>&amp; ]] ]></p>]]>y<![CDATA[]]>"),
    ];
    for body in bodies {
        let scanner = assert_tokenizers_agree(body.as_bytes());
        assert!(scanner.is_some_and(|reading| reading.starts_with("Ok(")), "the scanner deferred {body:?}");
    }
}

/// Bodies for the scanner's one-comparison paths: known start tags, names
/// that extend them, end tags near the end of the body or with whitespace,
/// and text before a start tag, which the scanner drops.
#[test]
fn tag_fast_paths_agree() {
    let read = [
        call_with("<param><value><i4>1</i4></value></param><param><value><i8>2</i8></value></param>"),
        call_with("<param><value><double>1.5</double></value></param><param><value><base64>aGk=</base64></value></param>"),
        call_with("<param><value><string>a</string ></value ></param>"),
        call_with("<param><value><int>1<x/>2</int></value></param>"),
        call_with("<param><value><string>a <nil/>b</string></value></param>"),
        call_with("<param><value><string>a\n<string>b</string>c</string></value></param>"),
        call_with("<param><value><string>x&amp;<x/>y</string></value></param>"),
        call_with("<param><value><ex:nil/></value></param><param><value><nil /></value></param>"),
        call_with("<param><value><struct><member><name>k</name><value><values>v</values></value></member></struct></value></param>"),
        "<methodCall><methodName>m</methodName><params><param><value><int>1</int></value></param></params></methodCall>".to_owned(),
        "<methodResponse><fault><value><int>1</int></value></fault></methodResponse>".to_owned(),
        "<methodCall><methodName>m</methodName><params/></methodCall>".to_owned(),
        "<a><i4>1</i4></a>".to_owned(),
        "<a><v>1</v><value>x</value></a>".to_owned(),
    ];
    for body in &read {
        let scanner = assert_tokenizers_agree(body.as_bytes());
        assert!(scanner.is_some(), "the scanner deferred {body:?}");
    }
    let rejected = [
        call_with("<param><value><int4>1</int4></value></param>"),
        call_with("<param><value><nilx/></value></param>"),
        call_with("<param><value><string>a</valuf></value></param>"),
        call_with("<param><value><string>a</strin></value></param>"),
        call_with("<param><value><string>a</stringx></value></param>"),
        "<a><value>x</valu".to_owned(),
    ];
    for body in &rejected {
        assert_scanner_does_not_accept(body);
    }
}

#[test]
fn unmarshaller_errors_come_from_the_scanner() {
    for body in [
        string_param("&#52;").replace("string", "boolean"),
        call_with("<param><value><data/></value></param>"),
        call_with(&"<value><array><data>".repeat(9)),
    ] {
        let scanner = assert_tokenizers_agree(body.as_bytes());
        assert!(scanner.is_some_and(|reading| reading.starts_with("Err(")), "{body:?}");
    }
}

#[test]
fn malformed_documents_are_not_accepted() {
    let cases = [
        string_param("a < b"),
        string_param("a ]]> b"),
        string_param("<![CDATA[a \u{1} b]]>"),
        string_param("<![CDATA[a \u{fffe} b]]>"),
        string_param("<![CDATA[a b]]"),
        string_param("<![cdata[a b]]>"),
        string_param("a \u{1} b"),
        string_param("a \u{fffe} b"),
        string_param("a \u{ffff} b"),
        string_param("&#1;"),
        string_param("&#0;"),
        string_param("&#xFFFE;"),
        string_param("&#xD800;"),
        string_param("&#x110000;"),
        string_param("&#99999999999999999999;"),
        string_param("&nbsp;"),
        string_param("&amp"),
        string_param("&#X41;"),
        string_param("&#+65;"),
        string_param("&#x;"),
        string_param("&;"),
        call_with("<param><value><1a>x</1a></value></param>"),
        call_with("<param><value><-a>x</-a></value></param>"),
        call_with("<param><value><.a>x</.a></value></param>"),
        call_with("<param><value>< string>x</string></value></param>"),
        call_with("<param><value><string>x</ string></value></param>"),
        call_with("<param><value><nil/ ></value></param>"),
        call_with("<param><value><string>x</str></value></param>"),
        call_with("<param><value><string>x</strings></value></param>"),
        call_with("<param><value><string>x</value></string></param>"),
        call_with("<param><value><string a=\"1\">x</string></value></param>"),
        call_with("<param><value><string>x</string></value></param></value>"),
        "<methodCall><methodName>m</methodName></methodCall>x".to_owned(),
        "<methodCall><methodName>m</methodName></methodCall><methodCall/>".to_owned(),
        "x<methodCall><methodName>m</methodName></methodCall>".to_owned(),
        "<methodCall><methodName>m</methodName>".to_owned(),
        "<methodCall><methodName>m</methodName></methodCall".to_owned(),
        "<methodCall><methodName>m</methodName></methodCall>\u{1}".to_owned(),
        " <?xml version=\"1.0\"?><methodCall><methodName>m</methodName></methodCall>".to_owned(),
        "<?xml version=\"1.0\"?><?xml version=\"1.0\"?><methodCall><methodName>m</methodName></methodCall>".to_owned(),
        "<?xml version=\"1.0\" encoding=\"latin-1\"?><methodCall><methodName>m</methodName></methodCall>".to_owned(),
        "<!DOCTYPE x [<!ENTITY e \"execute_kw\">]><methodCall><methodName>&e;</methodName></methodCall>".to_owned(),
        "".to_owned(),
        "\u{feff}\u{feff}<methodCall><methodName>m</methodName></methodCall>".to_owned(),
    ];
    for body in &cases {
        assert_scanner_does_not_accept(body);
    }
}

#[test]
fn features_outside_the_subset_are_deferred() {
    for body in [
        string_param("a\r\nb"),
        string_param("a<!-- c -->b"),
        string_param("a<?pi x?>b"),
        call_with("<param><value><string xmlns=\"x\">x</string></value></param>"),
        "<methodCall><methodName>m</methodName></methodCall><!-- c -->".to_owned(),
        "<?xml version=\"1.0\" standalone=\"yes\"?><methodCall><methodName>m</methodName></methodCall>".to_owned(),
    ] {
        let readings = read_with_each_tokenizer(body.as_bytes(), 8, false);
        assert_eq!(readings.scanner, None, "{body:?}");
        assert!(readings.quick_xml.starts_with("Ok("), "{body:?}: {}", readings.quick_xml);
    }
}

#[test]
fn scanner_stops_at_params_like_quick_xml() {
    let cut = b"<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param><value><array><data><value><str";
    let readings = read_with_each_tokenizer(cut, 8, true);
    assert_eq!(readings.scanner.as_deref(), Some(readings.quick_xml.as_str()));
    assert!(readings.quick_xml.starts_with("Ok("));
}

/// Every XML-RPC request and response body of the Odoo 19 captures reads
/// the same both ways, and the scanner reads all requests itself.
#[test]
fn captures_agree() {
    let captures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/odoo19-captures");
    let mut requests = 0;
    for folder in std::fs::read_dir(&captures).unwrap().filter_map(Result::ok) {
        let mut files: Vec<_> = std::fs::read_dir(folder.path()).into_iter().flatten().filter_map(Result::ok).collect();
        files.sort_by_key(std::fs::DirEntry::file_name);
        let mut is_xmlrpc = false;
        for file in files {
            let name = file.file_name().to_string_lossy().into_owned();
            let raw = std::fs::read(file.path()).unwrap();
            let Some(split) = raw.windows(4).position(|window| window == b"\r\n\r\n") else {
                continue;
            };
            let body = &raw[split + 4..];
            if name.ends_with("-req.http") {
                is_xmlrpc = raw.starts_with(b"POST /xmlrpc/");
                if is_xmlrpc {
                    let scanner = assert_tokenizers_agree(body);
                    assert!(scanner.is_some(), "the scanner deferred {}", file.path().display());
                    requests += 1;
                }
            } else if name.ends_with("-resp.http") && is_xmlrpc {
                assert_tokenizers_agree(body);
            }
        }
    }
    assert!(requests > 50, "only {requests} captured XML-RPC requests were compared");
}
