"""Real receivers for alert channels: an SMTP sink (aiosmtpd), a Twilio Messages API stand-in, a test CA."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailSink:
    """aiosmtpd handler: keeps every message; answers the first `fail_first` DATA commands with `fail_code`."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.fail_first = 0
        self.fail_code = "451 4.3.0 try again later"
        self.url = ""  # set by smtp_controller: what CLOUDFN_SMTP_URL points at

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.fail_first > 0:
            self.fail_first -= 1
            return self.fail_code
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "content": envelope.content,
                              "tls": server.transport.get_extra_info("ssl_object") is not None,
                              "login": session.auth_data if session.authenticated else None})
        return "250 Message accepted for delivery"


class Accounts:
    """aiosmtpd authenticator accepting one user and password."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()

    def __call__(self, server: object, session: object, envelope: object, mechanism: str,
                 auth_data: object) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user, self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)  # type: ignore[union-attr]


def smtp_controller(sink: MailSink, **kwargs: Any) -> tuple[Controller, int]:
    """A started aiosmtpd Controller on 127.0.0.1 and its port (Controller cannot take port=0)."""
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    sink.url = f"smtp://127.0.0.1:{port}"
    return controller, port


@dataclass
class LocalCa:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""

    ca_pem: bytes
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        """For the server side of a TLS test."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())


def make_test_ca(folder: Path) -> LocalCa:
    """Generate the CA and a 127.0.0.1 server certificate into `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudfn test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return LocalCa(ca.public_bytes(serialization.Encoding.PEM), cert_path, key_path)


class TwilioStandIn:
    """A local HTTP server speaking Twilio's Messages API: checks basic auth and the form, answers 201 JSON."""

    def __init__(self, sid: str = "AC" + "0" * 32, token: str = "test-auth-token") -> None:
        self.sid, self.token = sid, token
        self.messages: list[dict[str, Any]] = []
        self.fail_first = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, reply = outer.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        """The base URL (what CLOUDFN_SMS_URL points at)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """Twilio's checks, in its order: route, auth, content type, required parameters."""
        if path != f"/2010-04-01/Accounts/{self.sid}/Messages.json":
            return 404, {"code": 20404, "message": f"The requested resource {path} was not found", "status": 404}
        want = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if headers.get("authorization") != want:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}
        if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return 400, {"code": 20001, "message": "expected a form", "status": 400}
        form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        for name, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
            if not form.get(name):
                return 400, {"code": code, "message": f"A '{name}' parameter is required.", "status": 400}
        with self._lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return 503, {"code": 20500, "message": "Service unavailable", "status": 503}
            self.messages.append({"form": form, "headers": headers})
        return 201, {"sid": "SM" + uuid.uuid4().hex, "account_sid": self.sid, "to": form["To"],
                     "from": form["From"], "body": form["Body"], "status": "queued"}

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


class WebhookSink:
    """A webhook receiver as an integrator writes one: verifies the Standard Webhooks signature with the
    `standardwebhooks` library and processes each `webhook-id` once (later copies answered 200, not processed).

    `hold` (when set) makes the next request wait until `release` is set, after the body was read: a sender
    killed meanwhile never sees the acknowledgement.
    """

    def __init__(self, secret: str) -> None:
        from standardwebhooks.webhooks import Webhook

        self.verifier = Webhook(secret)
        self.received: list[dict[str, Any]] = []  # every request, verified or not
        self.processed: dict[str, Any] = {}  # webhook-id -> parsed body, first copy only
        self.rejected = 0
        self.hold = threading.Event()
        self.release = threading.Event()
        self.held = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = outer.handle({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        from standardwebhooks.webhooks import WebhookVerificationError

        self.received.append({"headers": headers, "body": body})
        try:
            payload = self.verifier.verify(body, headers)
        except WebhookVerificationError:
            self.rejected += 1
            return 400
        msg_id = headers["webhook-id"]
        if msg_id not in self.processed:
            self.processed[msg_id] = payload
        if self.hold.is_set():
            self.hold.clear()
            self.held.set()
            self.release.wait(60)
        return 200

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


class SlackStandIn:
    """Slack's incoming-webhook endpoint: answers `ok` and keeps each message (slack-sdk is the client)."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.messages.append({"path": self.path, "body": json.loads(body),
                                       "content_type": self.headers.get("content-type", "")})
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/XXXX"

    def close(self) -> None:
        self.server.shutdown()
