//! The positional services behind XML-RPC and `/jsonrpc`: Odoo's
//! `dispatch_rpc(service, method, params)` for `common`, `object` and `db`.
//!
//! Both surfaces carry the same positional lists, so this module reads them
//! through [`ArgValue`] whichever encoding they came in.

use super::args;
use super::call::{Call, CallKind, Credential, CredentialSlot, DecodeError, Protocol};
use super::value::ArgValue;
use crate::secret::Secret;

/// `db` service methods whose first argument is the master password and
/// whose second is the name of the database they act on.
const DB_METHODS_NAMING_A_DATABASE: [&str; 6] =
    ["create_database", "duplicate_database", "drop", "dump", "restore", "rename"];

/// Position of the password or API key among the parameters of
/// `common.login`, `common.authenticate`, `object.execute` and
/// `object.execute_kw`.
pub const PASSWORD_PARAM: usize = 2;

/// Decodes `service.method(*params)` into a call.
pub fn decode_service_call<V: ArgValue>(
    protocol: Protocol,
    service: &str,
    method: &str,
    params: &[V],
) -> Result<Call, DecodeError> {
    if service == "object" {
        return decode_object(protocol, method, params);
    }
    let text = |index: usize| params.get(index).and_then(ArgValue::as_text);
    decode_text_service_call(protocol, service, method, text)
        .ok_or_else(|| shape_error(protocol, "unknown service (expected common, object or db)"))
}

/// Decodes a `common` or `db` call as [`decode_service_call`] does, given
/// `text(index)`, which returns parameter `index` when it is a string.
/// These services read no parameter of another type. Returns `None` for
/// any other service, `object` included.
pub fn decode_text_service_call<'a>(
    protocol: Protocol,
    service: &str,
    method: &str,
    text: impl Fn(usize) -> Option<&'a str>,
) -> Option<Call> {
    let mut call = Call::new(protocol, CallKind::Meta);
    decode_text_service_call_into(protocol, service, method, text, &mut call).then_some(call)
}

/// Decodes a `common` or `db` call as [`decode_text_service_call`] does,
/// into `call`, which must be as [`Call::new`] returns it. Returns false,
/// and leaves `call` unchanged, for any other service.
pub fn decode_text_service_call_into<'a>(
    protocol: Protocol,
    service: &str,
    method: &str,
    text: impl Fn(usize) -> Option<&'a str>,
    call: &mut Call,
) -> bool {
    match service {
        "common" => decode_common(protocol, method, text, call),
        "db" => decode_db(protocol, method, text, call),
        _ => return false,
    }
    true
}

/// Returns the structural error of `protocol`'s encoding.
pub fn shape_error(protocol: Protocol, message: &str) -> DecodeError {
    match protocol {
        Protocol::XmlRpc | Protocol::XmlRpcLegacy => DecodeError::InvalidXmlRpc(message.to_owned()),
        Protocol::JsonRpc | Protocol::Web | Protocol::Json2 => DecodeError::InvalidJsonRpc(message.to_owned()),
    }
}

/// `common.login(db, login, password)`,
/// `common.authenticate(db, login, password, user_agent_env)`, and the
/// metadata methods `version` and `about`.
fn decode_common<'a>(protocol: Protocol, method: &str, text: impl Fn(usize) -> Option<&'a str>, call: &mut Call) {
    let kind = match method {
        "login" | "authenticate" => CallKind::Auth,
        _ => CallKind::Meta,
    };
    start_call(call, protocol, kind, "common", method);
    match method {
        "login" | "authenticate" => {
            call.db = text(0).map(str::to_owned);
            call.login = text(1).map(str::to_owned);
            call.credential = text(PASSWORD_PARAM).map(password);
        }
        "version" | "about" => {}
        _ => call.mismatches.push("common method unknown to odoogate".to_owned()),
    }
}

