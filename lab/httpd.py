"""The lab's real-server application: answers every GET with the server's name.

    python -m lvsdr.lab.httpd NAME PORT[/tls] [PORT[/tls]...] [--cert PEM] [--health-file PATH]

Listens on all addresses (IPv4 and IPv6) so it serves a VIP on lo and traffic
redirected by iptables/firewalld alike. PORT/tls serves HTTPS with the
certificate and key in PEM (for keepalived's SSL_GET). GET /health answers
503 while the --health-file exists (200 otherwise), and so does any GET to a
local address the file lists (one per line: a service broken on its VIP
alone). Test scaffolding.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class DualStack:
    """A threading TCP server on [::] that takes IPv4 too (the lab's servers' one way to listen)."""

    address_family: int = socket.AF_INET6
    daemon_threads = True
    socket: socket.socket

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()  # type: ignore[misc]


class DualStackServer(DualStack, ThreadingHTTPServer):
    pass


def serve(servers: list[socketserver.BaseServer]) -> None:
    """Serve every port: the first in this thread, the rest in their own."""
    for srv in servers[1:]:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    servers[0].serve_forever()


def main(argv: list[str]) -> int:
    cert = health = None
    if "--cert" in argv:
        i = argv.index("--cert")
        cert, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    if "--health-file" in argv:
        i = argv.index("--health-file")
        health, argv = argv[i + 1], argv[:i] + argv[i + 2:]
    name, specs = argv[0], argv[1:]
    ports = [int(p.split("/")[0]) for p in specs]
    body = f"{name}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.startswith("/stream"):
                return self.stream()
            import os

            down = False
            if health is not None and os.path.exists(health):
                local = str(self.connection.getsockname()[0]).removeprefix("::ffff:")
                with open(health) as f:
                    down = self.path == "/health" or local in f.read().split()
            self.send_response(503 if down else 200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def stream(self) -> None:
            """GET /stream?seconds=N: the server's name, one line every 0.25 s for
            N seconds (a long-lived connection for failover and drain tests)."""
            import time
            from urllib.parse import parse_qs, urlparse

            seconds = float(parse_qs(urlparse(self.path).query).get("seconds", ["10"])[0])
            lines = max(1, int(seconds * 4))
            line = f"{name}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(lines * len(line)))
            self.end_headers()
            for _ in range(lines):
                self.wfile.write(line)
                self.wfile.flush()
                time.sleep(0.25)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            sys.stdout.write(f"{self.client_address[0]} {format % args}\n")
            sys.stdout.flush()

    servers = [DualStackServer(("::", p), Handler) for p in ports]
    for srv, spec in zip(servers, specs, strict=True):
        if spec.endswith("/tls"):
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert))
            srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print(f"{name}: listening on {', '.join(specs)}", flush=True)
    serve(list(servers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
