"""An HTTP server that answers Odoo's RPC surfaces the way Odoo 19 does.

It is odoogate's stand-in for Odoo in the demo and the end-to-end tests. It
decodes requests with the parsers Odoo itself uses (``xmlrpc.client.loads``
on expat, and ``json``), keeps records in memory, and shapes its answers and
errors after real Odoo 19.0 responses: XML-RPC faults with integer codes on
``/xmlrpc/2`` and string codes on legacy ``/xmlrpc``, JSON-RPC error objects,
and JSON-2 statuses with the five-key error body. Like Odoo's werkzeug
server, it closes the connection after every response. With --keep-alive it
keeps the connection open for the client's next request instead, as a server
between a proxy and Odoo (nginx with ``keepalive``) does, so that tests can
exercise the proxy's reuse of upstream connections.

Only the Python standard library is used, so it runs on any host with
Python 3.9 or later.
"""

import argparse
import base64
import datetime
import fnmatch
import hashlib
import itertools
import json
import os
import re
import secrets
import socket
import socketserver
import sys
import threading
import traceback
import xmlrpc.client
from http.server import BaseHTTPRequestHandler, HTTPServer

SERVER_VERSION_INFO = [19, 0, 0, "final", 0, ""]
VERSION = {
    "server_version": "19.0",
    "server_version_info": SERVER_VERSION_INFO,
    "server_serie": "19.0",
    "protocol_version": 1,
}
ADMIN_UID = 2
# RFC 6455 section 1.3: the GUID appended to Sec-WebSocket-Key.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Models the in-memory database knows, with the fields fields_get reports.
MODELS = {
    "res.partner": {"name": "char", "email": "char", "phone": "char", "is_company": "boolean",
                    "category_id": "many2many", "comment": "html", "partner_latitude": "float",
                    "image_128": "binary", "active": "boolean", "write_date": "datetime"},
    "res.partner.category": {"name": "char", "color": "integer"},
    "res.users": {"name": "char", "login": "char", "partner_id": "many2one", "groups_id": "many2many"},
    "res.currency": {"name": "char", "active": "boolean"},
    "res.currency.rate": {"name": "date", "rate": "float", "currency_id": "many2one"},
    "crm.lead": {"name": "char", "email_from": "char", "partner_id": "many2one", "description": "html"},
    "sale.order": {"name": "char", "partner_id": "many2one", "state": "selection", "amount_total": "float"},
    "ir.attachment": {"name": "char", "datas": "binary", "res_model": "char", "res_id": "integer"},
    "x_saas_stat": {"x_name": "char", "x_value": "float", "x_date": "date"},
    "mail.message": {"body": "html", "model": "char", "res_id": "integer"},
}


class OdooError(Exception):
    """An error Odoo raises, with the name it carries on the wire."""

    name = "odoo.exceptions.UserError"
    xmlrpc_code = 2
    json2_status = 422

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class UserError(OdooError):
    pass


class AccessError(OdooError):
    name = "odoo.exceptions.AccessError"
    xmlrpc_code = 4
    json2_status = 403


class AccessDenied(OdooError):
    name = "odoo.exceptions.AccessDenied"
    xmlrpc_code = 3
    json2_status = 401

    def __init__(self, message="Access Denied"):
        super().__init__(message)


class MissingMethod(OdooError):
    name = "builtins.AttributeError"
    xmlrpc_code = 1
    json2_status = 404


class ServerError(OdooError):
    name = "builtins.Exception"
    xmlrpc_code = 1
    json2_status = 500


