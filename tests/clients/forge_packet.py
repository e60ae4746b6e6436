"""Sends one crafted TCP packet that observe mode must not read as a
normal segment, as a client on the same link could.

Usage: forge_packet.py KIND INTERFACE SERVER_IP SERVER_PORT CLIENT_IP

KIND is one of:
- spoofed-server: an ACK with the server's address as its source. The
  server's kernel drops it, because it is addressed to the client.
- first-fragment: the first fragment of a fragmented IPv4 packet from the
  client to the server's port. The rest never comes, so the server's
  kernel drops it when its reassembly times out.
- ipv6-bad-version: an IPv6 frame whose IP header has version 4, with a
  TCP segment from the client to the server's port (SERVER_IP and
  CLIENT_IP are IPv6 addresses). The kernel drops it for its version.
- ipv6-extension-headers: a whole JSON-RPC request (`res.partner`
  `search_read`) from the client's port 40998, in an IPv6 packet with an
  atomic fragment header and five Destination Options headers (one PadN
  option each) before the TCP header. The server's kernel drops it,
  because TCP takes no segment from a broadcast frame, but the capture
  must read it.
- replayed-request: a whole JSON-RPC request (`res.partner` `search_read`)
  in one data segment from the client to the server's port, as a replay of
  a segment of a connection that has closed. The server has no socket for
  it, so its kernel replies with a RST and never acknowledges the bytes.

The first two frames go out of INTERFACE to the broadcast MAC address, so
they need no neighbour lookup, and the TC ingress program on the server's
side reads them before the kernel's checks. The replayed request goes to
the server's MAC address, because TCP drops segments that came in a
broadcast frame without replying to them. Prints one JSON line with the
bytes sent.
"""

import json
import socket
import struct
import sys

kind, interface, server_ip, server_port, client_ip = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
CLIENT_PORT = 40999


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_segment(source, destination, source_port, destination_port, payload, flags=0x10):
    """Returns a segment with `flags` (ACK by default), `payload` and a
    valid checksum."""
    header = struct.pack("!HHIIBBHHH", source_port, destination_port, 1000, 2000, 5 << 4, flags, 65535, 0, 0)
    pseudo = source + destination + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(header) + len(payload))
    header = header[:16] + struct.pack("!H", checksum(pseudo + header + payload)) + header[18:]
    return header + payload


def ipv4_packet(source, destination, fragment_field, body):
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, fragment_field, 64, socket.IPPROTO_TCP, 0, source, destination)
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + body


def server_mac():
    """Returns the server's MAC address from the neighbour table, after a
    connection to the server's port has put it there."""
    socket.create_connection((server_ip, server_port), timeout=5).close()
    with open("/proc/net/arp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[0] == server_ip and fields[3] != "00:00:00:00:00:00":
                return bytes.fromhex(fields[3].replace(":", ""))
    sys.exit(f"no neighbour entry for {server_ip} in /proc/net/arp")


def jsonrpc_request():
    body = json.dumps({
        "jsonrpc": "2.0", "method": "call", "id": 1,
        "params": {"service": "object", "method": "execute_kw",
                   "args": ["odoo", 2, "replayed", "res.partner", "search_read", [[]]]},
    }).encode()
    host = f"[{server_ip}]" if ":" in server_ip else server_ip
    head = f"POST /jsonrpc HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def ipv6_packet(source, destination, body, version, next_header=socket.IPPROTO_TCP):
    first_word = version << 28
    return struct.pack("!IHBB16s16s", first_word, len(body), next_header, 64, source, destination) + body


family = socket.AF_INET6 if kind.startswith("ipv6-") else socket.AF_INET
server, client = socket.inet_pton(family, server_ip), socket.inet_pton(family, client_ip)
destination_mac = b"\xff" * 6
ethertype = 0x0800
if kind == "spoofed-server":
    packet = ipv4_packet(server, client, 0, tcp_segment(server, client, server_port, CLIENT_PORT, b""))
elif kind == "first-fragment":
    segment = tcp_segment(client, server, CLIENT_PORT, server_port, b"POST /jsonrpc HTTP/1.1\r\n" * 4)
    # More fragments (0x2000) at offset 0: only the first 64 bytes go.
    packet = ipv4_packet(client, server, 0x2000, segment[:64])
elif kind == "replayed-request":
    # ACK and PSH, as the last segment of a request goes.
    packet = ipv4_packet(client, server, 0, tcp_segment(client, server, CLIENT_PORT, server_port, jsonrpc_request(), 0x18))
    destination_mac = server_mac()
elif kind == "ipv6-bad-version":
    # The checksum does not matter: the kernel drops the packet first.
    segment = tcp_segment(client, server, CLIENT_PORT, server_port, b"POST /jsonrpc HTTP/1.1\r\n", 0x18)
    packet = ipv6_packet(client, server, segment, 4)
    ethertype = 0x86DD
elif kind == "ipv6-extension-headers":
    segment = tcp_segment(client, server, 40998, server_port, jsonrpc_request(), 0x18)
    # Each Destination Options header: next header, length 0 (8 bytes),
    # then PadN (type 1) over the 4 bytes left.
    options = b"".join(struct.pack("!BBBB4x", next_header, 0, 1, 4) for next_header in [60, 60, 60, 60, socket.IPPROTO_TCP])
    # An atomic fragment: offset 0 and no M flag.
    fragment = struct.pack("!BBHI", 60, 0, 0, 1)
    packet = ipv6_packet(client, server, fragment + options + segment, 6, next_header=44)
    ethertype = 0x86DD
else:
    sys.exit(
        f"unknown kind {kind!r}: use spoofed-server, first-fragment, replayed-request, ipv6-bad-version "
        "or ipv6-extension-headers"
    )

with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
    raw.bind((interface, 0))
    own_mac = raw.getsockname()[4]
    sent = raw.send(destination_mac + own_mac + struct.pack("!H", ethertype) + packet)
print(json.dumps({"sent": sent}))
