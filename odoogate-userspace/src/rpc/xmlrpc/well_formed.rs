//! Well-formedness rules that expat enforces and quick-xml's reader does
//! not. Without them the quick-xml path would read documents that Python's
//! `xmlrpc.client.loads` rejects.
//!
//! NOTE: names are checked for ASCII characters only. A non-ASCII
//! character that expat 2.5 does not allow in a name (U+00D7, U+2028,
//! U+FFFD, or U+10000 as the first character) still passes.

use quick_xml::events::{BytesDecl, BytesPI, BytesStart, BytesText};

use super::{DecodeError, check_xml_chars, is_xml_char};

/// Rejects `]]>` in text, which XML 1.0 does not allow outside CDATA sections.
pub(super) fn check_text(text: &BytesText<'_>) -> Result<(), DecodeError> {
    if memchr::memmem::find(text, b"]]>").is_some() {
        return Err(invalid("`]]>` in text"));
    }
    Ok(())
}

/// Checks the element name and the attributes of a start or empty-element
/// tag: names, an `=` and a quoted value for each attribute, no attribute
/// twice, and no `<`, undefined entity or disallowed character in a value.
pub(super) fn check_start_tag(start: &BytesStart<'_>) -> Result<(), DecodeError> {
    check_name(start.name().into_inner(), "element name")?;
    check_attribute_separation(start.attributes_raw())?;
    let mut attributes = start.attributes();
    attributes.with_checks(true);
    for attribute in attributes {
        let attribute = attribute.map_err(|_| invalid("malformed attribute"))?;
        check_name(attribute.key.into_inner(), "attribute name")?;
        let value = std::str::from_utf8(&attribute.value).map_err(|_| DecodeError::NotUtf8)?;
        if value.contains('<') {
            return Err(invalid("`<` in an attribute value"));
        }
        let resolved = quick_xml::escape::unescape(value).map_err(|_| invalid("invalid reference in an attribute value"))?;
        if !resolved.chars().all(is_xml_char) {
            return Err(invalid("character not allowed in an attribute value"));
        }
    }
    Ok(())
}

/// Rejects an attribute that follows a closing quote without whitespace,
/// as in `a='1'b='2'`, which quick-xml's attribute checks let through.
fn check_attribute_separation(attributes: &[u8]) -> Result<(), DecodeError> {
    let mut open_quote = None;
    for (index, &byte) in attributes.iter().enumerate() {
        match open_quote {
            Some(quote) if byte == quote => {
                open_quote = None;
                let next = attributes.get(index + 1).copied();
                if next.is_some_and(|next| !is_whitespace(next) && next != b'/') {
                    return Err(invalid("no whitespace between attributes"));
                }
            }
            Some(_) => {}
            None if byte == b'"' || byte == b'\'' => open_quote = Some(byte),
            None => {}
        }
    }
    Ok(())
}

/// Rejects `--` inside a comment, a comment that ends in `-`, and
/// characters XML 1.0 does not allow.
pub(super) fn check_comment(comment: &BytesText<'_>) -> Result<(), DecodeError> {
    let content: &[u8] = comment;
    if memchr::memmem::find(content, b"--").is_some() || content.ends_with(b"-") {
        return Err(invalid("`--` in a comment"));
    }
    check_xml_chars(std::str::from_utf8(content).map_err(|_| DecodeError::NotUtf8)?)
}

/// Rejects a processing instruction without a target name, one whose target
/// is `xml` in any case (reserved for the declaration), and characters XML
/// 1.0 does not allow.
pub(super) fn check_processing_instruction(instruction: &BytesPI<'_>) -> Result<(), DecodeError> {
    let target = instruction.target();
    check_name(target, "processing instruction target")?;
    if target.eq_ignore_ascii_case(b"xml") {
        return Err(invalid("processing instruction named xml"));
    }
    let content: &[u8] = instruction;
    let rest = &content[target.len()..];
    if !rest.is_empty() && !is_whitespace(rest[0]) {
        return Err(invalid("processing instruction target"));
    }
    check_xml_chars(std::str::from_utf8(content).map_err(|_| DecodeError::NotUtf8)?)
}