def now_string():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class Database:
    """Records of every model, shared by all request threads."""

    def __init__(self, name, password, api_keys):
        self.name = name
        self.password = password
        self.api_keys = set(api_keys)
        self.lock = threading.Lock()
        self.next_id = {model: 100 for model in MODELS}
        self.records = {model: {} for model in MODELS}
        stamp = now_string()
        self.records["res.partner"] = {
            1: {"name": "My Company", "email": "info@example.com", "is_company": True, "category_id": [], "active": True, "write_date": stamp},
            2: {"name": "System", "email": "odoobot@example.com", "is_company": False, "category_id": [], "active": True, "write_date": stamp},
            3: {"name": "Administrator", "email": False, "is_company": False, "category_id": [], "active": True, "write_date": stamp},
        }
        self.records["res.users"] = {2: {"name": "Administrator", "login": "admin", "partner_id": 3, "groups_id": []}}
        self.records["res.currency"] = {126: {"name": "EUR", "active": True}}
        self.sessions = {}

    def check_credential(self, credential):
        """Returns the uid for a password or API key, or raises AccessDenied."""
        if isinstance(credential, str) and (credential == self.password or credential in self.api_keys):
            return ADMIN_UID
        raise AccessDenied()

    def check_api_key(self, key):
        if key in self.api_keys:
            return ADMIN_UID
        raise AccessDenied("Invalid apikey")

    def login(self, db, login, credential):
        if db != self.name or login != "admin":
            return False
        try:
            return self.check_credential(credential)
        except AccessDenied:
            return False

    def execute(self, model, method, args, kwargs):
        if method.startswith("_"):
            raise AccessError(f"Private methods (such as '{model}.{method}') cannot be called remotely.")
        if model not in MODELS:
            raise UserError(f"Object {model} doesn't exist")
        handler = getattr(self, "method_" + method, None)
        if handler is None:
            raise MissingMethod(f"The method '{method}' does not exist on the model '{model}'")
        kwargs = dict(kwargs or {})
        kwargs.pop("context", None)
        with self.lock:
            try:
                return handler(model, *args, **kwargs)
            except TypeError as error:
                raise ServerError(f"TypeError: {error}") from error

    # Model methods, with Odoo's argument names so keyword calls work.

    def method_search(self, model, domain=(), offset=0, limit=None, order=None, count=False):
        ids = [rid for rid, rec in sorted(self.records[model].items()) if matches_domain(rec, domain, rid)]
        ids = ids[offset:]
        if limit:
            ids = ids[:limit]
        return len(ids) if count else ids

    def method_search_count(self, model, domain=(), limit=None):
        return len(self.method_search(model, domain, limit=limit))

    def method_read(self, model, ids, fields=None, load="_classic_read"):
        ids = [ids] if isinstance(ids, int) else ids
        result = []
        for rid in ids:
            record = self.records[model].get(rid)
            if record is None:
                continue
            names = fields or list(MODELS[model])
            row = {"id": rid}
            for name in names:
                row[name] = record.get(name, False)
            result.append(row)
        return result

    def method_web_read(self, model, ids, specification=None):
        return self.method_read(model, ids, list((specification or {}).keys()) or None)

    def method_search_read(self, model, domain=(), fields=None, offset=0, limit=None, order=None):
        return self.method_read(model, self.method_search(model, domain, offset, limit), fields)

    def method_create(self, model, vals_list=None, **kwargs):
        if vals_list is None:
            vals_list = kwargs.pop("vals", {})
        single = isinstance(vals_list, dict)
        new_ids = []
        for vals in [vals_list] if single else vals_list:
            rid = self.next_id[model]
            self.next_id[model] += 1
            record = {}
            apply_values(record, vals)
            record["write_date"] = now_string()
            self.records[model][rid] = record
            new_ids.append(rid)
        return new_ids[0] if single else new_ids

    def method_write(self, model, ids, vals):
        for rid in [ids] if isinstance(ids, int) else ids:
            if rid in self.records[model]:
                apply_values(self.records[model][rid], vals)
                self.records[model][rid]["write_date"] = now_string()
        return True

    def method_unlink(self, model, ids):
        for rid in [ids] if isinstance(ids, int) else ids:
            self.records[model].pop(rid, None)
        return True

    def method_name_search(self, model, name="", domain=None, operator="ilike", limit=100, args=None):
        found = []
        for rid, record in sorted(self.records[model].items()):
            label = str(record.get("name") or record.get("x_name") or "")
            if name.lower() in label.lower():
                found.append([rid, label])
        return found[:limit]

    def method_fields_get(self, model, allfields=None, attributes=None):
        return {name: {"type": kind, "string": name.replace("_", " ").title()} for name, kind in MODELS[model].items()}

    def method_context_get(self, model):
        return {"lang": "en_US", "tz": False, "uid": ADMIN_UID}

    def method_check_access_rights(self, model, operation, raise_exception=True):
        return True

    def method_default_get(self, model, fields_list=None):
        return {}


