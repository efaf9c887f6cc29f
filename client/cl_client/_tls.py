"""The TLS context every HTTP client of the process shares.

``httpx.Client()`` builds a new verifying ``ssl.SSLContext`` each time, and building one reads and parses the
whole CA bundle: 20-35 ms of CPU on an idle machine, more under load. A process that opens many clients (the
conformance suites open dozens per check process; a CLI opens several) spent seconds of CPU on it, also for
``http://`` deployments that never use TLS. The context is built on first use and then reused; an
``ssl.SSLContext`` is meant to be shared by connections. Trust is httpx's own default: ``SSL_CERT_FILE``, else
``SSL_CERT_DIR``, else certifi's bundle; the variables are read on each call, so a changed variable gets its
own context.
"""

from __future__ import annotations

import os
import ssl
import threading

import httpx

_lock = threading.Lock()
_contexts: dict[tuple[str, str], ssl.SSLContext] = {}


def shared_ssl_context() -> ssl.SSLContext:
    """Return the process's verifying TLS context for the current trust settings (built once per setting).

    Returns:
        The context ``httpx.create_ssl_context()`` builds for ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` as they are
        set now (certifi's bundle when neither is).

    Raises:
        ssl.SSLError: the CA file or folder named by the variables cannot be read as certificates.
        OSError: the CA file named by ``SSL_CERT_FILE`` cannot be opened.
    """
    key = (os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))
    with _lock:
        context = _contexts.get(key)
        if context is None:
            context = _contexts[key] = httpx.create_ssl_context()
        return context
