"""A local RFC 3161 time-stamping authority for the tests: ``openssl ts -reply`` behind HTTP.

``LocalTSA(tmp)`` makes a root CA and a TSA certificate (critical EKU id-kp-timeStamping,
RFC 3161 §2.3) with ``cryptography``, writes the ``openssl ts`` configuration, and serves
``POST /`` (``application/timestamp-query``, RFC 3161 §3.4) on a loopback port from a thread
of the test process; each request runs ``openssl ts -reply`` once. ``ca_pem`` is the root the
verifier is given; ``requests`` counts the requests answered; ``down = True`` answers 503;
``hang = N`` holds every request N seconds before answering (a TSA behind a dead firewall).
"""

from __future__ import annotations

import datetime
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CONFIG = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailguard tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


class LocalTSA:
    def __init__(self, directory: Path):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        ca_key, tsa_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca = _cert("test root CA", ca_key, "test root CA", ca_key, ca=True)
        tsa = _cert("test TSA", tsa_key, "test root CA", ca_key, ca=False)
        self.ca_pem = directory / "ca.pem"
        _pem(self.ca_pem, ca.public_bytes(serialization.Encoding.PEM))
        _pem(directory / "tsa.pem", tsa.public_bytes(serialization.Encoding.PEM))
        _pem(directory / "tsa.key", tsa_key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        (directory / "serial").write_text("01\n")
        self.config = directory / "openssl-ts.cnf"
        self.config.write_text(CONFIG.format(dir=directory))
        self.requests, self.down, self.hang, self._lock = 0, False, 0.0, threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def reply(self, query: bytes) -> bytes:
        """One ``openssl ts -reply`` for a DER TimeStampReq; the DER TimeStampResp."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.dir) as work:   # openssl's serial file is not shared-safe
            request, response = Path(work) / "req.tsq", Path(work) / "resp.tsr"
            request.write_bytes(query)
            subprocess.run(["openssl", "ts", "-reply", "-config", str(self.config), "-queryfile", str(request),
                            "-out", str(response)], check=True, capture_output=True, timeout=30)
            self.requests += 1
            return response.read_bytes()

    def _handler(self):
        tsa = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(tsa.hang)
                if tsa.down or self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_response(503 if tsa.down else 415)
                    self.end_headers()
                    return
                answer = tsa.reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
