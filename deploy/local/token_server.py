"""Loopback OAuth 2.0 token endpoint, so google-auth's service-account path runs offline.

A service-account key written by ``make_service_account_key`` points its
``token_uri`` at a ``TokenServer``; google-auth then signs a JWT assertion and
exchanges it here (``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``)
for an access token ``tok-1``, ``tok-2``, ... Each exchange is recorded with
the assertion's claims (decoded, not verified), so a test can check the scope
the function asked for and how often it refreshed.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deploy.local.ee_emulator import ServedInThread

JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_BODY_BYTES: Final = 1024 * 1024


def decode_jwt_claims(assertion: str) -> dict[str, Any]:
    """The payload of a compact JWT, base64url-decoded; the signature is not checked."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, binascii.Error, ValueError) as exc:
        raise ValueError(f"malformed JWT assertion: {exc}") from None
    if not isinstance(claims, dict):
        raise ValueError("JWT payload is not a JSON object")
    return claims


class _TokenHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "token-server/1"
    disable_nagle_algorithm = True
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging; requests are recorded on the server object."""

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        token_server = cast(_TokenHTTPServer, self.server).owner
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._send(400, {"error": "invalid_request", "error_description": "bad Content-Length"})
            return
        body = self.rfile.read(length).decode("utf-8", errors="replace")
        if self.path.split("?", 1)[0] != "/token":
            self._send(404, {"error": "not_found", "error_description": f"no route {self.path}"})
            return
        form = urllib.parse.parse_qs(body, keep_blank_values=True)
        grant_type = form.get("grant_type", [""])[0]
        assertion = form.get("assertion", [""])[0]
        if grant_type != JWT_BEARER:
            self._send(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"grant_type {grant_type!r}",
                },
            )
            return
        try:
            claims = decode_jwt_claims(assertion)
        except ValueError as exc:
            self._send(400, {"error": "invalid_grant", "error_description": str(exc)})
            return
        token = token_server.issue(grant_type, claims)
        self._send(
            200,
            {"access_token": token, "expires_in": token_server.expires_in, "token_type": "Bearer"},
        )

    def do_GET(self) -> None:
        self._send(405, {"error": "invalid_request", "error_description": "use POST /token"})


class _TokenHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: TokenServer) -> None:
        self.owner = owner
        super().__init__(address, _TokenHandler)


class TokenServer(ServedInThread):
    """An OAuth token endpoint on loopback that issues ``tok-N`` to any JWT-bearer assertion."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, expires_in: int = 3600) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError(f"the token server binds to loopback only, got {host!r}")
        self.expires_in = expires_in
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._tokens: list[str] = []
        httpd = _TokenHTTPServer(("127.0.0.1", port), self)
        bound_host, bound_port = httpd.socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}/token"
        super().__init__(httpd, "token-server")

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Each token request: grant_type, claims, and the claims' scope, iss and aud."""
        with self._lock:
            return list(self._requests)

    @property
    def tokens_issued(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def issue(self, grant_type: str, claims: dict[str, Any]) -> str:
        with self._lock:
            token = f"tok-{len(self._tokens) + 1}"
            self._tokens.append(token)
            self._requests.append(
                {
                    "grant_type": grant_type,
                    "claims": claims,
                    "scope": claims.get("scope"),
                    "iss": claims.get("iss"),
                    "aud": claims.get("aud"),
                    "access_token": token,
                }
            )
            return token


def make_service_account_key(
    path: Path, token_uri: str, project_id: str = "ee-cancel-test"
) -> dict[str, Any]:
    """Write a service-account JSON key with a fresh RSA key whose token_uri is ``token_uri``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode()
    info: dict[str, Any] = {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"ee-cancel@{project_id}.iam.gserviceaccount.com",
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }
    path.touch(mode=0o600)
    path.write_text(json.dumps(info, indent=2))
    return info