def apply_values(record, vals):
    """Writes vals into record, applying x2many command tuples to id lists."""
    for name, value in vals.items():
        if isinstance(value, list) and value and isinstance(value[0], (list, tuple)):
            current = list(record.get(name) or [])
            for command in value:
                code = command[0]
                if code == 6:
                    current = list(command[2])
                elif code == 4 and command[1] not in current:
                    current.append(command[1])
                elif code in (2, 3) and command[1] in current:
                    current.remove(command[1])
                elif code == 5:
                    current = []
            record[name] = current
        else:
            record[name] = value


def matches_domain(record, domain, rid):
    """Evaluates an Odoo domain (prefix notation, implicit AND) on a record."""
    terms = list(domain or [])
    if not terms:
        return record.get("active", True) is not False

    def evaluate(position):
        term = terms[position]
        if term == "!":
            value, position = evaluate(position + 1)
            return not value, position
        if term in ("&", "|"):
            left, position = evaluate(position + 1)
            right, position = evaluate(position)
            return (left and right) if term == "&" else (left or right), position
        field, operator, expected = term
        actual = rid if field == "id" else record.get(field, False)
        return compare(actual, operator, expected), position + 1

    result, position = True, 0
    while position < len(terms):
        value, position = evaluate(position)
        result = result and value
    return result


def compare(actual, operator, expected):
    if operator == "=":
        return actual == expected
    if operator == "!=":
        return actual != expected
    if operator == "in":
        return actual in expected or (isinstance(actual, list) and any(a in expected for a in actual))
    if operator == "not in":
        return actual not in expected
    if operator in ("ilike", "like", "=ilike", "=like"):
        pattern = str(expected)
        text = str(actual or "")
        if operator.startswith("="):
            return fnmatch.fnmatchcase(text.lower(), pattern.replace("%", "*").lower())
        return pattern.lower() in text.lower() if operator == "ilike" else pattern in text
    try:
        if operator == ">":
            return actual > expected
        if operator == ">=":
            return actual >= expected
        if operator == "<":
            return actual < expected
        if operator == "<=":
            return actual <= expected
    except TypeError:
        return False
    raise UserError(f"Invalid leaf operator {operator!r}")


def to_wire(value):
    """Converts a result to what Odoo sends: no None and no datetime objects."""
    if value is None:
        return False
    if isinstance(value, dict):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime.datetime) else value.isoformat()
    if isinstance(value, xmlrpc.client.Binary):
        return base64.b64encode(value.data).decode()
    return value


