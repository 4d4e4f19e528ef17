"""What to install for an optional part, said the same way by every message that needs it.

tqctl is installed from its checkout (it is not on PyPI), so a hint naming tqctl's extra on PyPI would fail,
or fetch a stranger's package of that name: the hint names the packages themselves, and the extra
to use from the checkout. ``pyproject.toml`` stays the authority on versions.
"""

from __future__ import annotations

PACKAGES = {
    "asyncio": "greenlet uvloop",
    "gevent": "gevent",
    "sqs": "boto3 pycurl",
    "metrics": "prometheus_client",
    "serve": "textual-serve",
    "pydantic": "pydantic",
}


def install_hint(extra: str) -> str:
    return f"pip install {PACKAGES[extra]} (from tqctl's checkout: pip install -e '.[{extra}]')"
