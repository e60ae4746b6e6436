//! One-pass decoders for the JSON surfaces (`/jsonrpc`, the web client's
//! `call_kw`, `call_button` and `authenticate`, and JSON-2 bodies).
//!
//! They read the body with serde visitors over [`parser::Parser`], which
//! borrows the text, and keep only what a decision needs: service, method,
//! database, uid, credential, model, record ids, field names and context.
//! Everything else is checked as serde_json checks it when it builds a
//! `serde_json::Value`, and dropped.
//!
//! Each decoder returns `None` when it cannot decide on the body alone:
//! invalid JSON, a wrong shape, or a key repeated where the stream cannot
//! replay Python's "last value wins" rule. The caller then decodes the body
//! with the value-tree decoder, which returns the exact error or call.
//! Those bodies are rare, so they cost the tree's speed and nothing else.

mod extract;
mod parser;
mod read;

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use extract::{Extraction, IdsMode, ValueKind};
use parser::Parser;
use read::{Key, KeyStack, Skip, TextOrJson, TextOrJsonSeed, TextSeed, ignore_scalars, skip_rest_of_map, skip_rest_of_seq};

use super::call::{Call, CallKind, Credential, CredentialSlot, Protocol};
use super::service;
use super::web::Route;
use crate::secret::Secret;

/// Runs `seed` over the whole body, which must hold one JSON value nested
/// no deeper than `max_depth`.
fn read_body<'de, S: DeserializeSeed<'de>>(body: &'de [u8], max_depth: usize, seed: S) -> Option<S::Value> {
    let mut parser = Parser::new(body, max_depth).ok()?;
    let value = seed.deserialize(&mut parser).ok()?;
    parser.end().ok()?;
    Some(value)
}

fn text_of<'a>(value: Option<&'a TextOrJson<'_>>) -> Option<&'a str> {
    value.and_then(TextOrJson::as_text)
}

// === /jsonrpc ===

/// Decodes a `/jsonrpc` body into `call`, as `jsonrpc::decode_request`
/// does. `call` must be as [`Call::new`] returns it. Returns false, and
/// leaves `call` unchanged, when the tree decoder must read the body.
pub(crate) fn decode_jsonrpc(body: &[u8], max_depth: usize, call: &mut Call) -> bool {
    read_jsonrpc(body, max_depth, call).is_some()
}

fn read_jsonrpc(body: &[u8], max_depth: usize, call: &mut Call) -> Option<()> {
    let mut reading = JsonRpcReading { fixed: None, params: None, params_keys: 0 };
    read_body(body, max_depth, Envelope(&mut reading))?;
    let params = reading.params.as_ref()?;
    let service = params.service.clone()?;
    let method = params.method.clone()?;
    if !params.args_read_for(&service, &method) {
        // `args` came before the final `service` or `method`: read it again
        // knowing both.
        reading = JsonRpcReading { fixed: Some((service.clone(), method.clone())), params: None, params_keys: 0 };
        read_body(body, max_depth, Envelope(&mut reading))?;
        if !reading.params.as_ref()?.args_read_for(&service, &method) {
            return None;
        }
    }
    let sent_once = reading.params_keys == 1 && reading.params.as_ref()?.args_keys == 1;
    let args = reading.params.as_mut()?.args.as_mut()?;
    args.take_call(&service, &method, call)?;
    // Where the password parameter is, when the call has one, for the token
    // swap to write over: only a string without escapes is borrowed whole.
    // With `params` or `args` sent twice, the body keeps a value that Python
    // ignores and the full rewrite drops, so the swap must not keep it.
    if let (Some(credential), Some(TextOrJson::Text(Cow::Borrowed(password)))) = (call.credential.as_mut(), args.head(2))
        && sent_once
        && credential.slot == CredentialSlot::Password
        && credential.secret.expose() == *password
    {
        credential.span = span_in(body, password);
    }
    Some(())
}

/// Returns where `text`, a slice borrowed from `body`, lies in it.
fn span_in(body: &[u8], text: &str) -> Option<std::ops::Range<usize>> {
    let start = (text.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(text.len())?;
    (end <= body.len()).then_some(start..end)
}

/// Reads one `params` value into the decoder's state, in place, so that
/// serde returns no large value through its calls. A later `params` key
/// replaces what an earlier one left, as Python's `json.loads` keeps the
/// last value.
trait ReadParams<'de> {
    fn read_params<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<(), A::Error>;
}

