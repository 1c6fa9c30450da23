"""Connection strings shown without their secrets. No I/O.

``postgresql://u:secret@h/db`` prints as ``postgresql://u:***@h/db``; a ``password=`` in a
key=value string or a URI's query prints as ``password=***``.
"""

from __future__ import annotations

import re

_URI_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):[^/?#@]*@")
_PASSWORD_PARAM = re.compile(r"(?P<key>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE)


def mask_dsn(conn_str: str) -> str:
    masked = _URI_PASSWORD.sub(r"\g<head>:***@", conn_str)
    return _PASSWORD_PARAM.sub(r"\g<key>***", masked)
