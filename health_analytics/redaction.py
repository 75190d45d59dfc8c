"""Keep secrets out of anything a person or a log can read."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)(?P<userinfo>[^@/\s]*)@", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """Return ``uri`` with its password replaced by ``***`` (the user name stays, it helps debugging)."""

    def _mask(m: re.Match[str]) -> str:
        user, sep, _password = m.group("userinfo").partition(":")
        return f"{m.group('scheme')}{user}{':***' if sep else ''}@"

    return _USERINFO.sub(_mask, uri)


def redact_text(text: str, *secrets: str | None) -> str:
    """Remove every given secret (and every URI password) from free text such as an error message."""
    out = redact_uri(text)
    for secret in secrets:
        if secret:
            out = out.replace(secret, "***")
    return out


def uri_password(uri: str) -> str | None:
    """The password embedded in a MongoDB URI, if any (to strip it from third-party error text)."""
    m = _USERINFO.search(uri)
    if not m:
        return None
    _user, sep, password = m.group("userinfo").partition(":")
    return password if sep and password else None