/// Reads the top-level object, passing each `params` value to the reader.
struct Envelope<'r, R>(&'r mut R);

impl<'de, R: ReadParams<'de>> DeserializeSeed<'de> for Envelope<'_, R> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, R: ReadParams<'de>> Visitor<'de> for Envelope<'_, R> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON-RPC object")
    }

    // An envelope that is no object leaves the reader as it was: with no
    // params.
    ignore_scalars!(());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_rest_of_seq(&mut seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "params" {
                self.0.read_params(&mut map)?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

/// The state of one reading of a `/jsonrpc` body.
struct JsonRpcReading<'de> {
    /// The service and method, when a first reading found them after `args`.
    fixed: Option<(Cow<'de, str>, Cow<'de, str>)>,
    /// The reading of the last `params`, or `None` when it was not an object.
    params: Option<JsonRpcParams<'de>>,
    /// `params` keys seen.
    params_keys: usize,
}

impl<'de> ReadParams<'de> for JsonRpcReading<'de> {
    fn read_params<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<(), A::Error> {
        self.params = None;
        self.params_keys += 1;
        map.next_value_seed(JsonRpcParamsSeed { fixed: self.fixed.as_ref(), params: &mut self.params })
    }
}

/// The parts of a `/jsonrpc` `params` object that a call needs. `service`
/// and `method` are `None` unless their last value was a string.
#[derive(Default)]
struct JsonRpcParams<'de> {
    service: Option<Cow<'de, str>>,
    method: Option<Cow<'de, str>>,
    args: Option<ServiceArgs<'de>>,
    /// The service and method the last `args` was read for, or `None`
    /// when they were not known yet.
    args_read_with: Option<(Cow<'de, str>, Cow<'de, str>)>,
    /// `args` keys seen.
    args_keys: usize,
}

impl JsonRpcParams<'_> {
    /// Tells whether the last `args` was read for `service` and `method`.
    fn args_read_for(&self, service: &str, method: &str) -> bool {
        self.args_read_with.as_ref().is_some_and(|(read_service, read_method)| read_service == service && read_method == method)
    }
}

/// Reads `params` into `params` when it is an object; `fixed` gives the
/// service and method when a first reading found them after `args`.
struct JsonRpcParamsSeed<'r, 'de> {
    fixed: Option<&'r (Cow<'de, str>, Cow<'de, str>)>,
    params: &'r mut Option<JsonRpcParams<'de>>,
}

impl<'de> DeserializeSeed<'de> for JsonRpcParamsSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonRpcParamsSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a params object")
    }

    ignore_scalars!(());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_rest_of_seq(&mut seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let params = self.params.insert(JsonRpcParams::default());
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "service" => params.service = map.next_value_seed(TextSeed)?,
                "method" => params.method = map.next_value_seed(TextSeed)?,
                "args" => {
                    params.args_keys += 1;
                    let known = || Some((params.service.clone()?, params.method.clone()?));
                    let read_with = self.fixed.cloned().or_else(known);
                    match read_with {
                        Some((service, method)) => {
                            let args = params.args.insert(ServiceArgs::default());
                            let is_list = map.next_value_seed(ServiceArgsSeed { service: &service, method: &method, args })?;
                            if !is_list {
                                params.args = None;
                            }
                            params.args_read_with = Some((service, method));
                        }
                        None => {
                            map.next_value::<Skip>()?;
                            params.args = None;
                            params.args_read_with = None;
                        }
                    }
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }
}

/// The positional parameters of a service call: the first ones whole, the
/// model method's arguments as an extraction.
#[derive(Default)]
struct ServiceArgs<'de> {
    /// `db, uid, password, model, method`, where the call has them.
    heads: [Option<TextOrJson<'de>>; HEAD_PARAMS],
    /// Parameters seen in all.
    count: usize,
    extraction: Option<Extraction<'de>>,
    /// `execute_kw`'s argument list was not a list.
    args_not_a_list: bool,
    kwargs: Option<ValueKind>,
}

