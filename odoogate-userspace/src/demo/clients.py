"""The demo's integrations: each one talks to the Odoo-like upstream the way
a real integration of its kind would, with Python's standard library only.

Usage: clients.py SCENARIO URL [--api-key KEY] [--source-ip IP] [--enforce]
Each scenario prints one line per call and exits non-zero if a call that the
upstream should accept fails, or, with --enforce, if a call that odoogate
should deny goes through.
"""

import argparse
import http.client
import json
import sys
import urllib.parse
import xmlrpc.client

DB = "odoo19"
PASSWORD = "admin"


class SourceTransport(xmlrpc.client.Transport):
    """An XML-RPC transport that connects from a chosen source address."""

    def __init__(self, source_ip):
        super().__init__()
        self.source_ip = source_ip

    def make_connection(self, host):
        connection = super().make_connection(host)
        if self.source_ip:
            connection.source_address = (self.source_ip, 0)
        return connection


def post_json(url, path, payload, headers=None, source_ip=None):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10,
                                            source_address=(source_ip, 0) if source_ip else None)
    body = json.dumps(payload).encode()
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    connection.request("POST", path, body, all_headers)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data) if data else None


def jsonrpc(url, service, method, args, source_ip=None):
    status, reply = post_json(url, "/jsonrpc", {"jsonrpc": "2.0", "method": "call", "id": 1,
                                                "params": {"service": service, "method": method, "args": args}},
                              source_ip=source_ip)
    if "error" in reply:
        raise RuntimeError(reply["error"]["data"]["name"])
    return reply["result"]


def outside(enforce):
    """Returns the note on a call outside the integration's scopes."""
    return "outside its scopes: enforce mode denies it" if enforce else "outside its scopes: observe mode lets it through"


def report(label, call, meaning=None, denied=False):
    """Prints one call's result and returns whether it went as expected.
    `meaning` names a result that is a number, such as the uid of a login or
    the id of a created record. With `denied` the call is expected to fail."""
    try:
        result = call()
        if denied:
            print(f"  {label}: went through, but odoogate should have denied it")
            return False
        if isinstance(result, list):
            summary = f"{len(result)} records"
        elif meaning:
            summary = f"{meaning} {json.dumps(result)}"
        else:
            summary = json.dumps(result)
        print(f"  {label}: ok ({summary})")
        return True
    except (xmlrpc.client.Fault, RuntimeError) as error:
        if denied:
            print(f"  {label}: denied ({error})")
            return True
        print(f"  {label}: Odoo error {error}")
        return False


def mcp_assistant(url, api_key, source_ip, enforce):
    """Reads as an AI assistant over MCP does (JSON-2 and XML-RPC): with its
    own API key, or in the enforce stage with a scoped token."""
    headers = {"Authorization": f"bearer {api_key}", "X-Odoo-Database": DB}
    ok = True
    status, partners = post_json(url, "/json/2/res.partner/search_read",
                                 {"domain": [], "fields": ["name", "email"], "limit": 5}, headers)
    print(f"  json2 res.partner.search_read: HTTP {status}, {len(partners or [])} partners")
    ok &= status == 200
    models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object", transport=SourceTransport(source_ip))
    ok &= report("xmlrpc crm.lead.search_count", lambda: models.execute_kw(DB, 2, api_key, "crm.lead", "search_count", [[]]), "count")
    # Not in its scopes: observe mode records it as would_deny, and enforce
    # mode responds 403 itself.
    status, _ = post_json(url, "/json/2/res.partner/unlink", {"ids": [3]}, headers)
    print(f"  json2 res.partner.unlink: HTTP {status} ({outside(enforce)})")
    if enforce:
        ok &= status == 403
    return ok


def website_form(url, api_key, source_ip, enforce):
    """The public website form: creates leads over JSON-RPC from its own host."""
    uid = jsonrpc(url, "common", "login", [DB, "admin", PASSWORD], source_ip)
    ok = report("jsonrpc common.login", lambda: uid, "uid")
    ok &= report("jsonrpc crm.lead.create", lambda: jsonrpc(
        url, "object", "execute_kw",
        [DB, uid, PASSWORD, "crm.lead", "create", [{"name": "Website inquiry", "email_from": "visitor@example.com"}]],
        source_ip), "new record id")
    outside_call = report(f"jsonrpc res.partner.search_read ({outside(enforce)})", lambda: jsonrpc(
        url, "object", "execute_kw", [DB, uid, PASSWORD, "res.partner", "search_read", [[]], {"fields": ["email"]}], source_ip),
        denied=enforce)
    if enforce:
        ok &= outside_call
    return ok


def stats_sync(url, api_key, source_ip, enforce):
    """A nightly sync run by a systemd timer: writes statistics over XML-RPC."""
    common = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/common")
    uid = common.authenticate(DB, "admin", PASSWORD, {})
    ok = report("xmlrpc common.authenticate", lambda: uid, "uid")
    models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object")
    ok &= report("xmlrpc x_saas_stat.create", lambda: models.execute_kw(
        DB, uid, PASSWORD, "x_saas_stat", "create", [{"x_name": "active_users", "x_value": 42.0}]), "new record id")
    ok &= report("xmlrpc x_saas_stat.search_read", lambda: models.execute_kw(
        DB, uid, PASSWORD, "x_saas_stat", "search_read", [[]], {"fields": ["x_name", "x_value"]}))
    return ok


def unknown_script(url, api_key, source_ip, enforce):
    """A script nobody declared: it matches no integration."""
    models = xmlrpc.client.ServerProxy(f"{url}/xmlrpc/2/object", transport=SourceTransport(source_ip))
    label = "xmlrpc res.partner.search (unidentified: enforce mode denies it)" if enforce else "xmlrpc res.partner.search"
    return report(label, lambda: models.execute_kw(DB, 2, PASSWORD, "res.partner", "search", [[]]), denied=enforce)


SCENARIOS = {
    "mcp-assistant": mcp_assistant,
    "website-form": website_form,
    "stats-sync": stats_sync,
    "unknown-script": unknown_script,
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("url")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--source-ip", default=None)
    parser.add_argument("--enforce", action="store_true")
    options = parser.parse_args()
    print(f"{options.scenario}:")
    ok = SCENARIOS[options.scenario](options.url, options.api_key, options.source_ip, options.enforce)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
