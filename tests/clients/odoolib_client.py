"""Calls through odoo-client-lib in xmlrpc, jsonrpc or json2 mode.

Usage: odoolib_client.py HOST PORT PROTOCOL CREDENTIAL
The json2 mode sends the credential as a bearer API key; the other modes
send it in the password slot after `common.login`.
"""

import json
import sys

import odoolib

host, port, protocol, credential = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
connection = odoolib.get_connection(hostname=host, port=port, protocol=protocol, database="odoo19",
                                    login="admin", password=credential)
partners = connection.get_model("res.partner")
if protocol == "json2":
    found = partners.search_read(domain=[], fields=["name"], limit=3)
    print(json.dumps({"call": "res.partner.search_read", "ok": len(found) > 0}))
    created = partners.create(vals_list=[{"name": "From odoolib json2", "email": "j2@example.com"}])
    print(json.dumps({"call": "res.partner.create", "ok": isinstance(created, list)}))
    try:
        partners.unlink(ids=created)
        print(json.dumps({"call": "res.partner.unlink", "ok": True}))
    except ValueError as error:
        print(json.dumps({"call": "res.partner.unlink", "ok": False, "error": str(error)[:80]}))
else:
    found = partners.search_read([("id", "in", [1, 2, 3])], ["name"])
    print(json.dumps({"call": "res.partner.search_read", "ok": len(found) == 3}))
    created = partners.create({"name": f"From odoolib {protocol}"})
    print(json.dumps({"call": "res.partner.create", "ok": isinstance(created, int)}))
    partners.write([created], {"email": "lib@example.com"})
    print(json.dumps({"call": "res.partner.write", "ok": True}))
