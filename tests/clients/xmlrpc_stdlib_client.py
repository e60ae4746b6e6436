"""Calls through Python's xmlrpc.client, as most Odoo scripts do.

Usage: xmlrpc_stdlib_client.py URL CREDENTIAL
Prints one JSON line per call: {"call": ..., "ok": bool, "error": ...}.
"""

import json
import sys
import xmlrpc.client

url, credential = sys.argv[1], sys.argv[2]
DB = "odoo19"


def attempt(name, function):
    try:
        result = function()
        print(json.dumps({"call": name, "ok": True, "result": repr(result)[:80]}))
    except xmlrpc.client.Fault as fault:
        print(json.dumps({"call": name, "ok": False, "error": f"fault {fault.faultCode}"}))


common = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/common")
models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object", allow_none=True)
legacy = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/object")

attempt("common.version", common.version)
uid = common.authenticate(DB, "admin", credential, {})
print(json.dumps({"call": "common.authenticate", "ok": uid == 2}))
attempt("res.partner.search_read", lambda: models.execute_kw(
    DB, uid, credential, "res.partner", "search_read", [[["is_company", "=", True]]],
    {"fields": ["name", "email"], "limit": 5, "context": {"lang": "en_US"}}))
attempt("res.partner.category.create", lambda: models.execute_kw(
    DB, uid, credential, "res.partner.category", "create", [{"name": "Zoë & <Ŝtrange> ]]>"}]))
attempt("res.partner.write", lambda: models.execute_kw(
    DB, uid, credential, "res.partner", "write", [[3], {"comment": None, "category_id": [(6, 0, [])]}]))
attempt("res.partner.unlink", lambda: models.execute_kw(DB, uid, credential, "res.partner", "unlink", [[1, 2]]))
attempt("legacy res.partner.search", lambda: legacy.execute(DB, uid, credential, "res.partner", "search", []))
