"""`python3 -m server.tools.ops_rules --runbook-base URL OUTDIR`: the Prometheus rules of
ops/prometheus with every alert's runbook_url under your copy of the docs.

Each alert's runbook_url is absolute, RUNBOOK_BASE_DEFAULT + "/operating.md#alert-<name>"
in the files as shipped. Alertmanager, PagerDuty and Grafana show the link as it is, so it
must open from wherever the page is read: point the base at where your copy of docs/ is
served (an intranet wiki, a Git host's file view) and load the files this writes.
The rules' unit tests (mms-alerts.test.yml) expect the same links, so both are written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from urllib.parse import urlsplit

OPS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "ops", "prometheus")
RULE_FILES = ("mms-alerts.yml", "mms-alerts.test.yml")
# The base of the runbook links in the shipped files: replace it with your own.
RUNBOOK_BASE_DEFAULT = "https://mms.example.com/docs"
RUNBOOK_PAGE = "operating.md"
_LINK = re.compile(r'^(\s*runbook_url: ")([^"#]*)/' + re.escape(RUNBOOK_PAGE) + r'(#alert-[a-z]+")$')


def runbook_url(alert: str, base: str = RUNBOOK_BASE_DEFAULT) -> str:
    return f"{base.rstrip('/')}/{RUNBOOK_PAGE}#alert-{alert.lower()}"


def check_base(base: str) -> str:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment \
            or parts.query or '"' in base:
        raise ValueError(f"--runbook-base {base!r}: an absolute http(s) URL without "
                         "a query or #fragment, such as https://wiki.example.com/mms/docs")
    return base.rstrip("/")


def rebase(text: str, base: str) -> tuple[str, int]:
    """text with every runbook_url under base; the number of links changed."""
    base = check_base(base)
    out, n = [], 0
    for line in text.split("\n"):
        m = _LINK.match(line)
        if m:
            line = f"{m.group(1)}{base}/{RUNBOOK_PAGE}{m.group(3)}"
            n += 1
        out.append(line)
    return "\n".join(out), n


def write_rules(base: str, outdir: str, src: str = OPS_DIR) -> list[str]:
    os.makedirs(outdir, exist_ok=True)
    written = []
    for name in RULE_FILES:
        with open(os.path.join(src, name), encoding="utf-8") as f:
            text, n = rebase(f.read(), base)
        if n == 0:
            raise ValueError(f"{name}: no runbook_url line in the expected layout")
        path = os.path.join(outdir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m server.tools.ops_rules",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runbook-base", required=True,
                   help=f"where docs/ is served (the shipped files use {RUNBOOK_BASE_DEFAULT})")
    p.add_argument("outdir", help="directory for mms-alerts.yml and mms-alerts.test.yml")
    args = p.parse_args(argv)
    try:
        for path in write_rules(args.runbook_base, args.outdir):
            print(path)
    except ValueError as e:
        print(f"ops_rules: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
