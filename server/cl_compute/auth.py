"""ES256 JWT authentication (PROTOCOL.md §6) and token minting for tests and the ``token`` command.

Decisions, in order (auth is on only when the server has a public key):

* no ``Authorization: Bearer`` header -> 401 ``Authentication required``
* expired -> 401 ``JWT token has expired``; bad signature/malformed/wrong algorithm -> 401
  ``Could not validate credentials``; claims wrong (``id`` not a str, ``is_admin`` not a bool, ``permissions``
  not a list of str, ``exp`` missing) -> 401 ``JWT payload is invalid``
* job routes need ``ai_inference_support`` or ``is_admin`` -> else 403
  ``Insufficient permissions. Required: ai_inference_support``; ``/admin/*`` needs ``is_admin`` -> else 403
  ``Insufficient permissions. Admin access required``.
* guest mode opens the job routes only; ``/admin/*`` always needs an admin token when auth is configured.

The upstream profile (``cl_compute.profile``) brings back two of upstream's rules: guest mode opens ``/admin/*``
too, without decoding any token (``guest_mode_opens_admin``), and tokens need no ``exp`` (``exp_optional``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import cast

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cl_compute.profile import quirks

JOB_PERMISSION = "ai_inference_support"


class AuthError(Exception):
    """An authentication/authorisation failure with the HTTP status and ``detail`` to answer."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class User:
    """The caller as decoded from a valid token."""

    id: str
    is_admin: bool = False
    permissions: tuple[str, ...] = field(default_factory=tuple)


def generate_keypair() -> tuple[str, str]:
    """Make a fresh P-256 key pair for ES256; returns ``(private_pem, public_pem)`` (PKCS8 / SPKI PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def mint_token(
    private_key_pem: str | bytes,
    *,
    user_id: str = "test-user",
    permissions: list[str] | tuple[str, ...] = (JOB_PERMISSION,),
    is_admin: bool = False,
    expires_in: float | None = 1800.0,
) -> str:
    """Sign an ES256 JWT as the CL auth service would.

    Args:
        private_key_pem: EC P-256 private key in PEM.
        user_id: the ``id`` claim (a string).
        permissions: the ``permissions`` claim.
        is_admin: the ``is_admin`` claim.
        expires_in: seconds until ``exp`` (negative gives an already expired token); None omits ``exp``.

    Returns:
        The encoded token.
    """
    claims: dict[str, object] = {"id": user_id, "is_admin": is_admin, "permissions": list(permissions)}
    if expires_in is not None:
        claims["exp"] = int(time.time() + expires_in)
    key = private_key_pem.encode() if isinstance(private_key_pem, str) else private_key_pem
    return jwt.encode(claims, key, algorithm="ES256")


class Authenticator:
    """Checks bearer tokens against one ES256 public key.

    Args:
        public_key_pem: the verification key (PEM); None disables authentication entirely.
    """

    def __init__(self, public_key_pem: str | None) -> None:
        self.public_key_pem = public_key_pem
        key = serialization.load_pem_public_key(public_key_pem.encode()) if public_key_pem else None
        if key is not None and not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
            # ES256 verifies only with a P-256 key: with any other key PyJWT raises TypeError or InvalidKeyError
            # on every token (a 500), not an authentication error. Refuse it here, as a malformed PEM is.
            kind = f"an EC {key.curve.name} key" if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
            raise ValueError(f"the auth public key must be an EC P-256 (secp256r1) key for ES256, not {kind}")
        self._key: ec.EllipticCurvePublicKey | None = key

    @property
    def enabled(self) -> bool:
        """True when a public key is configured."""
        return self._key is not None

    def decode(self, authorization: str | None) -> User:
        """Validate an ``Authorization`` header value and return the user.

        Raises:
            AuthError: 401 with one of the protocol's messages.
        """
        if not authorization:
            raise AuthError(401, "Authentication required")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "Authentication required")
        if self._key is None:
            raise RuntimeError("Authenticator.decode needs a public key (authentication is off)")
        required = [] if quirks().exp_optional else ["exp"]  # upstream accepts a token that never expires
        try:
            claims = cast(
                "dict[str, object]",
                jwt.decode(token.strip(), self._key, algorithms=["ES256"], options={"require": required}),
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(401, "JWT token has expired") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(401, "JWT payload is invalid") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError(401, "Could not validate credentials") from exc
        user_id = claims.get("id")
        is_admin = claims.get("is_admin", False)
        permissions = claims.get("permissions", [])
        if not isinstance(user_id, str) or not isinstance(is_admin, bool) or not isinstance(permissions, list):
            raise AuthError(401, "JWT payload is invalid")
        items = cast("list[object]", permissions)  # a JSON array
        names = [p for p in items if isinstance(p, str)]
        if len(names) != len(items):
            raise AuthError(401, "JWT payload is invalid")
        return User(id=user_id, is_admin=is_admin, permissions=tuple(dict.fromkeys(names)))

    def require_job_access(self, authorization: str | None, guest_mode: bool) -> User | None:
        """Check a job/plugin route; returns the user (None for guests).

        Raises:
            AuthError: 401/403.
        """
        if not self.enabled or guest_mode:
            return None
        user = self.decode(authorization)
        if not user.is_admin and JOB_PERMISSION not in user.permissions:
            raise AuthError(403, f"Insufficient permissions. Required: {JOB_PERMISSION}")
        return user

    def require_admin(self, authorization: str | None, guest_mode: bool = False) -> User | None:
        """Check an ``/admin`` route (guest mode does not open it when auth is configured).

        Args:
            authorization: the ``Authorization`` header value.
            guest_mode: the effective guest mode; it opens the route (the token is not even decoded) only in a
                profile with the ``guest_mode_opens_admin`` quirk.

        Raises:
            AuthError: 401/403.
        """
        if not self.enabled or (guest_mode and quirks().guest_mode_opens_admin):
            return None
        user = self.decode(authorization)
        if not user.is_admin:
            raise AuthError(403, "Insufficient permissions. Admin access required")
        return user
