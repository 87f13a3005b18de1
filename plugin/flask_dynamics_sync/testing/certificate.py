"""Throw-away certificates for the local Dataverse.

* The server's TLS certificate: MSAL accepts only ``https`` authorities
  (``msal.authority.canonicalize``), so the local server speaks TLS. The certificate is
  self-signed for ``127.0.0.1`` and ``localhost`` and is its own trust anchor: clients pass
  its PEM file as ``verify``.
* A client certificate for the certificate credential of OAuth2 client credentials
  (authenticate-oauth.md): the application signs a JWT assertion with its private key and the
  token endpoint checks it against the certificate registered for the application.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.oid import NameOID

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _self_signed(key: _PrivateKey, common_name: str, extensions: list[tuple[x509.ExtensionType, bool]]) -> bytes:
    """A PEM certificate for ``key``, signed by itself, valid from five minutes ago for 30 days."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _private_pem(key: _PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class LocalCertificate:
    """The server's certificate and key, written to a private temporary directory."""

    def __init__(self, ca_file: str | None = None) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="local-dataverse-")
        key = ec.generate_private_key(ec.SECP256R1())
        public_key = key.public_key()
        no_usage = dict.fromkeys(
            ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "crl_sign"), False
        )
        pem = _self_signed(
            key,
            "Local Dataverse",
            [
                (
                    x509.SubjectAlternativeName(
                        [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                    ),
                    False,
                ),
                # Its own anchor: Python 3.13's strict verification wants a proper CA certificate.
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (
                    x509.KeyUsage(
                        digital_signature=True, key_cert_sign=True, encipher_only=False, decipher_only=False, **no_usage
                    ),
                    True,
                ),
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
                (x509.SubjectKeyIdentifier.from_public_key(public_key), False),
                (x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), False),
            ],
        )
        self.cert_file = os.path.join(self._directory.name, "local-dataverse.pem")
        self.key_file = os.path.join(self._directory.name, "local-dataverse.key")
        with open(self.cert_file, "wb") as out:
            out.write(pem)
        with open(os.open(self.key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as out:
            out.write(_private_pem(key))
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


@dataclasses.dataclass(frozen=True)
class ClientCertificate:
    """An application's certificate credential: give ``certificate_pem`` to the local Dataverse
    (``LocalDataverse(client_certificate=...)``) and both to MSAL
    (``client_credential={"private_key": ..., "public_certificate": ...}``)."""

    private_key_pem: str
    certificate_pem: str


def make_client_certificate(common_name: str = "local-dataverse-client") -> ClientCertificate:
    """A new RSA key and self-signed certificate (MSAL signs its assertion with PS256 or RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = _self_signed(key, common_name, [(x509.BasicConstraints(ca=False, path_length=None), True)])
    return ClientCertificate(_private_pem(key).decode(), certificate.decode())
