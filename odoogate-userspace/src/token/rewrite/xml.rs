//! Surgical edits of XML-RPC request bodies: the password parameter,
//! `kwargs.context` and the field list of a narrowed read, with every other
//! byte kept as the client sent it.
//!
//! The body is read once into a flat list of elements with their byte
//! ranges. Only the layout that XML-RPC clients write is accepted:
//! `<methodCall>` holding `<methodName>` and one `<params>`, whose children
//! are `<param>` elements that each hold one `<value>`. Anything else is an
//! error rather than a guess, and the caller decodes the result again to
//! confirm that the edit changed nothing but what it meant to.

use std::ops::Range;

use quick_xml::Reader;
use quick_xml::escape::{escape, unescape};
use quick_xml::events::Event;

/// Deepest element nesting read. XML-RPC needs three elements per level of
/// arrays or structs, so this is well above the decoders' depth limit.
const MAX_ELEMENT_DEPTH: usize = 512;

/// The context key set when context injection is on.
pub const CONTEXT_KEY: &str = "odoogate_integration";

/// One element and where it sits in the body.
#[derive(Debug)]
struct Element {
    name: String,
    /// From `<` of the start tag to `>` of the end tag.
    outer: Range<usize>,
    /// Between the start and the end tag; empty for `<x/>`.
    inner: Range<usize>,
    self_closing: bool,
    children: Vec<usize>,
    /// True when text other than whitespace (or CDATA, or an entity) sits
    /// directly inside the element.
    has_text: bool,
}

/// The elements of a document, in document order.
struct Tree<'b> {
    body: &'b str,
    elements: Vec<Element>,
    root: usize,
}

/// What to change in an XML-RPC body.
pub struct Edits<'a> {
    /// The credential for `params[2]`, for methods that take a password.
    pub credential: Option<&'a str>,
    /// The integration name for `kwargs.context`, for `execute_kw` only.
    pub integration: Option<&'a str>,
}

/// What [`rewrite`] did.
pub struct Rewritten {
    pub body: Vec<u8>,
    /// True when `params[2]` now holds the credential.
    pub wrote_credential: bool,
    /// True when `kwargs.context` now holds the integration name.
    pub wrote_context: bool,
}

/// Applies `edits` to an XML-RPC body of `service`.
pub fn rewrite(body: &[u8], service: &str, edits: &Edits<'_>) -> Result<Rewritten, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    let tree = Tree::parse(text)?;
    let method = tree.method_name()?;

    let takes_password = matches!(
        (service, method.as_str()),
        ("object", "execute" | "execute_kw") | ("common", "login" | "authenticate")
    );
    let credential = edits.credential.filter(|_| takes_password);
    let integration = edits.integration.filter(|_| service == "object" && method == "execute_kw");
    if credential.is_none() && integration.is_none() {
        return Ok(Rewritten { body: body.to_vec(), wrote_credential: false, wrote_context: false });
    }

    let params = tree.only_child(tree.root, "params")?;
    let values = tree.param_values(params)?;
    let mut splices = Vec::new();
    if let Some(credential) = credential {
        let slot = *values.get(2).ok_or("the call has fewer than 3 parameters, so no password")?;
        tree.plain_string(slot)?;
        splices.push(tree.replace_inner(slot, &format!("<string>{}</string>", escape(credential))));
    }
    if let Some(name) = integration {
        tree.inject_context(params, &values, name, &mut splices)?;
    }

    Ok(Rewritten {
        body: apply(text, splices)?.into_bytes(),
        wrote_credential: credential.is_some(),
        wrote_context: integration.is_some(),
    })
}

/// Sets the field list of an `object.execute_kw` or `object.execute`
/// `read` or `search_read` body to `fields`, as the JSON narrowing does.
///
/// - `execute_kw`: `args[1]` is replaced when the call gives it there, and
///   every `kwargs.fields` member is replaced (or one is added, when `args`
///   has no second item).
/// - `execute`: the method's arguments follow the method name, so the field
///   list is the seventh parameter. It is replaced, or added when the call
///   ends after the ids or domain.
///
/// The caller must decode the result again and check it reads the same
/// records.
pub fn set_fields(body: &[u8], fields: &[String]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_owned())?;
    let tree = Tree::parse(text)?;
    let params = tree.only_child(tree.root, "params")?;
    let values = tree.param_values(params)?;
    let list = fields_array(fields);
    let splices = match tree.method_name()?.as_str() {
        "execute_kw" => tree.fields_in_execute_kw(params, &values, &list)?,
        "execute" => tree.fields_in_execute(params, &values, &list)?,
        _ => return Err("only execute_kw and execute are narrowed".to_owned()),
    };
    Ok(apply(text, splices)?.into_bytes())
}

