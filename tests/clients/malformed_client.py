"""Sends malformed bodies with raw sockets, then one valid call.

Usage: malformed_client.py HOST PORT PASSWORD
Each body goes on its own connection, as odoogate must keep decoding the
other connections whatever one of them sends.
"""

import json
import socket
import sys
import xmlrpc.client

host, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def send(path, body, content_type):
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(request)
        reply = b""
        while chunk := connection.recv(65536):
            reply += chunk
    status = reply.split(b" ", 2)[1].decode() if reply else "none"
    print(json.dumps({"call": path, "status": status}))


send("/xmlrpc/2/object", b"<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params><param>", "text/xml")
send("/jsonrpc", b'{"jsonrpc": "2.0", "method": "call", "params": {"service": "object", "method": "execute_kw", "args": ["odoo19", 2', "application/json")
doctype = (
    b"<?xml version='1.0'?><!DOCTYPE methodCall [<!ENTITY m \"unlink\">]>"
    b"<methodCall><methodName>execute_kw</methodName><params>"
    b"<param><value><string>odoo19</string></value></param>"
    b"<param><value><int>2</int></value></param>"
    b"<param><value><string>x</string></value></param>"
    b"<param><value><string>res.partner</string></value></param>"
    b"<param><value><string>&m;</string></value></param>"
    b"<param><value><array><data><value><array><data><value><int>3</int></value></data></array></value></data></array></value></param>"
    b"</params></methodCall>"
)
send("/xmlrpc/2/object", doctype, "text/xml")
models = xmlrpc.client.ServerProxy(f"http://{host}:{port}/xmlrpc/2/object")
count = models.execute_kw("odoo19", 2, password, "res.partner", "search_count", [[]])
print(json.dumps({"call": "res.partner.search_count", "ok": isinstance(count, int)}))