/// Checks an XML declaration as expat 2.5 does: `version`, then optional
/// `encoding` and `standalone`, in that order, each after whitespace, with
/// quoted values of ASCII letters, digits, `.`, `_` and `-`. An encoding
/// name starts with a letter, and `standalone` is `yes` or `no`.
pub(super) fn check_declaration(declaration: &BytesDecl<'_>) -> Result<(), DecodeError> {
    let malformed = || invalid("malformed XML declaration");
    let content: &[u8] = declaration;
    let mut rest = content.strip_prefix(b"xml").ok_or_else(malformed)?;
    let mut expected: &[&[u8]] = &[b"version", b"encoding", b"standalone"];
    let mut is_first = true;
    loop {
        let trimmed = trim_start(rest);
        if trimmed.is_empty() {
            return if is_first { Err(malformed()) } else { Ok(()) };
        }
        if trimmed.len() == rest.len() {
            return Err(malformed());
        }
        let name_length = trimmed.iter().position(|&byte| byte == b'=' || is_whitespace(byte)).ok_or_else(malformed)?;
        let (name, after_name) = trimmed.split_at(name_length);
        let position = expected.iter().position(|&candidate| candidate == name).ok_or_else(malformed)?;
        if is_first && position != 0 {
            return Err(malformed());
        }
        expected = &expected[position + 1..];
        is_first = false;

        let after_equals = trim_start(after_name).strip_prefix(b"=").ok_or_else(malformed)?;
        let quoted = trim_start(after_equals);
        let (&quote, after_quote) = quoted.split_first().ok_or_else(malformed)?;
        if quote != b'"' && quote != b'\'' {
            return Err(malformed());
        }
        let value_length = after_quote.iter().position(|&byte| byte == quote).ok_or_else(malformed)?;
        let value = &after_quote[..value_length];
        let is_pseudo_attribute_char = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
        if !value.iter().all(is_pseudo_attribute_char) {
            return Err(malformed());
        }
        let is_valid = match name {
            b"encoding" => value.first().is_some_and(u8::is_ascii_alphabetic),
            b"standalone" => value == b"yes" || value == b"no",
            _ => true,
        };
        if !is_valid {
            return Err(malformed());
        }
        rest = &after_quote[value_length + 1..];
    }
}

/// Checks the ASCII characters of a name against XML 1.0, and lets every
/// non-ASCII character pass.
fn check_name(name: &[u8], description: &str) -> Result<(), DecodeError> {
    let Some((&first, rest)) = name.split_first() else {
        return Err(DecodeError::InvalidXml(format!("empty {description}")));
    };
    let is_valid_start = !first.is_ascii() || first.is_ascii_alphabetic() || matches!(first, b'_' | b':');
    let is_valid_rest =
        rest.iter().all(|&byte| !byte.is_ascii() || byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b':' | b'-' | b'.'));
    if !is_valid_start || !is_valid_rest {
        return Err(DecodeError::InvalidXml(format!("invalid {description}")));
    }
    Ok(())
}

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&byte| !is_whitespace(byte)).unwrap_or(bytes.len());
    &bytes[start..]
}