def from_wire(value):
    """Converts XML-RPC values to what Odoo's ORM receives."""
    if isinstance(value, dict):
        return {k: from_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Werkzeug/3.0 (odoogate Odoo-like upstream)"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("odoo-like: " + (fmt % args) + "\n")

    def setup(self):
        if self.server.keep_alive:
            # StreamRequestHandler.setup applies the timeout to the socket,
            # and http.server closes a connection whose read or write times
            # out, also while it waits for the next request line.
            self.timeout = self.server.keep_alive_timeout
            with self.server.connection_lock:
                self.connection_number = next(self.server.connection_numbers)
        super().setup()

    # --- request plumbing -------------------------------------------------

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status, body, content_type, extra_headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers:
            self.send_header(name, value)
        # parse_request has set close_connection when the request asked for
        # the close (Connection: close, or HTTP/1.0 without keep-alive).
        if not self.server.keep_alive:
            self.close_connection = True
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, payload, extra_headers=()):
        body = json.dumps(payload).encode()
        self.send(status, body, "application/json; charset=utf-8", extra_headers)

    def record(self, entry):
        log = self.server.request_log
        if self.server.keep_alive:
            entry = dict(entry, connection=self.connection_number)
        if log is not None:
            with self.server.log_lock:
                log.write(json.dumps(entry) + "\n")
                log.flush()

    def websocket(self):
        """Accepts the upgrade like Odoo's /websocket route, then echoes raw
        bytes until the client closes (enough to test a proxy's splice)."""
        key = self.headers.get("Sec-WebSocket-Key") or ""
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        # The echo has no timeout, also with --keep-alive-timeout, so a quiet
        # WebSocket stays open until the client closes it.
        self.connection.settimeout(None)
        while True:
            data = self.connection.recv(65536)
            if not data:
                break
            self.connection.sendall(data)
        self.close_connection = True

    def do_GET(self):
        self.read_body()
        path = self.path.split("?")[0]
        self.record({"path": path, "http_method": "GET"})
        if path == "/websocket" and (self.headers.get("Upgrade") or "").lower() == "websocket":
            return self.websocket()
        if path == "/web/version" or path == "/json/version":
            return self.send_json(200, {"version_info": SERVER_VERSION_INFO, "version": "19.0"})
        if path in ("/", "/odoo", "/web"):
            return self.send(303, b"", "text/html; charset=utf-8", [("Location", "/web/login")])
        if path == "/web/login":
            page = b"<!DOCTYPE html><html><head><title>Odoo</title></head><body><form>login</form></body></html>"
            return self.send(200, page, "text/html; charset=utf-8")
        if path.startswith("/json/2/"):
            return self.json2_error(404, UserError("Did you mean POST /json/2/<model>/<method>?"), "werkzeug.exceptions.NotFound")
        self.send(404, b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>", "text/html; charset=utf-8")

    def do_POST(self):
        body = self.read_body()
        path = self.path.split("?")[0]
        try:
            if path.startswith("/xmlrpc/"):
                return self.xmlrpc(path, body)
            if path == "/jsonrpc":
                return self.jsonrpc(body)
            if path.startswith("/web/"):
                return self.web(path, body)
            if path.startswith("/json/2/"):
                return self.json2(path, body)
        except Exception:  # Odoo answers any unexpected error with a 500 page.
            traceback.print_exc()
            return self.send(500, b"<!doctype html><title>500 Internal Server Error</title>", "text/html; charset=utf-8")
        self.record({"path": path, "http_method": "POST"})
        self.send(404, b"<!doctype html><title>404 Not Found</title><h1>Not Found</h1>", "text/html; charset=utf-8")

    # --- XML-RPC ----------------------------------------------------------

    def xmlrpc(self, path, body):
        legacy = not path.startswith("/xmlrpc/2/")
        service = path.rstrip("/").rsplit("/", 1)[-1]
        try:
            params, method = xmlrpc.client.loads(body, use_datetime=True)
        except Exception as error:  # expat or structure errors: Odoo replies with fault 1.
            return self.xmlrpc_fault(legacy, ServerError(f"{type(error).__name__}: {error}"))
        self.record({"path": path, "service": service, "method": method, "params": describe_params(service, method, params)})
        try:
            result = self.dispatch(service, method, [from_wire(p) for p in params])
        except OdooError as error:
            return self.xmlrpc_fault(legacy, error)
        payload = xmlrpc.client.dumps((to_wire(result),), methodresponse=True, allow_none=False)
        self.send(200, payload.encode(), "text/xml; charset=utf-8")

    def xmlrpc_fault(self, legacy, error):
        if legacy:
            if isinstance(error, AccessDenied):
                code = "AccessDenied"
            elif error.xmlrpc_code == 1:
                code = error.message
            else:
                code = f"warning -- {error.name.rsplit('.', 1)[-1]}\n\n{error.message}"
            fault = xmlrpc.client.Fault(code, "")
        else:
            fault = xmlrpc.client.Fault(error.xmlrpc_code, error.message)
        payload = xmlrpc.client.dumps(fault, methodresponse=True, allow_none=False)
        self.send(200, payload.encode(), "text/xml; charset=utf-8")

    # --- JSON-RPC and web routes ------------------------------------------

    def read_json(self, body):
        try:
            request = json.loads(body)
        except ValueError:
            self.send(400, b"<!doctype html><title>400 Bad Request</title>", "text/html; charset=utf-8")
            return None
        if not isinstance(request, dict):
            self.send(400, b"<!doctype html><title>400 Bad Request</title>", "text/html; charset=utf-8")
            return None
        return request

    def jsonrpc_error(self, request_id, error, code=0, message="Odoo Server Error", extra_headers=()):
        # Odoo 19 sends code 0 for every error but session expiry (100) and
        # not-found (404); older releases sent 200.
        data = {"name": error.name, "debug": "", "message": error.message, "arguments": [error.message], "context": {}}
        payload = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message, "data": data}}
        self.send_json(200, payload, extra_headers)

    def jsonrpc(self, body):
        request = self.read_json(body)
        if request is None:
            return
        params = request.get("params") or {}
        service, method, args = params.get("service"), params.get("method"), params.get("args") or []
        self.record({"path": "/jsonrpc", "service": service, "method": method, "params": describe_params(service, method, args)})
        try:
            result = self.dispatch(service, method, args)
        except OdooError as error:
            return self.jsonrpc_error(request.get("id"), error)
        self.send_json(200, {"jsonrpc": "2.0", "id": request.get("id"), "result": to_wire(result)})

    def session_cookie(self):
        cookie = self.headers.get("Cookie") or ""
        match = re.search(r"(?:^|;\s*)session_id=([^;]+)", cookie)
        if match:
            return match.group(1)
        return self.headers.get("X-Openerp-Session-Id")

    def web(self, path, body):
        request = self.read_json(body)
        if request is None:
            return
        params = request.get("params") or {}
        request_id = request.get("id")
        db = self.server.database
        if path == "/web/webclient/version_info":
            cookie = "session_id=" + secrets.token_hex(20) + "; HttpOnly; Path=/"
            return self.send_json(200, {"jsonrpc": "2.0", "id": request_id, "result": VERSION}, [("Set-Cookie", cookie)])
        if path == "/web/session/authenticate":
            self.record({"path": path, "login": params.get("login")})
            uid = db.login(params.get("db"), params.get("login"), params.get("password"))
            if not uid:
                return self.jsonrpc_error(request_id, AccessDenied())
            session = secrets.token_hex(32)
            db.sessions[session] = uid
            cookie = f"session_id={session}; Max-Age=604800; HttpOnly; Path=/"
            result = {"uid": uid, "db": db.name, "username": "admin", "name": "Administrator",
                      "user_context": {"lang": "en_US", "tz": False, "uid": uid},
                      "server_version": "19.0", "server_version_info": SERVER_VERSION_INFO}
            return self.send_json(200, {"jsonrpc": "2.0", "id": request_id, "result": result}, [("Set-Cookie", cookie)])
        session = self.session_cookie()
        if session not in db.sessions:
            error = OdooError("Session expired")
            error.name = "odoo.http.SessionExpiredException"
            return self.jsonrpc_error(None, error, code=100, message="Odoo Session Expired")
        if path == "/web/session/get_session_info":
            return self.send_json(200, {"jsonrpc": "2.0", "id": request_id, "result": {"uid": db.sessions[session], "db": db.name}})
        if path == "/web/session/destroy":
            db.sessions.pop(session, None)
            return self.send_json(200, {"jsonrpc": "2.0", "id": request_id, "result": None})
        if path.startswith("/web/dataset/call_kw") or path.startswith("/web/dataset/call_button"):
            model, method = params.get("model"), params.get("method")
            self.record({"path": path, "model": model, "method": method})
            if model not in MODELS:
                error = OdooError("404 Not Found: The requested URL was not found on the server.")
                error.name = "werkzeug.exceptions.NotFound"
                return self.jsonrpc_error(None, error, code=404, message="404: Not Found")
            try:
                result = db.execute(model, method, params.get("args") or [], params.get("kwargs") or {})
            except OdooError as error:
                return self.jsonrpc_error(request_id, error)
            return self.send_json(200, {"jsonrpc": "2.0", "id": request_id, "result": to_wire(result)})
        self.send(404, b"<!doctype html><title>404 Not Found</title>", "text/html; charset=utf-8")

    # --- JSON-2 -----------------------------------------------------------

    def json2_error(self, status, error, name=None):
        body = {"name": name or error.name, "message": error.message, "arguments": [error.message], "context": {}, "debug": ""}
        headers = [("WWW-Authenticate", "Bearer ")] if status == 401 else []
        self.send_json(status, body, headers)

    def json2(self, path, body):
        parts = path.split("/")
        if len(parts) != 5:
            return self.json2_error(404, UserError("Did you mean POST /json/2/<model>/<method>?"), "werkzeug.exceptions.NotFound")
        model, method = parts[3], parts[4]
        self.record({"path": path, "model": model, "method": method})
        authorization = self.headers.get("Authorization") or ""
        if not authorization.lower().startswith("bearer "):
            return self.json2_error(401, AccessDenied("User not authenticated, use an API Key with a Bearer Authorization header."), "werkzeug.exceptions.Unauthorized")
        try:
            self.server.database.check_api_key(authorization[7:].strip())
        except AccessDenied as error:
            return self.json2_error(401, error, "werkzeug.exceptions.Unauthorized")
        if "json" not in (self.headers.get("Content-Type") or ""):
            return self.json2_error(415, UserError("expected a JSON body"), "werkzeug.exceptions.UnsupportedMediaType")
        try:
            params = json.loads(body or b"{}")
        except ValueError as error:
            return self.json2_error(400, UserError(f"could not parse the body as json: {error}"), "werkzeug.exceptions.BadRequest")
        if model not in MODELS:
            return self.json2_error(404, UserError(f"the model {model!r} does not exist"), "werkzeug.exceptions.NotFound")
        params.pop("context", None)
        ids = params.pop("ids", None)
        args = [ids] if ids is not None else []
        if ids is not None and method in ("search", "search_read", "search_count", "create", "name_search", "fields_get"):
            return self.json2_error(422, UserError(f"cannot call {model}.{method} with ids"), "werkzeug.exceptions.UnprocessableEntity")
        try:
            result = self.server.database.execute(model, method, args, params)
        except OdooError as error:
            return self.json2_error(error.json2_status, error)
        self.send_json(200, to_wire(result))

    # --- services -----------------------------------------------------------

    def dispatch(self, service, method, args):
        db = self.server.database
        if service == "common":
            if method == "version":
                return VERSION
            if method == "about":
                return "See http://openerp.com"
            if method == "login":
                return db.login(*args[:3])
            if method == "authenticate":
                return db.login(*args[:3])
            raise ServerError(f"Method not available {method}")
        if service == "db":
            if method in ("list", "db_list"):
                return [db.name]
            if method == "server_version":
                return "19.0"
            raise AccessDenied()
        if service == "object":
            if method not in ("execute", "execute_kw"):
                raise ServerError(f"Method not available {method}")
            if len(args) < 5:
                raise ServerError("TypeError: missing arguments")
            dbname, uid, credential, model, model_method = args[:5]
            if dbname != db.name:
                raise ServerError(f'FATAL:  database "{dbname}" does not exist')
            if db.check_credential(credential) != uid:
                raise AccessDenied()
            if method == "execute_kw":
                positional = args[5] if len(args) > 5 else []
                keywords = args[6] if len(args) > 6 else {}
                if isinstance(keywords, dict) and "ids" in keywords:
                    # Odoo's call_kw takes record ids from args[0] only and
                    # passes keywords on to the method, which has no `ids`.
                    raise ServerError(f"TypeError: {model_method}() got an unexpected keyword argument 'ids'")
                return db.execute(model, model_method, positional, keywords)
            return db.execute(model, model_method, args[5:], {})
        raise ServerError(f"Unknown service {service}")


