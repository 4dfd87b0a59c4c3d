"""The webhook's certificates: a CA of its own and a serving certificate for the webhook
Service's DNS names, made and renewed by the controller (as MetalLB's cert rotator does).

Pure: every function takes the time and returns PEM; `needs_new` says whether a Secret's
certificates must be replaced (missing, unreadable, wrong names, or in the last third of
their life). The CA lives ten years, the serving certificate one; both are replaced together,
so the caBundle always holds the CA that signed what is served.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = datetime.timedelta(days=3650)
SERVING_LIFETIME = datetime.timedelta(days=365)
CA_CERT = "ca.crt"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"


@dataclass(frozen=True)
class Bundle:
    """What the Secret holds (PEM): the CA certificate, the serving certificate and key."""

    ca_cert: bytes
    cert: bytes
    key: bytes

    def data(self) -> dict[str, bytes]:
        return {CA_CERT: self.ca_cert, TLS_CERT: self.cert, TLS_KEY: self.key}

    @classmethod
    def from_data(cls, data: Mapping[str, bytes]) -> Bundle | None:
        try:
            return cls(data[CA_CERT], data[TLS_CERT], data[TLS_KEY])
        except KeyError:
            return None


def dns_names(service: str, namespace: str) -> list[str]:
    return [service, f"{service}.{namespace}", f"{service}.{namespace}.svc"]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_bundle(names: Sequence[str], now: datetime.datetime) -> Bundle:
    """A new CA and a serving certificate for `names` signed by it."""
    ca_key = _key()
    ca_name = _name("pikube-webhook-ca")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[-1]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + SERVING_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Bundle(
        ca.public_bytes(pem),
        cert.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def needs_new(bundle: Bundle | None, names: Sequence[str], now: datetime.datetime) -> str:
    """Why the bundle must be replaced ("" if it is fine)."""
    if bundle is None:
        return "no certificate yet"
    try:
        ca = x509.load_pem_x509_certificate(bundle.ca_cert)
        cert = x509.load_pem_x509_certificate(bundle.cert)
        serialization.load_pem_private_key(bundle.key, password=None)
    except ValueError as exc:
        return f"unreadable certificate ({exc})"
    for what, c in (("CA", ca), ("serving certificate", cert)):
        start, end = c.not_valid_before_utc, c.not_valid_after_utc
        if now >= end - (end - start) / 3:
            return f"the {what} expires on {end:%Y-%m-%d}"
    if cert.issuer != ca.subject:
        return "the serving certificate is not signed by the CA"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the serving certificate names no host"
    if sorted(san.get_values_for_type(x509.DNSName)) != sorted(names):
        return "the serving certificate names other hosts"
    return ""
