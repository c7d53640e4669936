"""``fintune whatif``: one row of a file, edited at will, and what would change its decision."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError


def _changes(pairs: list[str]) -> dict[str, str]:
    """``--set COL=VALUE`` flags as {column: value} (split at the first "=")."""
    changes = {}
    for pair in pairs:
        column, sep, value = pair.partition("=")
        if not sep or not column:
            raise ConfigError(f"--set {pair!r}: write COLUMN=VALUE, e.g. --set credit_amount=4500.")
        changes[column] = value
    return changes


def cmd_whatif(args: argparse.Namespace) -> int:
    """Print a row's probability and decision (after any --set edits), then the smallest changes
    to the actionable columns that flip the decision."""
    from ..data.read import read_table
    from ..explain.counterfactual import counterfactuals
    from ..explain.whatif import edit_row, score_rows

    frame = read_table(args.data)
    if not 0 <= args.row < len(frame):
        raise ConfigError(
            f"--row {args.row}: {args.data} has {len(frame):,} rows; use 0-{len(frame) - 1} "
            "(0 is the first row after the header)."
        )
    row = frame.iloc[[args.row]]
    changes = _changes(args.set or [])
    if changes:
        row = edit_row(args.run_dir, row, changes)
    scored = score_rows(args.run_dir, row).iloc[0]
    edits = f" edited ({', '.join(f'{c}={v}' for c, v in changes.items())})" if changes else ""
    if "probability" in scored:
        print(
            f"row {args.row}{edits}: P({scored['positive_class']}) = {scored['probability']:.3f}, "
            f"threshold {scored['threshold']:.3f}: {scored['decision']}"
        )
    else:
        print(f"row {args.row}{edits}: predicted {scored['decision']}")
    if not args.actionable:
        return 0
    result = counterfactuals(
        args.run_dir, row, args.actionable, max_changes=args.max_changes, n_results=args.results
    )
    if not result.results:
        print(result.message)
    else:
        print(f"what would make it {result.target_decision}:")
        for i, option in enumerate(result.results, 1):
            print(
                f"  {i}. {option.phrase}  (P({result.positive_class}) = {option.probability:.3f})"
            )
    print(f"{result.n_scored:,} candidate rows scored in {result.seconds:.1f} s", file=sys.stderr)
    return 0
