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

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use extract::{Extraction, IdsMode, ValueKind};
use parser::Parser;
use read::{JsonSeed, Key, KeyStack, Skip, ignore_scalars, skip_rest_of_map, skip_rest_of_seq};

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

fn text_of(value: Option<&Json>) -> Option<&str> {
    value.and_then(Json::as_str)
}

// === /jsonrpc ===

/// Decodes a `/jsonrpc` body, as `jsonrpc::decode_request` does.
pub(crate) fn decode_jsonrpc(body: &[u8], max_depth: usize) -> Option<Call> {
    let mut params = read_body(body, max_depth, Envelope(JsonRpcParamsSeed { fixed: None }))??;
    let service = text_of(params.service.as_ref())?.to_owned();
    let method = text_of(params.method.as_ref())?.to_owned();
    let read_with = (service.clone(), method.clone());
    if params.args_read_with.as_ref() != Some(&read_with) {
        // `args` came before the final `service` or `method`: read it again
        // knowing both.
        params = read_body(body, max_depth, Envelope(JsonRpcParamsSeed { fixed: Some(read_with.clone()) }))??;
        if params.args_read_with.as_ref() != Some(&read_with) {
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

/// The parts of a `/jsonrpc` `params` object that a call needs.
#[derive(Default)]
struct JsonRpcParams {
    service: Option<Json>,
    method: Option<Json>,
    args: Option<ServiceArgs>,
    /// The service and method the last `args` was read for, or `None`
    /// when they were not known yet.
    args_read_with: Option<(String, String)>,
}

/// Reads `params`; `fixed` gives the service and method when a first pass
/// found them after `args`.
#[derive(Clone)]
struct JsonRpcParamsSeed {
    fixed: Option<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for JsonRpcParamsSeed {
    type Value = Option<JsonRpcParams>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonRpcParamsSeed {
    type Value = Option<JsonRpcParams>;

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
                "service" => params.service = Some(map.next_value_seed(JsonSeed)?),
                "method" => params.method = Some(map.next_value_seed(JsonSeed)?),
                "args" => {
                    let known = || Some((text_of(params.service.as_ref())?.to_owned(), text_of(params.method.as_ref())?.to_owned()));
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
struct ServiceArgs {
    heads: Vec<Json>,
    /// Parameters seen in all.
    count: usize,
    extraction: Option<Extraction>,
    /// `execute_kw`'s argument list was not a list.
    args_not_a_list: bool,
    kwargs: Option<ValueKind>,
}

/// Parameters read whole: `db, uid, password, model, method`.
const HEAD_PARAMS: usize = 5;

// === impl ServiceArgs ===

impl ServiceArgs {
    /// Builds the call as `service::decode_service_call` does.
    fn into_call(self, service: &str, method: &str) -> Option<Call> {
        if service != "object" {
            // `common` and `db` read only the first three parameters.
            return service::decode_service_call(Protocol::JsonRpc, service, method, &self.heads).ok();
        }
        match method {
            "execute_kw" if self.count <= 5 || self.args_not_a_list => return None,
            "execute_kw" | "execute" => {}
            _ => return None,
        }
        let model = text_of(self.heads.get(3))?;
        let model_method = text_of(self.heads.get(4))?;
        if self.kwargs == Some(ValueKind::Other) {
            return None;
        }

        let mut call = Call::new(Protocol::JsonRpc, CallKind::Model);
        call.service = Some("object".to_owned());
        call.method = Some(model_method.to_owned());
        call.db = text_of(self.heads.first()).map(str::to_owned);
        call.uid = self.heads.get(1).and_then(service::uid_of);
        call.credential = password(self.heads.get(2));
        call.model = Some(model.to_owned());
        let extraction = self.extraction.unwrap_or_else(|| Extraction::for_model_call(model_method));
        extraction.finish(&mut call);
        Some(call)
    }
}

fn password(value: Option<&Json>) -> Option<Credential> {
    let password = text_of(value)?;
    Some(Credential::new(CredentialSlot::Password, Secret::new(password)))
}

/// Reads the `args` list of a service call.
struct ServiceArgsSeed<'a> {
    service: &'a str,
    method: &'a str,
}

impl<'de> DeserializeSeed<'de> for ServiceArgsSeed<'_> {
    type Value = Option<ServiceArgs>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ServiceArgsSeed<'_> {
    type Value = Option<ServiceArgs>;

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
                seq.next_element_seed(JsonSeed)?.map(|head| args.heads.push(head)).is_some()
            } else if object && matches!(self.method, "execute_kw" | "execute") {
                let Some(model_method) = text_of(args.heads.get(4)) else {
                    skip_rest_of_seq(&mut seq)?;
                    return Ok(Some(args));
                };
                let extraction = args.extraction.get_or_insert_with(|| Extraction::for_model_call(model_method));
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
    extraction: &'e mut Extraction,
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
    call.db = text_of(params.db.as_ref()).map(str::to_owned);
    call.login = text_of(params.login.as_ref()).map(str::to_owned);
    call.credential = password(params.password.as_ref());
    Some(call)
}

#[derive(Default)]
struct AuthenticateParams {
    db: Option<Json>,
    login: Option<Json>,
    password: Option<Json>,
}

#[derive(Clone)]
struct AuthenticateSeed;

impl<'de> DeserializeSeed<'de> for AuthenticateSeed {
    type Value = Option<AuthenticateParams>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for AuthenticateSeed {
    type Value = Option<AuthenticateParams>;

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
            *slot = Some(map.next_value_seed(JsonSeed)?);
        }
        Ok(Some(params))
    }
}

/// Decodes `call_kw` or `call_button`, as `web::decode_call` does.
pub(crate) fn decode_web_call(route: Route, body: &[u8], max_depth: usize) -> Option<Call> {
    let mut params = read_body(body, max_depth, Envelope(WebCallSeed { route, fixed: None }))??;
    let method = text_of(params.method.as_ref())?.to_owned();
    if params.stale || params.extraction.as_ref().is_some_and(|extraction| extraction.method() != method) {
        params = read_body(body, max_depth, Envelope(WebCallSeed { route, fixed: Some(method.clone()) }))??;
        if params.stale {
            return None;
        }
    }
    let model = text_of(params.model.as_ref())?;
    if params.args_is_list != Some(true) || params.kwargs != Some(ValueKind::Map) {
        return None;
    }
    let extraction = params.extraction?;

    let mut call = Call::new(Protocol::Web, CallKind::Model);
    call.model = Some(model.to_owned());
    call.method = Some(method);
    extraction.finish(&mut call);
    Some(call)
}

#[derive(Default)]
struct WebCallParams {
    model: Option<Json>,
    method: Option<Json>,
    extraction: Option<Extraction>,
    /// Whether the last `args` was a list.
    args_is_list: Option<bool>,
    kwargs: Option<ValueKind>,
    /// `args` or `kwargs` came before the method was known.
    stale: bool,
}

#[derive(Clone)]
struct WebCallSeed {
    route: Route,
    fixed: Option<String>,
}

impl WebCallSeed {
    /// Returns the extraction for `method`, replacing one made for another
    /// method (and then marking the reading stale).
    fn extraction<'p>(&self, params: &'p mut WebCallParams, method: &str) -> &'p mut Extraction {
        if params.extraction.as_ref().is_some_and(|extraction| extraction.method() != method) {
            params.stale = true;
            params.extraction = None;
        }
        params.extraction.get_or_insert_with(|| match self.route {
            Route::CallButton => Extraction::new(method, IdsMode::First),
            _ => Extraction::for_model_call(method),
        })
    }
}

impl<'de> DeserializeSeed<'de> for WebCallSeed {
    type Value = Option<WebCallParams>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for WebCallSeed {
    type Value = Option<WebCallParams>;

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
                "model" => params.model = Some(map.next_value_seed(JsonSeed)?),
                "method" => params.method = Some(map.next_value_seed(JsonSeed)?),
                "args" | "kwargs" => {
                    let method = self.fixed.clone().or_else(|| text_of(params.method.as_ref()).map(str::to_owned));
                    let Some(method) = method else {
                        map.next_value::<Skip>()?;
                        params.stale = true;
                        continue;
                    };
                    let extraction = self.extraction(&mut params, &method);
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
pub(crate) fn read_json2_body(method: &str, body: &[u8], max_depth: usize) -> Option<Extraction> {
    let mut extraction = Extraction::new(method, IdsMode::Named);
    let mut keys = KeyStack::default();
    let kind = read_body(body, max_depth, extraction.named_seed(&mut keys))?;
    (kind == ValueKind::Map).then_some(extraction)
}

#[cfg(test)]
mod parser_tests;
#[cfg(test)]
mod tests;