/// Writes field names as an XML-RPC array of strings, XML-escaped.
fn fields_array(fields: &[String]) -> String {
    let items: String = fields.iter().map(|field| format!("<value><string>{}</string></value>", escape(field.as_str()))).collect();
    format!("<array><data>{items}</data></array>")
}

/// A replacement of a byte range of the body.
struct Splice {
    range: Range<usize>,
    text: String,
}

fn apply(body: &str, mut splices: Vec<Splice>) -> Result<String, String> {
    splices.sort_by_key(|splice| (splice.range.start, splice.range.end));
    let mut out = String::with_capacity(body.len() + splices.iter().map(|s| s.text.len()).sum::<usize>());
    let mut cursor = 0;
    for splice in splices {
        if splice.range.start < cursor {
            return Err("overlapping edits".to_owned());
        }
        out.push_str(&body[cursor..splice.range.start]);
        out.push_str(&splice.text);
        cursor = splice.range.end;
    }
    out.push_str(&body[cursor..]);
    Ok(out)
}

fn context_member(name: &str) -> String {
    format!("<member><name>{CONTEXT_KEY}</name><value><string>{}</string></value></member>", escape(name))
}

// === impl Tree ===

impl<'b> Tree<'b> {
    fn parse(body: &'b str) -> Result<Self, String> {
        let offset = if body.starts_with('\u{feff}') { '\u{feff}'.len_utf8() } else { 0 };
        let mut reader = Reader::from_str(&body[offset..]);
        reader.config_mut().trim_text(false);

        let mut elements: Vec<Element> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut roots = Vec::new();
        loop {
            let before = offset + reader.buffer_position() as usize;
            let event = reader.read_event().map_err(|error| format!("invalid XML: {error}"))?;
            let after = offset + reader.buffer_position() as usize;
            match event {
                Event::Start(ref start) | Event::Empty(ref start) => {
                    let self_closing = matches!(event, Event::Empty(_));
                    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                    let index = elements.len();
                    let inner = if self_closing { after..after } else { after..0 };
                    let outer_end = if self_closing { after } else { 0 };
                    elements.push(Element {
                        name,
                        outer: before..outer_end,
                        inner,
                        self_closing,
                        children: Vec::new(),
                        has_text: false,
                    });
                    match open.last() {
                        Some(&parent) => elements[parent].children.push(index),
                        None => roots.push(index),
                    }
                    if !self_closing {
                        open.push(index);
                        if open.len() > MAX_ELEMENT_DEPTH {
                            return Err(format!("elements nest deeper than {MAX_ELEMENT_DEPTH}"));
                        }
                    }
                }
                Event::End(_) => {
                    let index = open.pop().ok_or("end tag without a start tag")?;
                    elements[index].inner.end = before;
                    elements[index].outer.end = after;
                }
                Event::Text(text) => {
                    if !text.iter().all(u8::is_ascii_whitespace) {
                        mark_text(&mut elements, &open);
                    }
                }
                Event::CData(_) | Event::GeneralRef(_) => mark_text(&mut elements, &open),
                Event::DocType(_) => return Err("XML with a DOCTYPE declaration".to_owned()),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if !open.is_empty() {
            return Err("unclosed element".to_owned());
        }
        let [root] = roots[..] else {
            return Err("expected one root element".to_owned());
        };
        if elements[root].name != "methodCall" {
            return Err("the root element is not <methodCall>".to_owned());
        }
        Ok(Self { body, elements, root })
    }

    fn children_named<'t>(&'t self, parent: usize, name: &'t str) -> impl Iterator<Item = usize> + 't {
        self.elements[parent].children.iter().copied().filter(move |&child| self.elements[child].name == name)
    }

    fn only_child(&self, parent: usize, name: &str) -> Result<usize, String> {
        let mut found = self.children_named(parent, name);
        match (found.next(), found.next()) {
            (Some(child), None) => Ok(child),
            _ => Err(format!("expected exactly one <{name}> in <{}>", self.elements[parent].name)),
        }
    }

    /// Returns the unescaped text of an element that holds text only.
    fn text_of(&self, element: usize) -> Result<String, String> {
        let raw = &self.body[self.elements[element].inner.clone()];
        if !self.elements[element].children.is_empty() || raw.contains("<![CDATA[") {
            return Err(format!("<{}> holds more than plain text", self.elements[element].name));
        }
        unescape(raw).map(|text| text.into_owned()).map_err(|error| format!("invalid XML escape: {error}"))
    }

    /// Returns the last `<methodName>`, the one Python's parser keeps.
    fn method_name(&self) -> Result<String, String> {
        let element = self.children_named(self.root, "methodName").last().ok_or("missing <methodName>")?;
        Ok(self.text_of(element)?.trim().to_owned())
    }

    /// Returns the `<value>` of each `<param>`, in order.
    fn param_values(&self, params: usize) -> Result<Vec<usize>, String> {
        if self.elements[params].has_text {
            return Err("text directly inside <params>".to_owned());
        }
        self.elements[params]
            .children
            .iter()
            .map(|&param| {
                if self.elements[param].name != "param" || self.elements[param].has_text {
                    return Err("<params> holds something other than <param> elements".to_owned());
                }
                self.only_child(param, "value").and_then(|value| {
                    let count = self.elements[param].children.len();
                    if count == 1 { Ok(value) } else { Err("a <param> holds more than one element".to_owned()) }
                })
            })
            .collect()
    }

    /// Returns the single type element inside a `<value>`, or `None` for a
    /// bare string (`<value>text</value>`).
    fn typed_content(&self, value: usize) -> Result<Option<usize>, String> {
        match self.elements[value].children[..] {
            [] => Ok(None),
            [child] if !self.elements[value].has_text => Ok(Some(child)),
            _ => Err("a <value> holds more than one value".to_owned()),
        }
    }

    /// Checks that a `<value>` contains one plain string: bare text, or one
    /// `<string>` or `<name>` element with no element inside. Python may
    /// read other content, such as a `<fault>` with two values inside, as
    /// more than the one value that replacing the content would change.
    fn plain_string(&self, value: usize) -> Result<(), String> {
        let Some(child) = self.typed_content(value)? else {
            return Ok(());
        };
        let element = &self.elements[child];
        let local_name = element.name.rsplit(':').next().unwrap_or_default();
        if matches!(local_name, "string" | "name") && element.children.is_empty() {
            return Ok(());
        }
        Err("the password is not a plain string".to_owned())
    }

    /// Returns the edits that set the field list of an `execute_kw` call.
    fn fields_in_execute_kw(&self, params: usize, values: &[usize], list: &str) -> Result<Vec<Splice>, String> {
        let Some(&args) = values.get(5) else {
            return Err("execute_kw with fewer than 6 parameters".to_owned());
        };
        let items = self.array_items(args)?.ok_or("the positional arguments are not a list")?;
        let mut splices = Vec::new();
        let in_positional = items.len() > 1;
        if in_positional {
            splices.push(self.replace_inner(items[1], list));
        }
        let member = format!("<member><name>fields</name><value>{list}</value></member>");
        match values.get(6) {
            None if !in_positional => {
                splices.push(self.append_inside(params, &format!("<param><value><struct>{member}</struct></value></param>")));
            }
            None => {}
            Some(&kwargs) => match self.struct_in(kwargs)? {
                None if !in_positional => splices.push(self.replace_inner(kwargs, &format!("<struct>{member}</struct>"))),
                None => {}
                Some(keywords) => {
                    let keyword_lists: Vec<usize> =
                        self.members(keywords)?.into_iter().filter(|(key, _)| key == "fields").map(|(_, value)| value).collect();
                    if keyword_lists.is_empty() && !in_positional {
                        splices.push(self.append_inside(keywords, &member));
                    }
                    splices.extend(keyword_lists.into_iter().map(|value| self.replace_inner(value, list)));
                }
            },
        }
        Ok(splices)
    }

    /// Returns the edit that sets the field list of an `execute` call:
    /// `execute(db, uid, password, model, method, ids_or_domain, fields, ...)`.
    fn fields_in_execute(&self, params: usize, values: &[usize], list: &str) -> Result<Vec<Splice>, String> {
        match values.len() {
            0..=5 => Err("execute with fewer than 6 parameters".to_owned()),
            6 => Ok(vec![self.append_inside(params, &format!("<param><value>{list}</value></param>"))]),
            _ => Ok(vec![self.replace_inner(values[6], list)]),
        }
    }

    fn replace_inner(&self, element: usize, text: &str) -> Splice {
        let element = &self.elements[element];
        if element.self_closing {
            return Splice { range: element.outer.clone(), text: format!("<{0}>{text}</{0}>", element.name) };
        }
        Splice { range: element.inner.clone(), text: text.to_owned() }
    }

    fn append_inside(&self, element: usize, text: &str) -> Splice {
        let element = &self.elements[element];
        if element.self_closing {
            return Splice { range: element.outer.clone(), text: format!("<{0}>{text}</{0}>", element.name) };
        }
        Splice { range: element.inner.end..element.inner.end, text: text.to_owned() }
    }

    /// Sets `kwargs.context.odoogate_integration`, creating `kwargs` and
    /// `context` when absent or not structs, and removing any such key the
    /// client sent.
    fn inject_context(&self, params: usize, values: &[usize], name: &str, splices: &mut Vec<Splice>) -> Result<(), String> {
        let member = context_member(name);
        let context_struct = format!("<struct>{member}</struct>");
        let kwargs_struct = format!("<struct><member><name>context</name><value>{context_struct}</value></member></struct>");

        let Some(&kwargs) = values.get(6) else {
            if values.len() < 6 {
                return Err("execute_kw with fewer than 6 parameters".to_owned());
            }
            splices.push(self.append_inside(params, &format!("<param><value>{kwargs_struct}</value></param>")));
            return Ok(());
        };
        let Some(kwargs_struct_element) = self.struct_in(kwargs)? else {
            splices.push(self.replace_inner(kwargs, &kwargs_struct));
            return Ok(());
        };
        let Some(context) = self.members(kwargs_struct_element)?.into_iter().rev().find(|(key, _)| key == "context") else {
            let context_member = format!("<member><name>context</name><value>{context_struct}</value></member>");
            splices.push(self.append_inside(kwargs_struct_element, &context_member));
            return Ok(());
        };
        let Some(context_element) = self.struct_in(context.1)? else {
            splices.push(self.replace_inner(context.1, &context_struct));
            return Ok(());
        };
        for (key, value) in self.members(context_element)? {
            if key == CONTEXT_KEY {
                let member_element = self.parent_member(context_element, value);
                splices.push(Splice { range: self.elements[member_element].outer.clone(), text: String::new() });
            }
        }
        splices.push(self.append_inside(context_element, &member));
        Ok(())
    }

    /// Returns the `<struct>` inside a `<value>`, or `None` when the value
    /// is something else (`<nil/>`, `<boolean>0</boolean>`).
    fn struct_in(&self, value: usize) -> Result<Option<usize>, String> {
        Ok(self.typed_content(value)?.filter(|&content| self.elements[content].name == "struct"))
    }

    /// Returns the `<value>` items of the `<array>` inside a `<value>`, or
    /// `None` when the value is something else.
    fn array_items(&self, value: usize) -> Result<Option<Vec<usize>>, String> {
        let Some(array) = self.typed_content(value)?.filter(|&content| self.elements[content].name == "array") else {
            return Ok(None);
        };
        if self.elements[array].has_text {
            return Err("text directly inside <array>".to_owned());
        }
        let data = self.only_child(array, "data")?;
        if self.elements[array].children.len() != 1 {
            return Err("<array> holds something other than one <data>".to_owned());
        }
        let element = &self.elements[data];
        if element.has_text || element.children.len() != self.children_named(data, "value").count() {
            return Err("<data> holds something other than <value> elements".to_owned());
        }
        Ok(Some(element.children.clone()))
    }

    /// Returns the members of a struct as (name, `<value>` element).
    fn members(&self, structure: usize) -> Result<Vec<(String, usize)>, String> {
        self.elements[structure]
            .children
            .iter()
            .map(|&member| {
                if self.elements[member].name != "member" {
                    return Err("<struct> holds something other than <member> elements".to_owned());
                }
                let name = self.only_child(member, "name")?;
                let value = self.only_child(member, "value")?;
                Ok((self.text_of(name)?, value))
            })
            .collect()
    }

    fn parent_member(&self, structure: usize, value: usize) -> usize {
        self.elements[structure]
            .children
            .iter()
            .copied()
            .find(|&member| self.elements[member].children.contains(&value))
            .expect("a member's value is its child")
    }
}

fn mark_text(elements: &mut [Element], open: &[usize]) {
    if let Some(&parent) = open.last() {
        elements[parent].has_text = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(method: &str, params: &[&str]) -> String {
        let params: String = params.iter().map(|p| format!("<param><value>{p}</value></param>")).collect();
        format!("<?xml version='1.0'?>\n<methodCall><methodName>{method}</methodName><params>{params}</params></methodCall>")
    }

    fn run(body: &str, service: &str, credential: Option<&str>, integration: Option<&str>) -> String {
        let rewritten = rewrite(body.as_bytes(), service, &Edits { credential, integration }).unwrap();
        String::from_utf8(rewritten.body).unwrap()
    }

    const HEAD: [&str; 6] = [
        "<string>db</string>",
        "<int>2</int>",
        "<string>odg_token</string>",
        "<string>res.partner</string>",
        "<string>read</string>",
        "<array><data><int>1</int></data></array>",
    ];

    #[test]
    fn password_is_replaced_and_escaped() {
        let body = call("execute_kw", &HEAD);
        let out = run(&body, "object", Some("k<&>y"), None);
        assert_eq!(out, body.replace("<string>odg_token</string>", "<string>k&lt;&amp;&gt;y</string>"));
    }

    #[test]
    fn bare_and_empty_values_are_replaced() {
        let mut params = HEAD;
        params[2] = "odg_token";
        let out = run(&call("execute", &params), "object", Some("key"), None);
        assert!(out.contains("<value><string>key</string></value>"), "{out}");

        let body = call("login", &["<string>db</string>", "<string>admin</string>"]).replace(
            "</params>",
            "<param><value/></param></params>",
        );
        let out = run(&body, "common", Some("key"), None);
        assert!(out.contains("<param><value><string>key</string></value></param>"), "{out}");
    }

    #[test]
    fn version_call_is_unchanged() {
        let body = call("version", &[]);
        assert_eq!(run(&body, "common", Some("key"), Some("n8n")), body);
    }

    #[test]
    fn context_is_added_without_kwargs() {
        let out = run(&call("execute_kw", &HEAD), "object", None, Some("n8n"));
        let expected = "<param><value><struct><member><name>context</name><value><struct><member>\
                        <name>odoogate_integration</name><value><string>n8n</string></value></member>\
                        </struct></value></member></struct></value></param></params>";
        assert!(out.contains(expected), "{out}");
    }

    #[test]
    fn client_context_key_is_replaced() {
        let mut params = HEAD.to_vec();
        params.push(
            "<struct><member><name>context</name><value><struct>\
             <member><name>lang</name><value><string>en_US</string></value></member>\
             <member><name>odoogate_integration</name><value><string>spoofed</string></value></member>\
             </struct></value></member></struct>",
        );
        let out = run(&call("execute_kw", &params), "object", None, Some("n8n"));
        assert!(!out.contains("spoofed"), "{out}");
        assert!(out.contains(
            "<member><name>lang</name><value><string>en_US</string></value></member>\
             <member><name>odoogate_integration</name><value><string>n8n</string></value></member></struct>"
        ));
    }

    #[test]
    fn nil_kwargs_become_struct() {
        let mut params = HEAD.to_vec();
        params.push("<nil/>");
        let out = run(&call("execute_kw", &params), "object", None, Some("n8n"));
        assert!(out.contains("<param><value><struct><member><name>context</name>"), "{out}");
        assert!(!out.contains("<nil/>"), "{out}");
    }

    #[test]
    fn unusual_layout_is_rejected() {
        let body = call("execute_kw", &HEAD).replace("<params>", "<params><extra/>");
        assert!(rewrite(body.as_bytes(), "object", &Edits { credential: Some("k"), integration: None }).is_err());
        let two = call("execute_kw", &HEAD).replace("<string>odg_token</string>", "<string>a</string><string>b</string>");
        assert!(rewrite(two.as_bytes(), "object", &Edits { credential: Some("k"), integration: None }).is_err());
        let doctype = format!("<!DOCTYPE x>{}", call("execute_kw", &HEAD));
        assert!(rewrite(doctype.as_bytes(), "object", &Edits { credential: Some("k"), integration: None }).is_err());
    }
}
