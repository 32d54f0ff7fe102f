"""research/seed_ledger.json: every committed evaluation's held-out instances are accounted for, and a fresh range
is seen by one experiment folder only (seconds)."""

from __future__ import annotations

import json
from pathlib import Path

from l2l_torch.tasks.base import TEST_SEED_OFFSET, TUNE_SEED_OFFSET

REPO = Path(__file__).resolve().parent.parent
LEDGER = json.loads((REPO / "research" / "seed_ledger.json").read_text())


def _span(first: int, seeds: int) -> range:
    return range(first, first + seeds)


def _overlap(a: range, b: range) -> bool:
    return a.start < b.stop and b.start < a.stop


def _evaluations():
    """(file, range of held-out instances) of every committed evaluation that records its seeds."""
    for path in sorted((REPO / "research").rglob("results.json")):
        res = json.loads(path.read_text())
        if "seeds" in res and "optimizers" in res:
            yield path.relative_to(REPO), _span(int(res.get("first_seed") or TEST_SEED_OFFSET), int(res["seeds"]))


def test_the_ledger_ranges_are_disjoint_test_instances():
    default = _span(LEDGER["default"]["first"], LEDGER["default"]["seeds"])
    spans = [default] + [_span(f["first"], f["seeds"]) for f in LEDGER["fresh"]]
    for s in spans:
        assert TEST_SEED_OFFSET <= s.start and s.stop <= TUNE_SEED_OFFSET
    for i, a in enumerate(spans):
        assert not any(_overlap(a, b) for b in spans[i + 1:]), f"ledger ranges overlap: {a}"


def test_every_evaluation_is_in_the_ledger_and_fresh_ranges_are_used_once():
    default = _span(LEDGER["default"]["first"], LEDGER["default"]["seeds"])
    seen = 0
    for path, span in _evaluations():
        seen += 1
        fresh = [f for f in LEDGER["fresh"] if _overlap(span, _span(f["first"], f["seeds"]))]
        if not fresh:
            assert span.start >= default.start and span.stop <= default.stop, \
                f"{path} used held-out instances {span.start}..{span.stop - 1}, which the ledger does not list"
            continue
        for f in fresh:
            assert str(path).startswith(f["used_by"] + "/"), \
                f"{path} used the fresh instances {f['first']}.. that belong to {f['used_by']} alone"
    assert seen > 100  # the scan found the committed evaluations