/// Parameters read whole: `db, uid, password, model, method`.
const HEAD_PARAMS: usize = 5;

// === impl ServiceArgs ===

impl<'de> ServiceArgs<'de> {
    fn head(&self, index: usize) -> Option<&TextOrJson<'de>> {
        self.heads.get(index)?.as_ref()
    }

    /// Builds the call into `call` as `service::decode_service_call` does.
    /// It finishes the extraction, so it runs once. Returns `None`, and
    /// leaves `call` unchanged, when the tree decoder must read the body.
    fn take_call(&mut self, service: &str, method: &str, call: &mut Call) -> Option<()> {
        if service != "object" {
            // `common` and `db` read only the first three parameters, as text.
            let text = |index: usize| text_of(self.head(index));
            return service::decode_text_service_call_into(Protocol::JsonRpc, service, method, text, call).then_some(());
        }
        match method {
            "execute_kw" if self.count <= 5 || self.args_not_a_list => return None,
            "execute_kw" | "execute" => {}
            _ => return None,
        }
        // Field access, not `head`, so that `self.extraction` stays free to borrow.
        let [db, uid, password_head, model, model_method] = &self.heads;
        let model = text_of(model.as_ref())?;
        let model_method = text_of(model_method.as_ref())?;
        if self.kwargs == Some(ValueKind::Other) {
            return None;
        }

        call.protocol = Protocol::JsonRpc;
        call.kind = CallKind::Model;
        call.service = Some("object".to_owned());
        call.method = Some(model_method.to_owned());
        call.db = text_of(db.as_ref()).map(str::to_owned);
        call.uid = uid.as_ref().and_then(uid_of);
        call.credential = password(text_of(password_head.as_ref()));
        call.model = Some(model.to_owned());
        match &mut self.extraction {
            Some(extraction) => extraction.finish(call),
            None => Extraction::for_model_call(Cow::Borrowed(model_method)).finish(call),
        }
        Some(())
    }
}

/// Reads a uid as `service::uid_of` does.
fn uid_of(value: &TextOrJson<'_>) -> Option<i64> {
    match value {
        TextOrJson::Text(text) => service::uid_of_text(text),
        TextOrJson::Json(json) => service::uid_of(json),
    }
}

fn password(value: Option<&str>) -> Option<Credential> {
    Some(Credential::new(CredentialSlot::Password, Secret::new(value?)))
}

/// Reads the `args` list of a service call into `args`. Returns false when
/// the value is not a list.
struct ServiceArgsSeed<'a, 'de> {
    service: &'a str,
    method: &'a str,
    args: &'a mut ServiceArgs<'de>,
}

impl<'de> DeserializeSeed<'de> for ServiceArgsSeed<'_, 'de> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ServiceArgsSeed<'_, 'de> {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a parameter list")
    }

    ignore_scalars!(false);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        skip_rest_of_map(&mut map)?;
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut keys = KeyStack::default();
        let args = self.args;
        let object = self.service == "object";
        loop {
            let index = args.count;
            let more = if let Some(head) = args.heads.get_mut(index) {
                seq.next_element_seed(TextOrJsonSeed)?.map(|value| *head = Some(value)).is_some()
            } else if object && matches!(self.method, "execute_kw" | "execute") {
                let extraction = match args.extraction {
                    Some(ref mut extraction) => extraction,
                    None => {
                        let Some(model_method) = args.head(4).and_then(TextOrJson::text) else {
                            skip_rest_of_seq(&mut seq)?;
                            return Ok(true);
                        };
                        args.extraction.insert(Extraction::for_model_call(model_method))
                    }
                };
                match (self.method, index) {
                    ("execute_kw", 5) => match seq.next_element_seed(ArgsListSeed { extraction, keys: &mut keys })? {
                        Some(is_list) => {
                            args.args_not_a_list = !is_list;
                            true
                        }
                        None => false,
                    },
                    ("execute_kw", 6) => match seq.next_element_seed(extraction.named_seed(&mut keys))? {
                        Some(kind) => {
                            args.kwargs = Some(kind);
                            true
                        }
                        None => false,
                    },
                    ("execute_kw", _) => seq.next_element::<Skip>()?.is_some(),
                    _ => seq.next_element_seed(extraction.positional_seed(&mut keys))?.is_some(),
                }
            } else {
                seq.next_element::<Skip>()?.is_some()
            };
            if !more {
                return Ok(true);
            }
            args.count += 1;
        }
    }
}

