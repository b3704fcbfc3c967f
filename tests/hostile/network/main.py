"""Opens a TCP connection to a port the test listens on."""
import socket


def handler(event, context):
    with socket.create_connection(("127.0.0.1", event["port"]), timeout=2) as sock:
        sock.sendall(b"exfiltrated")
    return "connected"
