//! The general event source: quick-xml's reader over the whole body. It
//! reads every document the scanner in [`super::scan`] defers, and returns
//! the error for every malformed one.

use std::borrow::Cow;

use quick_xml::Reader;
use quick_xml::events::{BytesRef, Event};

use super::{DecodeError, Document, Tag, Unmarshaller, bounded, is_xml_char, local_name, well_formed};

/// Feeds `body` to `unmarshaller` event by event.
pub(super) fn unmarshal<'a>(mut unmarshaller: Unmarshaller<'a>, body: &'a str) -> Result<Document<'a>, DecodeError> {
    // The caller strips one byte order mark. quick-xml would skip a second
    // one, but expat reads it as a character before the root element.
    if body.starts_with('\u{feff}') {
        return Err(DecodeError::InvalidXml("second byte order mark".to_owned()));
    }
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(false);

    let mut is_first_event = true;
    loop {
        let event = reader.read_event().map_err(|error| invalid_xml(&error, reader.error_position()))?;
        let is_declaration_allowed = std::mem::replace(&mut is_first_event, false);
        match event {
            Event::Start(start) => {
                well_formed::check_start_tag(&start)?;
                let name = local_name(start.name().into_inner());
                if unmarshaller.start(Tag::of(name), name)? {
                    return Ok(unmarshaller.stopped_at_params());
                }
            }
            Event::Empty(start) => {
                well_formed::check_start_tag(&start)?;
                let name = local_name(start.name().into_inner());
                let tag = Tag::of(name);
                if unmarshaller.start(tag, name)? {
                    return Ok(unmarshaller.stopped_at_params());
                }
                unmarshaller.end(tag)?;
            }
            Event::End(end) => unmarshaller.end(Tag::of(local_name(end.name().into_inner())))?,
            Event::Text(text) => {
                well_formed::check_text(&text)?;
                let content = text.xml10_content().map_err(|_| DecodeError::NotUtf8)?;
                unmarshaller.characters(content)?;
            }
            Event::CData(cdata) => {
                let content = cdata.xml10_content().map_err(|_| DecodeError::NotUtf8)?;
                unmarshaller.markup_characters(content)?;
            }
            Event::GeneralRef(reference) => {
                let resolved = resolve_reference(&reference)?;
                unmarshaller.markup_characters(Cow::Owned(resolved.to_string()))?;
            }
            Event::DocType(_) => return Err(DecodeError::XmlDoctype),
            Event::Decl(declaration) => {
                if !is_declaration_allowed {
                    return Err(DecodeError::InvalidXml("XML declaration not at the start of the document".to_owned()));
                }
                well_formed::check_declaration(&declaration)?;
                check_declared_encoding(&declaration, body)?;
            }
            Event::Comment(comment) => well_formed::check_comment(&comment)?,
            Event::PI(instruction) => well_formed::check_processing_instruction(&instruction)?,
            Event::Eof => break,
        }
    }
    unmarshaller.finish()
}

/// Resolves a character or predefined entity reference. Any other entity
/// is undefined without a DTD, which expat reports as an error.
fn resolve_reference(reference: &BytesRef<'_>) -> Result<char, DecodeError> {
    if reference.is_char_ref() {
        let resolved =
            reference.resolve_char_ref().ok().flatten().ok_or_else(|| DecodeError::InvalidXml("invalid character reference".to_owned()))?;
        if !is_xml_char(resolved) {
            return Err(DecodeError::InvalidXml("reference to a character XML does not allow".to_owned()));
        }
        return Ok(resolved);
    }
    match &**reference {
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"amp" => Ok('&'),
        b"apos" => Ok('\''),
        b"quot" => Ok('"'),
        _ => Err(DecodeError::InvalidXml("undefined entity reference".to_owned())),
    }
}

/// Expat reads the declared encoding; odoogate reads UTF-8 only, so a
/// document that declares anything else could mean another call to Odoo.
///
/// Under Python 3.11, expat 2.5 rejects every non-ASCII byte in a document
/// declared as `us-ascii`, `ascii` or `utf8`, because pyexpat decodes the
/// encodings that expat does not know itself one byte at a time.
fn check_declared_encoding(declaration: &quick_xml::events::BytesDecl<'_>, body: &str) -> Result<(), DecodeError> {
    let Some(encoding) = declaration.encoding() else {
        return Ok(());
    };
    let encoding = encoding.map_err(|_| DecodeError::InvalidXml("invalid XML declaration".to_owned()))?;
    let name = String::from_utf8_lossy(&encoding);
    if name.eq_ignore_ascii_case("utf-8") {
        return Ok(());
    }
    let is_ascii_only = ["utf8", "us-ascii", "ascii"].iter().any(|known| name.eq_ignore_ascii_case(known));
    if is_ascii_only {
        if !body.is_ascii() {
            return Err(DecodeError::InvalidXml(format!("non-ASCII text in a document declared as {}", bounded(&name))));
        }
        return Ok(());
    }
    Err(DecodeError::UnsupportedEncoding(bounded(&name)))
}

/// Describes a quick-xml error by its kind and byte offset, never by the
/// document's content.
fn invalid_xml(error: &quick_xml::Error, position: u64) -> DecodeError {
    use quick_xml::errors::{Error, IllFormedError, SyntaxError};
    let kind = match error {
        Error::Syntax(SyntaxError::UnclosedCData) => "unclosed CDATA section",
        Error::Syntax(SyntaxError::UnclosedTag) => "unclosed tag",
        Error::Syntax(_) => "syntax error",
        Error::IllFormed(IllFormedError::MissingEndTag(_)) => "missing end tag",
        Error::IllFormed(IllFormedError::UnmatchedEndTag(_)) => "unmatched end tag",
        Error::IllFormed(IllFormedError::MismatchedEndTag { .. }) => "mismatched end tag",
        Error::IllFormed(_) => "ill-formed document",
        Error::Escape(_) => "invalid reference",
        Error::Encoding(_) => "invalid encoding",
        _ => "unreadable document",
    };
    DecodeError::InvalidXml(format!("{kind} at byte {position}"))
}
