"""Calls through OdooRPC (JSON-RPC, positional `object.execute`).

Usage: odoorpc_client.py HOST PORT PASSWORD
"""

import json
import sys

import odoorpc

host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
odoo = odoorpc.ODOO(host, port=port)
odoo.login("odoo19", "admin", password)
print(json.dumps({"call": "login", "ok": odoo.env.uid == 2}))
partners = odoo.env["res.partner"]
ids = partners.search([("name", "ilike", "a")])
print(json.dumps({"call": "res.partner.search", "ok": True, "count": len(ids)}))
records = partners.read(ids, ["name"])
print(json.dumps({"call": "res.partner.read", "ok": len(records) == len(ids)}))
lead = odoo.env["crm.lead"].create({"name": "From OdooRPC", "email_from": "rpc@example.com"})
print(json.dumps({"call": "crm.lead.create", "ok": isinstance(lead, int)}))
