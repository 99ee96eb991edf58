"""A local OIDC issuer for tests: discovery document and JWKS over HTTP on 127.0.0.1, signing
keys made here (EC P-256 and RSA), key rotation, and a count of JWKS fetches."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "heliox-api"


class SigningKey:
    def __init__(self, algorithm: str = "ES256") -> None:
        self.kid = uuid.uuid4().hex[:8]
        self.algorithm = algorithm
        if algorithm.startswith("ES"):
            self.private: Any = ec.generate_private_key(ec.SECP256R1())
            public = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            public = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        self.jwk = {**public, "kid": self.kid, "use": "sig", "alg": algorithm}


class LocalIssuer:
    def __init__(self) -> None:
        self.keys = [SigningKey()]
        self.jwks_fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    body = {"keys": [key.jwk for key in issuer.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalIssuer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def rotate(self, algorithm: str = "ES256", keep_old: bool = False) -> SigningKey:
        """A new signing key, published (alone unless ``keep_old``)."""
        new = SigningKey(algorithm)
        self.keys = [*self.keys, new] if keep_old else [new]
        return new

    def token(
        self,
        key: SigningKey | None = None,
        *,
        kid: str | None = None,
        lifetime: float = 300,
        **claims: Any,
    ) -> str:
        key = key or self.keys[-1]
        now = int(time.time())
        payload = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + int(lifetime),
            **claims,
        }
        headers = {"kid": kid if kid is not None else key.kid}
        return jwt.encode(payload, key.private, algorithm=key.algorithm, headers=headers)
