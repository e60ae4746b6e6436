"""Reference reading of XML-RPC and JSON-RPC bodies, as Odoo reads them.

The differential test in odoogate-userspace/tests/differential.rs feeds
this script one JSON object per line on stdin:

    {"id": 7, "surface": "xmlrpc" | "jsonrpc", "service": "object", "body_hex": "..."}

and reads one JSON object per line back, in the same order:

    {"id": 7, "ok": true, "service": ..., "method": ..., "model": ...,
     "db": ..., "uid": ..., "record_ids": [...] | null, "ids_exact": bool,
     "has_password": bool, "args_count": n}
    {"id": 7, "ok": false, "error": "..."}

"ok": false means Odoo would reject the request before running anything:
the body does not parse, or Odoo's dispatcher cannot apply it.

Parsing is Python's own: xmlrpc.client.loads(data, use_datetime=True) and
json.loads, as Odoo 19's rpc addon calls them. The positional layout
follows odoo/service (dispatch_rpc, common, db and model.execute_kw).
Odoo separates record methods from model methods by decorators that neither
side can see, so record ids follow the same method lists as odoogate's
rpc/args.rs for methods outside them.
"""

import json
import sys
import xmlrpc.client

# Methods Odoo declares @api.model, or that take no ids (rpc/args.rs).
MODEL_LEVEL_METHODS = {
    "check_access_rights", "context_get", "create", "default_get", "fields_get",
    "formatted_read_group", "get_views", "has_access", "load", "name_create",
    "name_search", "read_group", "search", "search_count", "search_fetch",
    "search_read", "web_name_search", "web_read_group", "web_search_read",
}
# Record methods whose first argument is the ids whatever it holds.
RECORD_METHODS = {"copy", "export_data", "read", "unlink", "web_read", "web_save", "write"}
# db methods that take the master password, then the database name
# (odoo/service/db.py dispatch).
DB_METHODS_NAMING_A_DATABASE = {
    "create_database", "duplicate_database", "drop", "dump", "restore", "rename",
}
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


class Rejected(Exception):
    """Odoo would fail the request before running the method."""


def is_plain_int(value):
    return type(value) is int


def is_id_list(value):
    if is_plain_int(value):
        return True
    return isinstance(value, (list, tuple)) and all(is_plain_int(item) for item in value)


def record_ids(method, args):
    """Return (ids, exact): the records BaseModel.browse and SQL select, and
    whether every id's effect is clear. ids is None when the method takes
    no ids. An integral float selects the integer id. A fractional float or
    an integer beyond i64 selects nothing. The effect of a string, boolean
    or container is unclear, and so is that of a single non-int value."""
    if not args:
        return None, True
    first = args[0]
    takes_ids = method in RECORD_METHODS or (method not in MODEL_LEVEL_METHODS and is_id_list(first))
    if not takes_ids:
        return None, True
    if first is None or first is False:
        return [], True
    if is_plain_int(first):
        return ([first] if I64_MIN <= first <= I64_MAX else None), True
    if not isinstance(first, (list, tuple)):
        return None, False
    ids = []
    for item in first:
        if is_plain_int(item):
            if I64_MIN <= item <= I64_MAX:
                ids.append(item)
        elif isinstance(item, float):
            if item.is_integer() and I64_MIN <= item < 2**63:
                ids.append(int(item))
        elif isinstance(item, (str, bool, list, tuple, dict)) or item is None:
            return None, False
    return ids, True


def text_or_none(value):
    return value if isinstance(value, str) else None


def read_object(method, params):
    """odoo.service.model.dispatch: uid = int(params[1]), then
    execute_kw(db, uid, *params[3:]) or execute(db, uid, *params[3:])."""
    if method not in ("execute", "execute_kw"):
        raise Rejected("unknown object method")
    if len(params) < 5:
        raise Rejected("too few parameters")
    try:
        uid = int(params[1])
    except (TypeError, ValueError) as error:
        raise Rejected(f"uid: {error}") from None
    model, model_method = params[3], params[4]
    if not isinstance(model, str) or not isinstance(model_method, str):
        raise Rejected("model or method is not a string")
    if method == "execute_kw":
        if len(params) < 6 or len(params) > 7:
            raise Rejected("execute_kw takes 6 or 7 parameters")
        args, kwargs = params[5], (params[6] if len(params) > 6 else None)
        if not isinstance(args, (list, tuple)):
            raise Rejected("args is not a list")
        if kwargs and not isinstance(kwargs, dict):
            raise Rejected("kwargs is not a dict")
        args = list(args)
    else:
        args = list(params[5:])
    ids, exact = record_ids(model_method, args)
    return {
        "service": "object", "method": model_method, "model": model,
        "db": text_or_none(params[0]), "uid": uid if I64_MIN <= uid <= I64_MAX else None,
        "record_ids": ids, "ids_exact": exact,
        "has_password": isinstance(params[2], str), "args_count": len(args),
    }


def read_common(method, params):
    base = {"service": "common", "method": method, "model": None, "db": None, "uid": None,
            "record_ids": None, "ids_exact": True, "has_password": False, "args_count": len(params)}
    if method in ("login", "authenticate"):
        base["db"] = text_or_none(params[0]) if params else None
        base["has_password"] = len(params) > 2 and isinstance(params[2], str)
    return base


def read_db(method, params):
    db = None
    if method in DB_METHODS_NAMING_A_DATABASE and len(params) > 1:
        db = text_or_none(params[1])
    return {"service": "db", "method": method, "model": None, "db": db, "uid": None,
            "record_ids": None, "ids_exact": True, "has_password": False, "args_count": len(params)}


def dispatch(service, method, params):
    """odoo.http.dispatch_rpc: pick the service, then read its layout."""
    if not isinstance(method, str):
        raise Rejected("method is not a string")
    if service == "object":
        return read_object(method, params)
    if service == "common":
        return read_common(method, params)
    if service == "db":
        return read_db(method, params)
    raise Rejected("unknown service")


def read_xmlrpc(service, body):
    params, method = xmlrpc.client.loads(body, use_datetime=True)
    if method is None:
        raise Rejected("no methodName")
    return dispatch(service, method, list(params))


def read_jsonrpc(body):
    envelope = json.loads(body)
    if not isinstance(envelope, dict):
        raise Rejected("body is not an object")
    params = envelope.get("params", {})
    if not isinstance(params, dict):
        raise Rejected("params is not an object")
    # The route is jsonrpc(service, method, args): params are its keyword
    # arguments, so a missing or extra key is a TypeError in Odoo.
    if set(params) != {"service", "method", "args"}:
        raise Rejected("params keys are not service, method, args")
    args = params["args"]
    if not isinstance(args, list):
        raise Rejected("args is not a list")
    return dispatch(params["service"], params["method"], args)


def answer(request):
    body = bytes.fromhex(request["body_hex"])
    try:
        if request["surface"] == "xmlrpc":
            result = read_xmlrpc(request["service"], body)
        else:
            result = read_jsonrpc(body)
    except Exception as error:  # any failure means Odoo rejects the request
        return {"id": request["id"], "ok": False, "error": f"{type(error).__name__}"}
    result.update(id=request["id"], ok=True)
    return result


def main():
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(answer(json.loads(line))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
