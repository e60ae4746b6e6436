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

/// Decodes a `/jsonrpc` body, as `jsonrpc::decode_request` does.
pub(crate) fn decode_jsonrpc(body: &[u8], max_depth: usize) -> Option<Call> {
    let mut params = read_body(body, max_depth, Envelope(JsonRpcParamsSeed { fixed: None }))??;
    let service = params.service.clone()?;
    let method = params.method.clone()?;
    if !params.args_read_for(&service, &method) {
        // `args` came before the final `service` or `method`: read it again
        // knowing both.
        let fixed = Some((service.clone(), method.clone()));
        params = read_body(body, max_depth, Envelope(JsonRpcParamsSeed { fixed }))??;
        if !params.args_read_for(&service, &method) {
            return None;
        }
    }
    params.args?.into_call(&service, &method)
}

/// Reads the top-level object and returns what its last `params` gave.
struct Envelope<S>(S);

impl<'de, T, S: DeserializeSeed<'de, Value = Option<T>> + Clone> DeserializeSeed<'de> for Envelope<S> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T, S: DeserializeSeed<'de, Value = Option<T>> + Clone> Visitor<'de> for Envelope<S> {
    type Value = Option<T>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON-RPC object")
    }

    ignore_scalars!(None);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        skip_rest_of_seq(&mut seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "params" {
                params = Some(map.next_value_seed(self.0.clone())?);
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(params.flatten())
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
}

impl JsonRpcParams<'_> {
    /// Tells whether the last `args` was read for `service` and `method`.
    fn args_read_for(&self, service: &str, method: &str) -> bool {
        self.args_read_with.as_ref().is_some_and(|(read_service, read_method)| read_service == service && read_method == method)
    }
}

/// Reads `params`; `fixed` gives the service and method when a first pass
/// found them after `args`.
#[derive(Clone)]
struct JsonRpcParamsSeed<'de> {
    fixed: Option<(Cow<'de, str>, Cow<'de, str>)>,
}

