"""Uses the web client's session routes, as browser-like integrations do.

Usage: web_session_client.py URL login SESSION_FILE
       web_session_client.py URL use SESSION_FILE
`login` authenticates, stores the session id in SESSION_FILE and reads
partners; `use` reuses that session from another process, logs out, and
tries once more with the ended session.
"""

import json
import sys
import urllib.request

url, mode, session_file = sys.argv[1], sys.argv[2], sys.argv[3]


def post(path, params, session=None):
    body = json.dumps({"jsonrpc": "2.0", "method": "call", "id": 1, "params": params}).encode()
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
    if session:
        request.add_header("Cookie", f"session_id={session}")
    with urllib.request.urlopen(request, timeout=10) as response:
        cookie = response.headers.get("Set-Cookie") or ""
        return json.loads(response.read()), cookie


def call_kw(model, method, args, kwargs, session):
    reply, _ = post("/web/dataset/call_kw", {"model": model, "method": method, "args": args, "kwargs": kwargs}, session)
    return reply


if mode == "login":
    reply, cookie = post("/web/session/authenticate", {"db": "odoo19", "login": "admin", "password": "admin"})
    session = cookie.split("session_id=", 1)[1].split(";", 1)[0]
    with open(session_file, "w") as handle:
        handle.write(session)
    print(json.dumps({"call": "authenticate", "ok": reply["result"]["uid"] == 2}))
    reply = call_kw("res.partner", "search_read", [[]], {"fields": ["name"], "limit": 2}, session)
    print(json.dumps({"call": "search_read", "ok": "result" in reply}))
else:
    with open(session_file) as handle:
        session = handle.read().strip()
    reply = call_kw("res.partner", "name_search", [], {"name": "Admin", "limit": 5}, session)
    print(json.dumps({"call": "name_search", "ok": "result" in reply}))
    reply, _ = post("/web/session/destroy", {}, session)
    print(json.dumps({"call": "destroy", "ok": "result" in reply}))
    reply = call_kw("res.partner", "search_count", [[]], {}, session)
    print(json.dumps({"call": "search_count after logout", "ok": "error" in reply}))