/// Reads a list of positional model arguments. Returns false when the
/// value is not a list.
struct ArgsListSeed<'e, 'k, 'de> {
    extraction: &'e mut Extraction<'de>,
    keys: &'k mut KeyStack<'de>,
}

impl<'de> DeserializeSeed<'de> for ArgsListSeed<'_, '_, 'de> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ArgsListSeed<'_, '_, 'de> {
    type Value = bool;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("an argument list")
    }

    ignore_scalars!(false);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        skip_rest_of_map(&mut map)?;
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element_seed(self.extraction.positional_seed(&mut *self.keys))?.is_some() {}
        Ok(true)
    }
}

// === web routes ===

/// Decodes `/web/session/authenticate` into `call`, as
/// `web::decode_authenticate` does. `call` must be as [`Call::new`]
/// returns it. Returns false, and leaves `call` unchanged, when the tree
/// decoder must read the body.
pub(crate) fn decode_web_authenticate(body: &[u8], max_depth: usize, call: &mut Call) -> bool {
    let mut params = None;
    if read_body(body, max_depth, Envelope(&mut params)).is_none() {
        return false;
    }
    let Some(params): Option<AuthenticateParams> = params else {
        return false;
    };
    call.protocol = Protocol::Web;
    call.kind = CallKind::Auth;
    call.method = Some("authenticate".to_owned());
    call.db = params.db.map(Cow::into_owned);
    call.login = params.login.map(Cow::into_owned);
    call.credential = password(params.password.as_deref());
    true
}

/// The last `db`, `login` and `password` of the params, each `None` unless
/// it was a string.
#[derive(Default)]
struct AuthenticateParams<'de> {
    db: Option<Cow<'de, str>>,
    login: Option<Cow<'de, str>>,
    password: Option<Cow<'de, str>>,
}

/// `None` when the last `params` was no object.
impl<'de> ReadParams<'de> for Option<AuthenticateParams<'de>> {
    fn read_params<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<(), A::Error> {
        *self = None;
        map.next_value_seed(AuthenticateSeed { params: self })
    }
}

/// Reads `params` into `params` when it is an object.
struct AuthenticateSeed<'r, 'de> {
    params: &'r mut Option<AuthenticateParams<'de>>,
}

impl<'de> DeserializeSeed<'de> for AuthenticateSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AuthenticateSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a params object")
    }

    ignore_scalars!(());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_rest_of_seq(&mut seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let params = self.params.insert(AuthenticateParams::default());
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let slot = match key.as_ref() {
                "db" => &mut params.db,
                "login" => &mut params.login,
                "password" => &mut params.password,
                _ => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            *slot = map.next_value_seed(TextSeed)?;
        }
        Ok(())
    }
}

/// Decodes `call_kw` or `call_button` into `call`, as `web::decode_call`
/// does. `call` must be as [`Call::new`] returns it. Returns false, and
/// leaves `call` unchanged, when the tree decoder must read the body.
pub(crate) fn decode_web_call(route: Route, body: &[u8], max_depth: usize, call: &mut Call) -> bool {
    read_web_call(route, body, max_depth, call).is_some()
}

fn read_web_call(route: Route, body: &[u8], max_depth: usize, call: &mut Call) -> Option<()> {
    let mut reading = WebCallReading { route, fixed: None, params: None };
    read_body(body, max_depth, Envelope(&mut reading))?;
    let params = reading.params.as_ref()?;
    let method = params.method.clone()?;
    if params.stale || params.extraction.as_ref().is_some_and(|extraction| extraction.method() != method) {
        reading = WebCallReading { route, fixed: Some(method.clone()), params: None };
        read_body(body, max_depth, Envelope(&mut reading))?;
        if reading.params.as_ref()?.stale {
            return None;
        }
    }
    let params = reading.params.as_mut()?;
    let model = params.model.as_deref()?;
    if params.args_is_list != Some(true) || params.kwargs != Some(ValueKind::Map) {
        return None;
    }
    let extraction = params.extraction.as_mut()?;

    call.protocol = Protocol::Web;
    call.kind = CallKind::Model;
    call.model = Some(model.to_owned());
    call.method = Some(method.into_owned());
    extraction.finish(call);
    Some(())
}

