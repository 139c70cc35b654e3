"""Money and time as a person reads them: one duration format and one money format, used by the
terminal's tables (render.py) and the report alike, so the same figure is written the same way."""

from __future__ import annotations

import math


def duration(seconds: float) -> str:
    """H:MM:SS, hours past 24 kept as hours (a long run reads as 50:00:00), rounded to the nearest
    second with halves up: 59.5 s is 0:01:00, 0.4 s is 0:00:00."""
    h, rem = divmod(math.floor(seconds + 0.5), 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def usd(amount: float) -> str:
    """Dollars to four places (a dry-run's minute costs about $0.003) with thousands grouped:
    $0.0031, $12,345.6780, -$1.5000."""
    sign = "-" if amount < 0 and round(amount, 4) != 0 else ""
    return f"{sign}${abs(amount):,.4f}"


def usd_per_hour(rate: float) -> str:
    """A price per hour, to four places as `spotrain prices` shows it: $0.5260/h."""
    return f"{usd(rate)}/h"
