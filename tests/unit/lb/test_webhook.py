"""The admission webhook's decisions (MetalLB's checks) and its certificates, without a cluster."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509

from pikube.lb.config.fields import Origin
from pikube.lb.webhook import certs, checks

NS = "metallb-system"
NOW = datetime.datetime(2026, 12, 2, tzinfo=datetime.UTC)


def pool(name: str, *addresses: str, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "metallb.io/v1beta1",
        "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"addresses": list(addresses)},
    }


SEED = pool("seed-pool", "198.51.100.230-198.51.100.250")
BFD = {
    "apiVersion": "metallb.io/v1beta1",
    "kind": "BFDProfile",
    "metadata": {"name": "fast", "namespace": NS},
    "spec": {},
}
PEER = {
    "apiVersion": "metallb.io/v1beta2",
    "kind": "BGPPeer",
    "metadata": {"name": "router", "namespace": NS},
    "spec": {
        "myASN": 64500,
        "peerASN": 64501,
        "peerAddress": "198.51.100.1",
        "bfdProfile": "fast",
    },
}


def test_a_pool_in_another_namespace_is_refused() -> None:
    verdict = checks.review("CREATE", pool("p", "10.0.0.0/24", namespace="default"), None, [], NS)
    assert verdict == checks.Verdict(False, "resource must be created in metallb-system namespace")


def test_an_overlapping_pool_is_refused_naming_the_field_and_the_other_pool() -> None:
    verdict = checks.review("CREATE", pool("b", "198.51.100.240/29"), None, [SEED], NS)
    assert not verdict.allowed
    assert verdict.message.startswith("IPAddressPool 'b': spec.addresses[0]: 198.51.100.240/29")
    assert "IPAddressPool 'seed-pool'" in verdict.message
    assert "document" not in verdict.message


def test_an_invalid_cidr_is_refused_naming_the_field() -> None:
    verdict = checks.review("CREATE", pool("b", "10.0.0.0/24", "198.51.100.300/32"), None, [], NS)
    assert not verdict.allowed
    assert verdict.message.startswith("IPAddressPool 'b': spec.addresses[1]: ")


def test_a_valid_pool_and_an_update_of_a_pool_to_itself_are_allowed() -> None:
    assert checks.review("CREATE", pool("b", "10.0.0.0/24"), None, [SEED], NS).allowed
    shrunk = pool("seed-pool", "198.51.100.231-198.51.100.250")
    assert checks.review("UPDATE", shrunk, SEED, [SEED], NS).allowed


def test_a_pool_named_twice_in_one_request_list_is_refused() -> None:
    twice = {"apiVersion": "v1", "kind": "List", "items": [pool("x", "10.0.0.0/24")] * 2}
    error = checks._parse([(twice, Origin(checks.REQUEST, 1))])
    assert error is not None
    assert "defined twice" in error.problem


def test_a_bfd_profile_in_use_cannot_be_deleted() -> None:
    verdict = checks.review("DELETE", None, BFD, [SEED, BFD, PEER], NS)
    assert verdict == checks.Verdict(
        False,
        "BFDProfile 'fast' is used by BGPPeer 'router' (spec.bfdProfile): "
        "change or delete the peer first",
    )
    assert checks.review("DELETE", None, BFD, [SEED, BFD], NS).allowed
    assert checks.review("DELETE", None, SEED, [SEED, PEER], NS).allowed


def test_a_peer_naming_a_missing_profile_is_refused() -> None:
    verdict = checks.review("CREATE", PEER, None, [SEED], NS)
    message = "BGPPeer 'router': spec.bfdProfile: no BFDProfile named 'fast'"
    assert verdict == checks.Verdict(False, message)


def test_a_problem_the_cluster_already_has_does_not_block_an_unrelated_object() -> None:
    broken = [SEED, pool("old-overlap", "198.51.100.240/29")]  # made while no webhook ran
    assert checks.review("CREATE", pool("new", "10.1.0.0/24"), None, broken, NS).allowed
    assert not checks.review("CREATE", pool("n2", "198.51.100.231/32"), None, broken, NS).allowed


def test_the_admission_review_answers_with_the_uid_and_the_reason() -> None:
    review: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1234",
            "kind": {"group": "metallb.io", "version": "v1beta1", "kind": "IPAddressPool"},
            "operation": "CREATE",
            "object": pool("b", "198.51.100.240/29"),
        },
    }
    answer = checks.admission_response(review, [SEED], NS)
    assert answer["response"]["uid"] == "1234"
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 422
    assert "spec.addresses[0]" in answer["response"]["status"]["message"]
    review["request"]["kind"]["kind"] = "ServiceL2Status"
    assert checks.admission_response(review, [SEED], NS)["response"] == {
        "uid": "1234",
        "allowed": True,
    }


NAMES = certs.dns_names("metallb-webhook-service", NS)


def test_a_new_bundle_is_a_ca_and_a_serving_certificate_for_the_service() -> None:
    bundle = certs.make_bundle(NAMES, NOW)
    assert certs.needs_new(bundle, NAMES, NOW) == ""
    ca = x509.load_pem_x509_certificate(bundle.ca_cert)
    cert = x509.load_pem_x509_certificate(bundle.cert)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "metallb-webhook-service",
        "metallb-webhook-service.metallb-system",
        "metallb-webhook-service.metallb-system.svc",
    ]
    assert certs.Bundle.from_data(bundle.data()) == bundle


def test_a_bundle_is_renewed_in_the_last_third_of_its_life_or_for_other_names() -> None:
    bundle = certs.make_bundle(NAMES, NOW)
    assert certs.needs_new(bundle, NAMES, NOW + datetime.timedelta(days=240)) == ""
    assert "expires" in certs.needs_new(bundle, NAMES, NOW + datetime.timedelta(days=250))
    assert certs.needs_new(bundle, ["other"], NOW) == "the serving certificate names other hosts"
    assert certs.needs_new(None, NAMES, NOW) == "no certificate yet"
    broken = certs.Bundle(b"junk", bundle.cert, bundle.key)
    assert certs.needs_new(broken, NAMES, NOW).startswith("unreadable certificate")
