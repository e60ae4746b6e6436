"""Calls Odoo through one client library with a credential that may be a
scoped odoogate token, as an integration in enforce mode does.

Usage: enforce_client.py LIBRARY HOST PORT CREDENTIAL
LIBRARY is xmlrpc (Python's xmlrpc.client), odoorpc, or odoolib-xmlrpc,
odoolib-jsonrpc, odoolib-json2 (odoo-client-lib in that mode).

Prints one JSON line per step: login (with the uid Odoo answered), an
allowed call (res.partner.search_read) and a denied one
(res.partner.unlink), each with the exception type the library raised.

Three more modes test the connection itself rather than a library:
- connect: open one TCP connection and print the errno on failure;
- duplicate-content-length: send one JSON-RPC call with two
  Content-Length headers and print the response's status line;
- loop: call res.partner.search_count over a new connection every 50 ms,
  each with a 1 second timeout, and print one line per attempt until
  killed.
"""

import http.client
import json
import socket
import sys
import time
import xmlrpc.client

library, host, port, credential = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
DB = "odoo19"
URL = f"http://{host}:{port}"


def report(step, function):
    """Runs one step and prints its result or the error the library raised."""
    try:
        result = function()
        print(json.dumps({"step": step, "ok": True, "result": result}))
        return result
    except xmlrpc.client.Fault as fault:
        print(json.dumps({"step": step, "ok": False, "error": "xmlrpc.client.Fault",
                          "fault_code": fault.faultCode, "message": fault.faultString}))
    except Exception as error:  # The type is what the test checks.
        entry = {"step": step, "ok": False, "error": f"{type(error).__module__}.{type(error).__name__}",
                 "message": str(error)[:300]}
        info = getattr(error, "info", None)
        if isinstance(info, dict):
            entry["odoo_error"] = info.get("data", {}).get("name")
        print(json.dumps(entry))
    return None


def xmlrpc_stdlib():
    common = xmlrpc.client.ServerProxy(f"{URL}/xmlrpc/2/common")
    models = xmlrpc.client.ServerProxy(f"{URL}/xmlrpc/2/object")
    uid = report("login", lambda: common.login(DB, "admin", credential))
    if not uid:
        return
    report("allowed", lambda: len(models.execute_kw(
        DB, uid, credential, "res.partner", "search_read", [[]], {"fields": ["name"]})))
    report("denied", lambda: models.execute_kw(DB, uid, credential, "res.partner", "unlink", [[1]]))


def odoorpc_client():
    import odoorpc

    odoo = odoorpc.ODOO(host, port=port)
    if report("login", lambda: odoo.login(DB, "admin", credential) or odoo.env.uid) is None:
        return
    partners = odoo.env["res.partner"]
    report("allowed", lambda: len(partners.search_read([], ["name"])))
    report("denied", lambda: partners.unlink([1]))


def odoolib_client(protocol):
    import odoolib

    connection = odoolib.get_connection(hostname=host, port=port, protocol=protocol, database=DB,
                                        login="admin", password=credential)
    partners = connection.get_model("res.partner")
    if protocol == "json2":
        report("allowed", lambda: len(partners.search_read(domain=[], fields=["name"])))
        report("denied", lambda: partners.unlink(ids=[1]))
        return
    if report("login", lambda: connection.check_login() or connection.user_id) is None:
        return
    report("allowed", lambda: len(partners.search_read([], ["name"])))
    report("denied", lambda: partners.unlink([1]))


def jsonrpc_body():
    return json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": {
        "service": "object", "method": "execute_kw",
        "args": [DB, 2, credential, "res.partner", "search_count", [[]]]}}).encode()


def connect():
    try:
        socket.create_connection((host, port), timeout=5).close()
        print(json.dumps({"step": "connect", "ok": True}))
    except OSError as error:
        print(json.dumps({"step": "connect", "ok": False, "errno": error.errno, "message": str(error)}))


def duplicate_content_length():
    body = jsonrpc_body()
    head = (f"POST /jsonrpc HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    print(json.dumps({"step": "duplicate-content-length", "ok": True,
                      "status_line": response.split(b"\r\n", 1)[0].decode()}))


def loop():
    attempt = 0
    while True:
        attempt += 1
        try:
            connection = http.client.HTTPConnection(host, port, timeout=1)
            connection.request("POST", "/jsonrpc", jsonrpc_body(), {"Content-Type": "application/json"})
            answer = json.loads(connection.getresponse().read())
            connection.close()
            print(json.dumps({"attempt": attempt, "ok": "result" in answer}), flush=True)
        except OSError as error:
            print(json.dumps({"attempt": attempt, "ok": False, "error": type(error).__name__}), flush=True)
        time.sleep(0.05)


if library == "connect":
    connect()
elif library == "duplicate-content-length":
    duplicate_content_length()
elif library == "loop":
    loop()
elif library == "xmlrpc":
    xmlrpc_stdlib()
elif library == "odoorpc":
    odoorpc_client()
elif library.startswith("odoolib-"):
    odoolib_client(library.removeprefix("odoolib-"))
else:
    sys.exit(f"unknown library {library!r}: expected xmlrpc, odoorpc, odoolib-xmlrpc, odoolib-jsonrpc or odoolib-json2")