fn invalid(reason: &str) -> DecodeError {
    DecodeError::InvalidXml(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::{Stop, Unmarshaller};

    fn call_with(declaration: &str, value: &str, trailer: &str) -> String {
        format!(
            "{declaration}<methodCall><methodName>execute_kw</methodName><params><param><value>{value}</value></param></params></methodCall>{trailer}"
        )
    }

    fn read(body: &str) -> Result<(), String> {
        Unmarshaller::new(64, Stop::Never).run(body.as_bytes()).map(drop).map_err(|error| error.to_string())
    }

    /// Python 3.11's `xmlrpc.client.loads` on expat 2.5 rejects each of
    /// these bodies, and before these checks odoogate read each of them.
    #[test]
    fn bodies_expat_rejects_are_invalid() {
        let cases = [
            call_with("", "<string>a]]>b</string>", ""),
            call_with("", "<string><![CDATA[x]]>]]></string>", ""),
            call_with("", "x", "&#32;"),
            call_with("", "x", "<![CDATA[]]>"),
            call_with("&#32;", "x", ""),
            call_with("<?xml version='1.0' standalone='maybe'?>", "x", ""),
            call_with("<?xml version='1.0'encoding='utf-8'?>", "x", ""),
            call_with("<?xml?>", "x", ""),
            call_with("<?xml encoding='utf-8'?>", "x", ""),
            call_with("<?xml version='1.0' encoding='utf-8' version='1.0'?>", "x", ""),
            call_with("<?xml version='1.0' ENCODING='latin-1'?>", "x", ""),
            call_with("<?xml version='1.0' encoding='utf-8' encoding='latin-1'?>", "x", ""),
            call_with("<?xml version='1.0' encoding='8bit'?>", "x", ""),
            call_with("<?xml version='1 0'?>", "x", ""),
            call_with("<?xml version='1.0' encoding='us-ascii'?>", "\u{e9}", ""),
            call_with("<?xml version='1.0' encoding='ASCII'?>", "\u{e9}", ""),
            call_with("<?xml version='1.0' encoding='utf8'?>", "\u{e9}", ""),
            call_with("<?XML version='1.0'?>", "x", ""),
            call_with("<?xml version='1.0'?><?xml version='1.0'?>", "x", ""),
            call_with(" <?xml version='1.0'?>", "x", ""),
            call_with("<!-- c --><?xml version='1.0'?>", "x", ""),
            call_with("\u{feff}\u{feff}<?xml version='1.0'?>", "x", ""),
            call_with("", "<string a>x</string>", ""),
            call_with("", "<string a=1>x</string>", ""),
            call_with("", "<string a='1' a='2'>x</string>", ""),
            call_with("", "<string a='1'b='2'>x</string>", ""),
            call_with("", "<string 1a='1'>x</string>", ""),
            call_with("", "<string a='<'>x</string>", ""),
            call_with("", "<string a='&'>x</string>", ""),
            call_with("", "<string a='&nbsp;'>x</string>", ""),
            call_with("", "<string a='&#0;'>x</string>", ""),
            call_with("", "<string a='\u{1}'>x</string>", ""),
            call_with("", "<string>a<!-- a -- b -->b</string>", ""),
            call_with("", "<string>a<!-- a --->b</string>", ""),
            call_with("", "<string>a<!-- \u{1} -->b</string>", ""),
            call_with("", "<string>a<!-- \u{fffe} -->b</string>", ""),
            call_with("", "<string>a<?xml version='1.0'?>b</string>", ""),
            call_with("", "<string>a<?XmL x?>b</string>", ""),
            call_with("", "<string>a<? x?>b</string>", ""),
            call_with("", "<string>a<?1pi?>b</string>", ""),
            call_with("", "<string>a<?pi?x?>b</string>", ""),
            call_with("", "<string>a<?pi \u{1}?>b</string>", ""),
            call_with("", "<array><data><a!b>1</a!b></data></array>", ""),
            call_with("", "<array><data><a$b>1</a$b></data></array>", ""),
            call_with("", "<array><data><a/b>1</a/b></data></array>", ""),
            call_with("", "<array><data><a\u{7f}b>1</a\u{7f}b></data></array>", ""),
        ];
        for body in &cases {
            let error = read(body).expect_err(body);
            assert!(error.starts_with("invalid XML"), "{body:?}: {error}");
        }
    }

    /// Python 3.11's `xmlrpc.client.loads` on expat 2.5 reads each of these
    /// bodies, which the scanner defers to quick-xml.
    #[test]
    fn well_formed_variants_are_read() {
        let cases = [
            call_with("<?xml version='1.0' standalone='yes'?>", "x", ""),
            call_with("<?xml version = '1.0'\tencoding=\"utf-8\"\r\nstandalone='no' ?>", "x", ""),
            call_with("<?xml version=''?>", "x", ""),
            call_with("<?xml version='1.1'?>", "x", ""),
            call_with("<?xml version='1.0' encoding='US-ASCII'?>", "x", ""),
            call_with("<?xml version='1.0' encoding='utf8'?>", "x", ""),
            call_with("<?xml version='1.0'?><!-- c --><?pi x?>", "x", "<!-- c --><?xml-stylesheet href='a'?>"),
            call_with("", "<string a='1' b=\"&lt;&#65;\"\n c=''>x</string>", ""),
            call_with("", "<string a='>'>x</string>", ""),
            call_with("", "<string xmlns:x='urn:x' x:a='1'/>", ""),
            call_with("", "<string>a<!---->b<!-- - -->c<?pi?>d</string>", ""),
            call_with("", "<array><data><a-b.c_d:e>1</a-b.c_d:e><\u{e9}>2</\u{e9}></data></array>", ""),
        ];
        for body in &cases {
            assert_eq!(read(body), Ok(()), "{body:?}");
        }
    }
}