/// `object.execute_kw(db, uid, password, model, method, args, kwargs?)` and
/// `object.execute(db, uid, password, model, method, *args)`.
fn decode_object<V: ArgValue>(protocol: Protocol, method: &str, params: &[V]) -> Result<Call, DecodeError> {
    let (args, kwargs): (&[V], Option<&V>) = match method {
        "execute_kw" => {
            let args = params
                .get(5)
                .and_then(ArgValue::as_list)
                .ok_or_else(|| shape_error(protocol, "execute_kw without an argument list"))?;
            (args, params.get(6).filter(|kwargs| !kwargs.is_false_or_null()))
        }
        "execute" => (params.get(5..).unwrap_or(&[]), None),
        _ => return Err(shape_error(protocol, "unknown object method (expected execute_kw or execute)")),
    };
    let model = params.get(3).and_then(ArgValue::as_text);
    let model_method = params.get(4).and_then(ArgValue::as_text);
    let (Some(model), Some(model_method)) = (model, model_method) else {
        return Err(shape_error(protocol, "model or method name missing or not a string"));
    };
    if kwargs.is_some_and(|kwargs| kwargs.entries().is_none()) {
        return Err(shape_error(protocol, "keyword arguments are not a map"));
    }

    let mut call = new_call(protocol, CallKind::Model, "object", model_method);
    call.db = text_at(params, 0);
    call.uid = params.get(1).and_then(uid_of);
    call.credential = password_at(params, PASSWORD_PARAM);
    call.model = Some(model.to_owned());
    args::extract_model_arguments(&mut call, args, kwargs);
    Ok(call)
}

/// `db` methods that only describe the server (database names, version,
/// languages, countries). Clients such as OdooRPC call `db.list` on every
/// login, so these are metadata and need no allow rule.
const DB_METADATA_METHODS: &[&str] = &["list", "db_exist", "server_version", "list_lang", "list_countries"];

/// `db.<method>(...)`. The master password some methods take is never kept.
fn decode_db<'a>(protocol: Protocol, method: &str, text: impl Fn(usize) -> Option<&'a str>, call: &mut Call) {
    let kind = if DB_METADATA_METHODS.contains(&method) { CallKind::Meta } else { CallKind::Database };
    start_call(call, protocol, kind, "db", method);
    if DB_METHODS_NAMING_A_DATABASE.contains(&method) {
        call.db = text(1).map(str::to_owned);
    }
}

fn new_call(protocol: Protocol, kind: CallKind, service: &str, method: &str) -> Call {
    let mut call = Call::new(protocol, CallKind::Meta);
    start_call(&mut call, protocol, kind, service, method);
    call
}

/// Sets the protocol, kind, service and method of `call`.
fn start_call(call: &mut Call, protocol: Protocol, kind: CallKind, service: &str, method: &str) {
    call.protocol = protocol;
    call.kind = kind;
    call.service = Some(service.to_owned());
    call.method = Some(method.to_owned());
}

fn text_at<V: ArgValue>(params: &[V], index: usize) -> Option<String> {
    params.get(index).and_then(ArgValue::as_text).map(str::to_owned)
}

fn password_at<V: ArgValue>(params: &[V], index: usize) -> Option<Credential> {
    params.get(index)?.as_text().map(password)
}

fn password(text: &str) -> Credential {
    Credential::new(CredentialSlot::Password, Secret::new(text))
}

/// Reads a uid as Odoo's `int(params[1])` does: an integer, a boolean
/// (`True` is 1), a float cut towards zero, or text that Python's `int`
/// reads (`" 2"`, `"+2"`, `"1_0"`). `None` when Odoo would fail, or when
/// the value does not fit in `i64`.
pub fn uid_of<V: ArgValue>(value: &V) -> Option<i64> {
    if let Some(uid) = value.as_int() {
        return Some(uid);
    }
    if let Some(flag) = value.as_bool() {
        return Some(i64::from(flag));
    }
    if let Some(number) = value.as_float() {
        let truncated = number.trunc();
        // `i64::MAX as f64` rounds up to 2^63, which is out of range.
        let in_range = truncated >= i64::MIN as f64 && truncated < i64::MAX as f64;
        return in_range.then_some(truncated as i64);
    }
    uid_of_text(value.as_text()?)
}

