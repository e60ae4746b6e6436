"""Creates partners whose comment is SIZE bytes, then reads them back, so
both the request and the response carry large bodies.

Usage: large_body_client.py URL PASSWORD SIZE...
"""

import json
import sys
import xmlrpc.client

url, password, sizes = sys.argv[1], sys.argv[2], [int(size) for size in sys.argv[3:]]
models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object")
for size in sizes:
    comment = ("odoogate " * (size // 9 + 1))[:size]
    partner = models.execute_kw("odoo19", 2, password, "res.partner", "create", [{"name": f"large {size}", "comment": comment}])
    [record] = models.execute_kw("odoo19", 2, password, "res.partner", "read", [[partner]], {"fields": ["comment"]})
    print(json.dumps({"call": f"create+read {size}", "ok": record["comment"] == comment}))