def describe_params(service, method, params):
    """Returns what the request log keeps of a call, without credentials."""
    if service == "object" and len(params) >= 5:
        described = {"db": params[0], "uid": params[1], "model": params[3], "model_method": params[4],
                     "credential_sha256_prefix": sha_prefix(params[2])}
        if method == "execute_kw" and params[4] in ("read", "search_read"):
            described["fields"] = requested_fields(params)
        if method == "execute" and params[4] in ("read", "search_read"):
            described["fields"] = params[6] if len(params) > 6 else None
        return described
    if service == "common" and method in ("login", "authenticate") and len(params) >= 3:
        return {"db": params[0], "login": params[1], "credential_sha256_prefix": sha_prefix(params[2])}
    return {}


def requested_fields(params):
    """Returns the field list of an execute_kw read: args[1], else kwargs["fields"]."""
    positional = params[5] if len(params) > 5 and isinstance(params[5], list) else []
    keywords = params[6] if len(params) > 6 and isinstance(params[6], dict) else {}
    return positional[1] if len(positional) > 1 else keywords.get("fields")


def sha_prefix(value):
    import hashlib
    return hashlib.sha256(str(value).encode()).hexdigest()[:12]


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class IPv6Server(Server):
    """A Server on an IPv6 address. On the unspecified address ``::`` it also
    accepts IPv4 connections, as IPv4-mapped addresses, whatever the
    net.ipv6.bindv6only sysctl sets as the default."""

    address_family = socket.AF_INET6

    def server_bind(self):
        if self.server_address[0] == "::":
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8069",
                        help="address and port to listen on: HOST:PORT, or [ADDRESS]:PORT for IPv6. "
                             "[::]:PORT also accepts IPv4 connections")
    parser.add_argument("--db", default="odoo19", help="database name")
    parser.add_argument("--password", default="admin", help="password of the admin user (uid 2)")
    parser.add_argument("--api-key", action="append", default=[], help="an API key of the admin user (repeatable)")
    parser.add_argument("--request-log", help="append one JSON line per received call to this file")
    parser.add_argument("--ready-file", help="write the port listened on to this file once the server listens")
    parser.add_argument("--keep-alive", action="store_true",
                        help="keep each connection open after a response for the client's next request (Odoo's "
                             "werkzeug server closes it). Each request-log line then also has 'connection', the "
                             "number of the TCP connection the call came on, from 1 in accept order")
    parser.add_argument("--keep-alive-timeout", type=float, metavar="SECONDS",
                        help="with --keep-alive, close a connection after SECONDS without a byte from the client "
                             "(default: keep it until the client closes it)")
    parser.add_argument("--verbose", action="store_true")
    options = parser.parse_args()
    if options.keep_alive_timeout is not None:
        if not options.keep_alive:
            parser.error("--keep-alive-timeout requires --keep-alive")
        if not options.keep_alive_timeout > 0:
            parser.error(f"invalid --keep-alive-timeout {options.keep_alive_timeout}: expected a number of seconds above 0")

    host, _, port = options.listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    server_class = IPv6Server if ":" in host else Server
    server = server_class((host, int(port)), Handler)
    server.database = Database(options.db, options.password, options.api_key)
    server.request_log = open(options.request_log, "a") if options.request_log else None
    server.log_lock = threading.Lock()
    server.verbose = options.verbose
    server.keep_alive = options.keep_alive
    server.keep_alive_timeout = options.keep_alive_timeout
    server.connection_numbers = itertools.count(1)
    server.connection_lock = threading.Lock()
    if options.ready_file:
        # The port, so that a caller may ask for port 0 and learn which one
        # the system chose. It is written to a temporary name first, so the
        # file never contains half a number.
        with open(options.ready_file + ".tmp", "w") as ready:
            ready.write(str(server.server_address[1]))
        os.replace(options.ready_file + ".tmp", options.ready_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
