"""A throw-away TLS certificate for the local Dataverse.

MSAL accepts only ``https`` authorities (``msal.authority.canonicalize``), so the
local server speaks TLS. The certificate is self-signed for ``127.0.0.1`` and
``localhost`` and is its own trust anchor: clients pass its PEM file as ``verify``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID


class LocalCertificate:
    """A self-signed certificate and key written to a private temporary directory."""

    def __init__(self, ca_file: str | None = None) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="local-dataverse-")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Local Dataverse")])
        now = dt.datetime.now(dt.timezone.utc)
        public_key = key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            # Its own anchor: Python 3.13's strict verification wants a proper CA certificate.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
            .sign(key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        self.cert_file = os.path.join(self._directory.name, "local-dataverse.pem")
        self.key_file = os.path.join(self._directory.name, "local-dataverse.key")
        with open(self.cert_file, "wb") as out:
            out.write(pem)
        with open(os.open(self.key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
            out.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        self.ca_file = ca_file or self.cert_file
        if ca_file:
            with open(ca_file, "wb") as out:
                out.write(pem)

    def server_context(self) -> ssl.SSLContext:
        """The TLS context the server listens with."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (for ``httpx.Client(verify=...)``)."""
        return ssl.create_default_context(cafile=self.cert_file)

    def remove(self) -> None:
        self._directory.cleanup()
