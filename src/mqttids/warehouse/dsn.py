"""Connection strings: shown without their password, and turned into a JDBC URL for Spark.

Passwords are best left out of the URL altogether: libpq takes them from
``PGPASSWORD`` or ``~/.pgpass``. When one is in the URL anyway, nothing that
mqttids prints or logs shows it.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

MASK = "***"
_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def is_url(dsn: str) -> bool:
    return dsn.startswith(("postgresql://", "postgres://"))


def mask_dsn(dsn: str) -> str:
    """The connection string with any password replaced by ``***``."""
    if not is_url(dsn):
        return _KV_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn)
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = [(k, MASK if k.lower() == "password" else v)
                 for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, secrets: list[str | None]) -> str:
    """``text`` with every given secret (and its URL-quoted form) replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK).replace(quote(secret, safe=""), MASK)
    return text


def jdbc_url(host: str | None, port: str | int | None, dbname: str | None) -> str:
    """A JDBC URL for the same server; a Unix socket (no host) becomes localhost over TCP."""
    if not host or host.startswith("/"):
        host = "localhost"
    return f"jdbc:postgresql://{host}:{port or 5432}/{quote(dbname or '', safe='')}"
