"""Upstream's module path ``cl_client.auth``: the auth providers and ``get_default_auth``."""

from cl_client._auth import AuthProvider, JWTAuthProvider, NoAuthProvider, get_default_auth

__all__ = ["AuthProvider", "JWTAuthProvider", "NoAuthProvider", "get_default_auth"]
