"""The lab's SMTP application: enough of RFC 5321's opening for keepalived's
SMTP_CHECK (a 220 greeting, 250 to HELO/EHLO and anything else, 221 to QUIT).

    python -m lvsdr.lab.smtpd NAME PORT [PORT...]

Listens on all addresses (IPv4 and IPv6), like the lab's httpd. Test scaffolding.
"""

from __future__ import annotations

import socketserver
import sys

from .httpd import DualStack, serve


class SmtpServer(DualStack, socketserver.ThreadingTCPServer):
    allow_reuse_address = True


def main(argv: list[str]) -> int:
    name, ports = argv[0], [int(p) for p in argv[1:]]

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(f"220 {name} ESMTP lvsdr-lab\r\n".encode())
            for raw in self.rfile:
                verb = raw.decode(errors="replace").strip().split(" ", 1)[0].upper()
                if verb == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                self.wfile.write(f"250 {name}\r\n".encode() if verb in ("HELO", "EHLO") else b"250 ok\r\n")

    servers: list[socketserver.BaseServer] = [SmtpServer(("::", p), Handler) for p in ports]
    print(f"{name}: SMTP on {', '.join(map(str, ports))}", flush=True)
    serve(servers)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
