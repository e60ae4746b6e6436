"""Calls Odoo through one client library with a credential that may be a
scoped odoogate token, as an integration in enforce mode does.

Usage: enforce_client.py LIBRARY HOST PORT CREDENTIAL [SCENARIO]
LIBRARY is xmlrpc (Python's xmlrpc.client), odoorpc, or odoolib-xmlrpc,
odoolib-jsonrpc, odoolib-json2 (odoo-client-lib in that mode).

Prints one JSON line per step, each with the result or the exception type
the library raised. SCENARIO is one of:
- basic (the default): login (with the uid Odoo answered), an allowed call
  (res.partner.search_read) and a denied one (res.partner.unlink);
- policy: the steps in POLICY_STEPS, which a test's rules allow or refuse
  by time window, record count, written field, guarded call, rate limit
  and field narrowing; xmlrpc and odoorpc also read through the positional
  object.execute.

Four more modes test the connection itself rather than a library:
- connect: open one TCP connection and print the errno on failure;
- duplicate-content-length: send one JSON-RPC call with two
  Content-Length headers and print the response's status line;
- loop: call res.partner.search_count over a new connection every 50 ms,
  each with a 1 second timeout, and print one line per attempt until
  killed;
- keep-alive (usage: enforce_client.py keep-alive HOST PORT CREDENTIAL
  CONNECTIONS ROUNDS PAUSE): open CONNECTIONS kept-alive connections, and in
  each of ROUNDS rounds call res.partner.read on every connection in turn,
  with PAUSE seconds between rounds. Connection N reads partner N + 1 in
  the first round and the next of the ids 1, 2 and 3 in each later one.
  Prints one line per call with the connection's index and local port,
  the id requested and the ids returned.
"""

import http.client
import json
import socket
import sys
import time
import xmlrpc.client

library, host, port, credential = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
scenario = sys.argv[5] if len(sys.argv) > 5 else "basic"
DB = "odoo19"

# (step, model, method, positional args, keyword args). JSON-2 has no
# positional arguments: it sends the keyword arguments, with the first
# positional one under its parameter name.
POLICY_STEPS = [
    ("in_hours", "res.partner", "search_read", [[]], {"fields": ["name"]}),
    ("out_of_hours", "res.partner", "search_count", [[]], {}),
    ("write_two", "res.partner", "write", [[1, 2], {"phone": "+32 2 555 01 01"}], {}),
    ("write_three", "res.partner", "write", [[1, 2, 3], {"phone": "+32 2 555 01 02"}], {}),
    ("write_email", "res.partner", "write", [[1], {"email": "office@example.com"}], {}),
    ("write_groups", "res.users", "write", [[2], {"groups_id": [[4, 1]]}], {}),
    ("rate_1", "res.partner", "name_search", ["Admin"], {}),
    ("rate_2", "res.partner", "name_search", ["Admin"], {}),
    ("rate_3", "res.partner", "name_search", ["Admin"], {}),
    ("narrowed", "res.partner", "read", [[1]], {"fields": ["name", "email"]}),
]
JSON2_FIRST_PARAMETER = {"search_read": "domain", "search_count": "domain", "write": "ids", "read": "ids",
                         "name_search": "name"}


def json2_kwargs(method, args, kwargs):
    """The JSON-2 body of a call given as positional and keyword arguments."""
    named = dict(kwargs)
    named[JSON2_FIRST_PARAMETER[method]] = args[0]
    if method == "write":
        named["vals"] = args[1]
    return named


def run_policy(call, execute=None):
    """Runs POLICY_STEPS through call(model, method, args, kwargs), and
    execute(model, method, *args), the positional object.execute, when the
    library has it."""
    for step, model, method, args, kwargs in POLICY_STEPS:
        report(step, lambda: shape(call(model, method, args, kwargs)))
    if execute is not None:
        report("narrowed_execute", lambda: shape(execute("res.partner", "read", [1, 2], ["name", "email"])))


