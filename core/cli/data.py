"""``fintune market-features``: a table to train on, derived from daily prices."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError


def cmd_market_features(args: argparse.Namespace) -> int:
    """Derive market features and a next-period target from a daily price table."""
    from ..data.market import derive_market_features, market_columns
    from ..data.read import read_table
    from ..serving.safe_csv import to_safe_csv

    frame = read_table(args.data)
    guessed = market_columns(frame) or {}
    date, close = args.date or guessed.get("date"), args.close or guessed.get("close")
    if not date or not close:
        raise ConfigError(
            "No date and closing-price columns found: name them with --date and --close."
        )
    derived = derive_market_features(
        frame,
        date=date,
        close=close,
        volume=args.volume or guessed.get("volume"),
        group=args.group,
        horizon=args.horizon,
        target=args.target,
    )
    Path(args.output).write_bytes(to_safe_csv(derived))
    target = f"next_{args.horizon}d_{args.target}"
    print(
        f"wrote {len(derived)} rows to {args.output}; train with --target {target} (the split "
        f"defaults to chronological by {date!r}; add --embargo {args.horizon})",
        file=sys.stderr,
    )
    return 0