impl<'de> DeserializeSeed<'de> for JsonRpcParamsSeed<'de> {
    type Value = Option<JsonRpcParams<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonRpcParamsSeed<'de> {
    type Value = Option<JsonRpcParams<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a params object")
    }

    ignore_scalars!(None);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        skip_rest_of_seq(&mut seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = JsonRpcParams::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "service" => params.service = map.next_value_seed(TextSeed)?,
                "method" => params.method = map.next_value_seed(TextSeed)?,
                "args" => {
                    let known = || Some((params.service.clone()?, params.method.clone()?));
                    let read_with = self.fixed.clone().or_else(known);
                    match read_with {
                        Some((service, method)) => {
                            params.args = map.next_value_seed(ServiceArgsSeed { service: &service, method: &method })?;
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
        Ok(Some(params))
    }
}

/// The positional parameters of a service call: the first ones whole, the
/// model method's arguments as an extraction.
struct ServiceArgs<'de> {
    heads: Vec<TextOrJson<'de>>,
    /// Parameters seen in all.
    count: usize,
    /// Boxed because the params that contain it are returned by value
    /// through serde's calls, and copying the extraction each time cost
    /// more than one allocation.
    extraction: Option<Box<Extraction<'de>>>,
    /// `execute_kw`'s argument list was not a list.
    args_not_a_list: bool,
    kwargs: Option<ValueKind>,
}

/// Parameters read whole: `db, uid, password, model, method`.
const HEAD_PARAMS: usize = 5;

// === impl ServiceArgs ===

impl ServiceArgs<'_> {
    /// Builds the call as `service::decode_service_call` does.
    fn into_call(self, service: &str, method: &str) -> Option<Call> {
        if service != "object" {
            // `common` and `db` read only the first three parameters, as text.
            let text = |index: usize| text_of(self.heads.get(index));
            return service::decode_text_service_call(Protocol::JsonRpc, service, method, text);
        }
        match method {
            "execute_kw" if self.count <= 5 || self.args_not_a_list => return None,
            "execute_kw" | "execute" => {}
            _ => return None,
        }
        let model = text_of(self.heads.get(3))?;
        let model_method = self.heads.get(4).and_then(TextOrJson::text)?;
        if self.kwargs == Some(ValueKind::Other) {
            return None;
        }

        let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
        call.service = Some("object".to_owned());
        call.method = Some(model_method.as_ref().to_owned());
        call.db = text_of(self.heads.first()).map(str::to_owned);
        call.uid = self.heads.get(1).and_then(uid_of);
        call.credential = password(text_of(self.heads.get(2)));
        call.model = Some(model.to_owned());
        match self.extraction {
            Some(extraction) => extraction.finish(&mut call),
            None => Extraction::for_model_call(model_method).finish(&mut call),
        }
        Some(call)
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

/// Reads the `args` list of a service call.
struct ServiceArgsSeed<'a> {
    service: &'a str,
    method: &'a str,
}

impl<'de> DeserializeSeed<'de> for ServiceArgsSeed<'_> {
    type Value = Option<ServiceArgs<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ServiceArgsSeed<'_> {
    type Value = Option<ServiceArgs<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a parameter list")
    }

    ignore_scalars!(None);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        skip_rest_of_map(&mut map)?;
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut keys = KeyStack::default();
        let mut args = ServiceArgs { heads: Vec::with_capacity(HEAD_PARAMS), count: 0, extraction: None, args_not_a_list: false, kwargs: None };
        let object = self.service == "object";
        loop {
            let index = args.count;
            let more = if index < HEAD_PARAMS {
                seq.next_element_seed(TextOrJsonSeed)?.map(|head| args.heads.push(head)).is_some()
            } else if object && matches!(self.method, "execute_kw" | "execute") {
                let extraction = match args.extraction {
                    Some(ref mut extraction) => extraction,
                    None => {
                        let Some(model_method) = args.heads.get(4).and_then(TextOrJson::text) else {
                            skip_rest_of_seq(&mut seq)?;
                            return Ok(Some(args));
                        };
                        args.extraction.insert(Box::new(Extraction::for_model_call(model_method)))
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
                return Ok(Some(args));
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

/// Decodes `/web/session/authenticate`, as `web::decode_authenticate` does.
pub(crate) fn decode_web_authenticate(body: &[u8], max_depth: usize) -> Option<Call> {
    let params = read_body(body, max_depth, Envelope(AuthenticateSeed))??;
    let mut call = Call::new(Protocol::Web, CallKind::Auth);
    call.method = Some("authenticate".to_owned());
    call.db = params.db.map(Cow::into_owned);
    call.login = params.login.map(Cow::into_owned);
    call.credential = password(params.password.as_deref());
    Some(call)
}

/// The last `db`, `login` and `password` of the params, each `None` unless
/// it was a string.
#[derive(Default)]
struct AuthenticateParams<'de> {
    db: Option<Cow<'de, str>>,
    login: Option<Cow<'de, str>>,
    password: Option<Cow<'de, str>>,
}

#[derive(Clone)]
struct AuthenticateSeed;

impl<'de> DeserializeSeed<'de> for AuthenticateSeed {
    type Value = Option<AuthenticateParams<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AuthenticateSeed {
    type Value = Option<AuthenticateParams<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a params object")
    }

    ignore_scalars!(None);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        skip_rest_of_seq(&mut seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut params = AuthenticateParams::default();
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
        Ok(Some(params))
    }
}

/// Decodes `call_kw` or `call_button`, as `web::decode_call` does.
pub(crate) fn decode_web_call(route: Route, body: &[u8], max_depth: usize) -> Option<Call> {
    let mut params = read_body(body, max_depth, Envelope(WebCallSeed { route, fixed: None }))??;
    let method = params.method.clone()?;
    if params.stale || params.extraction.as_ref().is_some_and(|extraction| extraction.method() != method) {
        params = read_body(body, max_depth, Envelope(WebCallSeed { route, fixed: Some(method.clone()) }))??;
        if params.stale {
            return None;
        }
    }
    let model = params.model.as_deref()?;
    if params.args_is_list != Some(true) || params.kwargs != Some(ValueKind::Map) {
        return None;
    }
    let extraction = params.extraction?;

    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.model = Some(model.to_owned());
    call.method = Some(method.into_owned());
    extraction.finish(&mut call);
    Some(call)
}

/// The parts of `call_kw` and `call_button` params that a call needs.
/// `model` and `method` are `None` unless their last value was a string.
#[derive(Default)]
struct WebCallParams<'de> {
    model: Option<Cow<'de, str>>,
    method: Option<Cow<'de, str>>,
    /// Boxed for the reason given at [`ServiceArgs`].
    extraction: Option<Box<Extraction<'de>>>,
    /// Whether the last `args` was a list.
    args_is_list: Option<bool>,
    kwargs: Option<ValueKind>,
    /// `args` or `kwargs` came before the method was known.
    stale: bool,
}

#[derive(Clone)]
struct WebCallSeed<'de> {
    route: Route,
    fixed: Option<Cow<'de, str>>,
}

impl<'de> WebCallSeed<'de> {
    /// Returns the extraction for `method`, replacing one made for another
    /// method (and then marking the reading stale).
    fn extraction<'p>(&self, params: &'p mut WebCallParams<'de>, method: Cow<'de, str>) -> &'p mut Extraction<'de> {
        if params.extraction.as_ref().is_some_and(|extraction| extraction.method() != method) {
            params.stale = true;
            params.extraction = None;
        }
        params.extraction.get_or_insert_with(|| {
            Box::new(match self.route {
                Route::CallButton => Extraction::new(method, IdsMode::First),
                _ => Extraction::for_model_call(method),
            })
        })
    }
}

impl<'de> DeserializeSeed<'de> for WebCallSeed<'de> {
    type Value = Option<WebCallParams<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WebCallSeed<'de> {
    type Value = Option<WebCallParams<'de>>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a params object")
    }

    ignore_scalars!(None);

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        skip_rest_of_seq(&mut seq)?;
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut keys = KeyStack::default();
        let mut params = WebCallParams::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let key = key.as_ref();
            match key {
                "model" => params.model = map.next_value_seed(TextSeed)?,
                "method" => params.method = map.next_value_seed(TextSeed)?,
                "args" | "kwargs" => {
                    let method = self.fixed.clone().or_else(|| params.method.clone());
                    let Some(method) = method else {
                        map.next_value::<Skip>()?;
                        params.stale = true;
                        continue;
                    };
                    let extraction = self.extraction(&mut params, method);
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
        Ok(Some(params))
    }
}

// === JSON-2 ===

/// Reads a JSON-2 body for `method`. Returns the extraction of its named
/// arguments, or `None` when the tree decoder must read the body.
pub(crate) fn read_json2_body<'de>(method: &'de str, body: &'de [u8], max_depth: usize) -> Option<Extraction<'de>> {
    let mut extraction = Extraction::new(Cow::Borrowed(method), IdsMode::Named);
    let mut keys = KeyStack::default();
    let kind = read_body(body, max_depth, extraction.named_seed(&mut keys))?;
    (kind == ValueKind::Map).then_some(extraction)
}

#[cfg(test)]
mod parser_tests;
#[cfg(test)]
mod tests;