/// The parts of `call_kw` and `call_button` params that a call needs.
/// `model` and `method` are `None` unless their last value was a string.
#[derive(Default)]
struct WebCallParams<'de> {
    model: Option<Cow<'de, str>>,
    method: Option<Cow<'de, str>>,
    extraction: Option<Extraction<'de>>,
    /// Whether the last `args` was a list.
    args_is_list: Option<bool>,
    kwargs: Option<ValueKind>,
    /// `args` or `kwargs` came before the method was known.
    stale: bool,
}

/// The state of one reading of a `call_kw` or `call_button` body.
struct WebCallReading<'de> {
    route: Route,
    /// The method, when a first reading found it after `args` or `kwargs`.
    fixed: Option<Cow<'de, str>>,
    /// The reading of the last `params`, or `None` when it was not an object.
    params: Option<WebCallParams<'de>>,
}

impl<'de> ReadParams<'de> for WebCallReading<'de> {
    fn read_params<A: MapAccess<'de>>(&mut self, map: &mut A) -> Result<(), A::Error> {
        self.params = None;
        map.next_value_seed(WebCallSeed { route: self.route, fixed: self.fixed.as_ref(), params: &mut self.params })
    }
}

/// Returns the extraction of `params` for `method`, replacing one made for
/// another method (and then marking the reading stale).
fn web_extraction<'p, 'de>(route: Route, params: &'p mut WebCallParams<'de>, method: Cow<'de, str>) -> &'p mut Extraction<'de> {
    if params.extraction.as_ref().is_some_and(|extraction| extraction.method() != method) {
        params.stale = true;
        params.extraction = None;
    }
    params.extraction.get_or_insert_with(|| match route {
        Route::CallButton => Extraction::new(method, IdsMode::First),
        _ => Extraction::for_model_call(method),
    })
}

/// Reads `params` into `params` when it is an object.
struct WebCallSeed<'r, 'de> {
    route: Route,
    fixed: Option<&'r Cow<'de, str>>,
    params: &'r mut Option<WebCallParams<'de>>,
}

impl<'de> DeserializeSeed<'de> for WebCallSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WebCallSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a params object")
    }

    ignore_scalars!(());

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        skip_rest_of_seq(&mut seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = KeyStack::default();
        let params = self.params.insert(WebCallParams::default());
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let key = key.as_ref();
            match key {
                "model" => params.model = map.next_value_seed(TextSeed)?,
                "method" => params.method = map.next_value_seed(TextSeed)?,
                "args" | "kwargs" => {
                    let method = self.fixed.cloned().or_else(|| params.method.clone());
                    let Some(method) = method else {
                        map.next_value::<Skip>()?;
                        params.stale = true;
                        continue;
                    };
                    let extraction = web_extraction(self.route, params, method);
                    if key == "args" {
                        extraction.reset_positional();
                        params.args_is_list = Some(map.next_value_seed(ArgsListSeed { extraction, keys: &mut keys })?);
                    } else {
                        extraction.reset_named();
                        params.kwargs = Some(map.next_value_seed(extraction.named_seed(&mut keys))?);
                    }
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(())
    }
}

// === JSON-2 ===

/// Starts the extraction of a JSON-2 body's named arguments for `method`.
pub(crate) fn json2_extraction(method: &str) -> Extraction<'_> {
    Extraction::new(Cow::Borrowed(method), IdsMode::Named)
}

/// Reads a JSON-2 body into `extraction`, which [`json2_extraction`]
/// started. Returns false when the tree decoder must read the body.
pub(crate) fn read_json2_body(extraction: &mut Extraction<'_>, body: &[u8], max_depth: usize) -> bool {
    let mut keys = KeyStack::default();
    read_body(body, max_depth, extraction.named_seed(&mut keys)) == Some(ValueKind::Map)
}

#[cfg(test)]
mod parser_tests;
#[cfg(test)]
mod tests;