/// Reads a uid sent as text, as Python's `int` reads it (see [`uid_of`]).
pub fn uid_of_text(text: &str) -> Option<i64> {
    match super::xmlrpc::parse_int(text) {
        Ok(super::value::Value::Int(uid)) => Some(uid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::call::Context;
    use serde_json::json;

    fn decode_json(service: &str, method: &str, params: serde_json::Value) -> Result<Call, DecodeError> {
        let params = params.as_array().cloned().unwrap_or_default();
        decode_service_call(Protocol::JsonRpc, service, method, &params)
    }

    #[test]
    fn execute_kw_reads_positional_layout() {
        let call = decode_json(
            "object",
            "execute_kw",
            json!(["odoo19", 2, "pw", "res.partner", "read", [[7, 8]], {"fields": ["name"], "context": {"lang": "en_US"}}]),
        )
        .unwrap();
        assert_eq!(call.kind, CallKind::Model);
        assert_eq!(call.db.as_deref(), Some("odoo19"));
        assert_eq!(call.uid, Some(2));
        assert_eq!(call.model.as_deref(), Some("res.partner"));
        assert_eq!(call.method.as_deref(), Some("read"));
        assert_eq!(call.record_ids, vec![7, 8]);
        assert_eq!(call.fields, vec!["name".to_owned()]);
        assert!(!call.reads_all_fields);
        assert_eq!(call.context, Some(Context::Json(json!({"lang": "en_US"}))));
        assert_eq!(call.credential.map(|c| (c.slot, c.secret.expose().to_owned())), Some((CredentialSlot::Password, "pw".to_owned())));
    }

    #[test]
    fn execute_takes_args_after_method() {
        let call = decode_json("object", "execute", json!(["db", "2", "pw", "res.partner", "write", [5], {"name": "x"}])).unwrap();
        assert_eq!(call.uid, Some(2));
        assert_eq!(call.record_ids, vec![5]);
        assert_eq!(call.fields, vec!["name".to_owned()]);
        assert_eq!(call.context, None);
    }

    #[test]
    fn execute_kw_without_args_is_rejected() {
        let error = decode_json("object", "execute_kw", json!(["db", 2, "pw", "res.partner", "read"])).unwrap_err();
        assert_eq!(error.code(), "invalid_jsonrpc");
    }

    #[test]
    fn non_string_model_is_rejected() {
        let error = decode_json("object", "execute", json!(["db", 2, "pw", 5, "read"])).unwrap_err();
        assert_eq!(error.code(), "invalid_jsonrpc");
    }

    #[test]
    fn common_login_is_auth() {
        let call = decode_json("common", "login", json!(["db", "admin", "secret"])).unwrap();
        assert_eq!(call.kind, CallKind::Auth);
        assert_eq!(call.login.as_deref(), Some("admin"));
        assert_eq!(call.credential.map(|c| c.slot), Some(CredentialSlot::Password));
        assert!(call.mismatches.is_empty());
    }

    #[test]
    fn common_unknown_method_is_flagged() {
        let call = decode_json("common", "set_loglevel", json!([])).unwrap();
        assert_eq!(call.kind, CallKind::Meta);
        assert_eq!(call.mismatches.len(), 1);
    }

    #[test]
    fn db_drop_names_database_but_keeps_no_password() {
        let call = decode_json("db", "drop", json!(["master", "odoo19"])).unwrap();
        assert_eq!(call.kind, CallKind::Database);
        assert_eq!(call.method.as_deref(), Some("drop"));
        assert_eq!(call.db.as_deref(), Some("odoo19"));
        assert!(call.credential.is_none());
    }

    #[test]
    fn db_list_is_metadata() {
        let call = decode_json("db", "list", json!([])).unwrap();
        assert_eq!(call.kind, CallKind::Meta);
        assert_eq!(call.service.as_deref(), Some("db"));
    }

    #[test]
    fn unknown_service_is_rejected() {
        assert!(decode_json("report", "render", json!([])).is_err());
    }

    #[test]
    fn uid_reads_like_python_int() {
        assert_eq!(uid_of(&json!(2)), Some(2));
        assert_eq!(uid_of(&json!("17")), Some(17));
        assert_eq!(uid_of(&json!("-1")), Some(-1));
        assert_eq!(uid_of(&json!(" 2 ")), Some(2));
        assert_eq!(uid_of(&json!("1_0")), Some(10));
        assert_eq!(uid_of(&json!(true)), Some(1));
        assert_eq!(uid_of(&json!(false)), Some(0));
        assert_eq!(uid_of(&json!(2.9)), Some(2));
        assert_eq!(uid_of(&json!(1e300)), None);
        assert_eq!(uid_of(&json!("2.0")), None);
        assert_eq!(uid_of(&json!("")), None);
        assert_eq!(uid_of(&json!(null)), None);
    }
}
