"""Sends one TCP segment forged with the server's address, as a client on
the same link could, to check that observe mode ignores it.

Usage: forge_server_segment.py INTERFACE SERVER_IP SERVER_PORT CLIENT_IP

The frame goes out of INTERFACE to the broadcast MAC address, so it needs
no neighbour lookup. The server's kernel drops it (it is addressed to the
client), but the TC ingress program on the server's side sees it first.
Prints one JSON line with the bytes sent.
"""

import json
import socket
import struct
import sys

interface, server_ip, server_port, client_ip = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


source, destination = socket.inet_aton(server_ip), socket.inet_aton(client_ip)
# An ACK from the server's port to an arbitrary client port.
tcp = struct.pack("!HHIIBBHHH", server_port, 40999, 1000, 2000, 5 << 4, 0x10, 65535, 0, 0)
pseudo = source + destination + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, socket.IPPROTO_TCP, 0, source, destination)
ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]

with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
    raw.bind((interface, 0))
    own_mac = raw.getsockname()[4]
    frame = b"\xff" * 6 + own_mac + struct.pack("!H", 0x0800) + ip + tcp
    sent = raw.send(frame)
print(json.dumps({"sent": sent}))
