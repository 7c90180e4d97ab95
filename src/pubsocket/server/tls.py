"""TLS for the native server: one `ssl.SSLContext` from a certificate and key (PEM).

``https://`` and ``wss://`` are served on the same port as the plain protocol would be;
there is no plain listener beside it. The context is the standard library's server
default (TLS 1.2+, the system's cipher policy); a certificate chain file may hold
intermediates after the leaf.
"""

from __future__ import annotations

import ssl

from ..config import Settings
from ..errors import ConfigError


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context for `settings.certfile` / `keyfile`, or None when neither is set.

    Raises `ConfigError` when only one is set or a file cannot be loaded (naming the
    variable, never the key's content)."""
    cert, key = settings.certfile, settings.keyfile
    if not cert and not key:
        return None
    if not cert or not key:
        missing = "PUBSOCKET_KEYFILE (--keyfile)" if cert else "PUBSOCKET_CERTFILE (--certfile)"
        raise ConfigError(f"TLS needs both a certificate and a key: {missing} is not set")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: {exc.filename} does not exist") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS: cannot load the certificate {cert} with the key {key} "
                          f"({getattr(exc, 'reason', None) or exc.strerror})") from None
    context.set_alpn_protocols(["http/1.1"])
    return context
