"""`mms bench engine` runs end to end and reports the keys it promises (its figures are
the benchmark's business, not the test's)."""

import json

from core.bench import main_engine


def test_bench_engine_json(capsys):
    assert main_engine(["--cards", "300", "--ops", "700", "--batch", "64", "--runs", "1",
                        "--json", "--domain"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("swipes_per_s", "reference_per_s", "ratio", "commit_p50_ms", "commit_p99_ms",
                "domain_swipes_per_s", "domain_cost_ratio"):
        assert key in out and out[key] > 0, key
    # Every swipe of the run was accepted: the figures are of work actually done.
    assert out["rejected"] == 0
    assert out["ops"] == 700 and out["batch"] == 64