def shape(result):
    """Keeps what the test checks of a result: numbers and booleans as
    they are, and the field names of read rows."""
    if isinstance(result, list) and result and isinstance(result[0], dict):
        return {"rows": len(result), "fields": sorted(result[0])}
    if isinstance(result, dict):  # odoo-client-lib's JSON-2 read of one record
        return {"rows": 1, "fields": sorted(result)}
    if isinstance(result, list):
        return len(result)
    return result
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
    if scenario == "policy":
        run_policy(lambda model, method, args, kwargs: models.execute_kw(DB, uid, credential, model, method, args, kwargs),
                   lambda model, method, *args: models.execute(DB, uid, credential, model, method, *args))
        return
    report("allowed", lambda: len(models.execute_kw(
        DB, uid, credential, "res.partner", "search_read", [[]], {"fields": ["name"]})))
    report("denied", lambda: models.execute_kw(DB, uid, credential, "res.partner", "unlink", [[1]]))


def odoorpc_client():
    import odoorpc

    odoo = odoorpc.ODOO(host, port=port)
    if report("login", lambda: odoo.login(DB, "admin", credential) or odoo.env.uid) is None:
        return
    if scenario == "policy":
        run_policy(odoo.execute_kw, odoo.execute)
        return
    partners = odoo.env["res.partner"]
    report("allowed", lambda: len(partners.search_read([], ["name"])))
    report("denied", lambda: partners.unlink([1]))


def odoolib_client(protocol):
    import odoolib

    connection = odoolib.get_connection(hostname=host, port=port, protocol=protocol, database=DB,
                                        login="admin", password=credential)
    partners = connection.get_model("res.partner")

    def call(model, method, args, kwargs):
        proxy = getattr(connection.get_model(model), method)
        if protocol == "json2":
            return proxy(**json2_kwargs(method, args, kwargs))
        return proxy(*args, **kwargs)

    if protocol == "json2":
        if scenario == "policy":
            run_policy(call)
            return
        report("allowed", lambda: len(partners.search_read(domain=[], fields=["name"])))
        report("denied", lambda: partners.unlink(ids=[1]))
        return
    if report("login", lambda: connection.check_login() or connection.user_id) is None:
        return
    if scenario == "policy":
        run_policy(call)
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


def read_body(record_id):
    return json.dumps({"jsonrpc": "2.0", "method": "call", "id": record_id, "params": {
        "service": "object", "method": "execute_kw",
        "args": [DB, 2, credential, "res.partner", "read", [[record_id]], {"fields": ["name"]}]}}).encode()


def keep_alive(connections, rounds, pause):
    clients = [http.client.HTTPConnection(host, port, timeout=10) for _ in range(connections)]
    for round_index in range(rounds):
        if round_index:
            time.sleep(pause)
        for index, client in enumerate(clients):
            record_id = (index + round_index) % 3 + 1
            line = {"step": "keep-alive", "connection": index, "round": round_index, "record_id": record_id}
            try:
                client.request("POST", "/jsonrpc", read_body(record_id), {"Content-Type": "application/json"})
                # http.client opens a new connection for a request after a
                # close, so the port names the connection the call went on.
                line["local_port"] = client.sock.getsockname()[1]
                response = client.getresponse()
                answer = json.loads(response.read())
                line["status"] = response.status
                line["connection_header"] = response.getheader("Connection")
                line["ok"] = "result" in answer
                line["result"] = [row["id"] for row in answer.get("result") or []]
            except (OSError, http.client.HTTPException, ValueError) as error:
                line["ok"] = False
                line["error"] = f"{type(error).__name__}: {error}"
            print(json.dumps(line), flush=True)
    for client in clients:
        client.close()


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
elif library == "keep-alive":
    keep_alive(int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]))
elif library == "xmlrpc":
    xmlrpc_stdlib()
elif library == "odoorpc":
    odoorpc_client()
elif library.startswith("odoolib-"):
    odoolib_client(library.removeprefix("odoolib-"))
else:
    sys.exit(f"unknown library {library!r}: expected xmlrpc, odoorpc, odoolib-xmlrpc, odoolib-jsonrpc or odoolib-json2")
