"""Moving a running replay exchange's clock from another process (`hedgewatch replay advance`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from hedgewatch.replay.server import CLOCK_PATH


def move_clock(url: str, command: dict[str, Any], timeout_s: float = 10.0) -> str:
    """POST `command` ({"advance_s": N}, {"now": ISO}, {"speed": X}; {} just reads) to the clock
    endpoint of the replay exchange at `url`; returns the clock's new time (ISO 8601).

    Raises ConnectionError when nothing answers there, ValueError when the exchange refuses.
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"--url: not an http URL: {url!r}")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url.rstrip("/") + CLOCK_PATH,
        data=json.dumps(command).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            return str(json.loads(response.read())["now"])
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ValueError(f"the replay exchange refused: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"no replay exchange answers: {reason}") from None
