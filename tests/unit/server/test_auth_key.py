"""Authenticator unit checks (no deployment): the key it accepts and the claims it turns into a User."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from cl_compute.auth import Authenticator, AuthError, generate_keypair, mint_token

PRIVATE, PUBLIC = generate_keypair()


def _public_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize(
    ("key", "named"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RSAPublicKey"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519PublicKey"),
        (ec.generate_private_key(ec.SECP384R1()), "secp384r1"),
    ],
)
def test_a_key_es256_cannot_verify_with_is_refused_up_front(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey, named: str
) -> None:
    # Such a key used to be accepted, and then every request with a token failed with PyJWT's TypeError or
    # InvalidKeyError (a 500) instead of an answer.
    with pytest.raises(ValueError, match=f"EC P-256.*{named}"):
        Authenticator(_public_pem(key))


def test_a_p256_key_verifies_tokens() -> None:
    auth = Authenticator(PUBLIC)
    assert auth.enabled
    user = auth.decode("Bearer " + mint_token(PRIVATE, user_id="u1", permissions=["a", "b", "a"]))
    assert (user.id, user.is_admin, user.permissions) == ("u1", False, ("a", "b"))
    assert not Authenticator(None).enabled


@pytest.mark.parametrize("permissions", [["a", 1], "a", [None]])
def test_non_string_permissions_are_an_invalid_payload(permissions: object) -> None:
    import time

    import jwt

    claims = {"id": "u1", "is_admin": False, "permissions": permissions, "exp": int(time.time()) + 60}
    token = jwt.encode(claims, PRIVATE, algorithm="ES256")
    with pytest.raises(AuthError, match="JWT payload is invalid"):
        Authenticator(PUBLIC).decode(f"Bearer {token}")
