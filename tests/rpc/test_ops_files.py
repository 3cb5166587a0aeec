"""The monitoring files in ops/ are true to the code.

Every metric, label and label value that the alert rules and the Grafana dashboard use is
one the real server exports (scraped from a running server's /metrics), every by(), on()
and ignoring() names labels its operands have, every alert has a severity, a summary and
a runbook entry in docs/operating.md, and promtool accepts the rules when installed.

The rules file is read by a strict line reader (its layout is fixed, see its header), so
the tests need no YAML library; where PyYAML happens to be installed a test checks that
the reader and a real YAML parser agree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from common import ROOT
from prometheus_client.parser import text_string_to_metric_families
from test_server_rpc import CARDS, Running

from core.records import OP_NAMES, RESULT_NAMES, op_label
from server.mms_pb import admin_pb2, admin_pb2_grpc, pos_pb2, pos_pb2_grpc
from server.tools.ops_rules import runbook_url

RULES = ROOT / "ops" / "prometheus" / "mms-alerts.yml"
RULES_TEST = ROOT / "ops" / "prometheus" / "mms-alerts.test.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "mms-dashboard.json"
OPERATING = ROOT / "docs" / "operating.md"

# Labels Prometheus adds to every scraped series, and the series it makes up itself.
TARGET_LABELS = frozenset({"job", "instance"})
SYNTHETIC = {"up": frozenset()}
# Label names that would mean a per-card, per-member or per-client series.
ID_LABEL = re.compile(r"card|member|client|customer|phone|user|account", re.IGNORECASE)
SEVERITIES = {"critical", "warning", "info"}
# Grafana's own variables, replaced by a value of the right kind before parsing.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                "${instance}": ".+", "$instance": ".+"}


# --- the rules file, read line by line ----------------------------------------------

def read_rules(path: Path) -> list[dict]:
    """The groups of a rules file in the layout its header describes; anything else in
    it is an error naming the line."""
    lines = path.read_text().split("\n")
    groups: list[dict] = []
    rule: dict | None = None
    section: str | None = None  # "labels" or "annotations" while reading their entries
    i = 0

    def fail(msg: str):
        raise AssertionError(f"{path.name}:{i + 1}: {msg}: {lines[i]!r}")

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        indent = len(line) - len(line.lstrip(" "))
        if "\t" in line:
            fail("tab")
        if indent == 0:
            if line != "groups:" or groups:
                fail("expected one 'groups:'")
        elif indent == 2:
            m = re.fullmatch(r"  - name: ([a-z][a-z0-9_.]*)", line)
            if not m:
                fail("expected '- name: GROUP'")
            groups.append({"name": m.group(1), "rules": []})
            rule = section = None
        elif indent == 4:
            if line != "    rules:" or not groups or groups[-1]["rules"]:
                fail("expected 'rules:' once per group")
        elif indent == 6:
            m = re.fullmatch(r"      - (alert|record): ([A-Za-z_:][A-Za-z0-9_:]*)", line)
            if not m or not groups:
                fail("expected '- alert: NAME' or '- record: NAME'")
            rule = {m.group(1): m.group(2)}
            groups[-1]["rules"].append(rule)
            section = None
        elif indent == 8:
            m = re.fullmatch(r"        (expr|for|labels|annotations):(?: (.*))?", line)
            if not m or rule is None or m.group(1) in rule:
                fail("expected a new expr, for, labels or annotations key")
            key, value = m.group(1), m.group(2)
            if key == "expr":
                if value != "|":
                    fail("expr must be a literal block ('expr: |')")
                body = []
                while i + 1 < len(lines) and lines[i + 1].startswith(" " * 10):
                    i += 1
                    body.append(lines[i][10:])
                if not body:
                    fail("empty expr")
                rule["expr"] = "\n".join(body) + "\n"
            elif key == "for":
                if not value or not re.fullmatch(r"\d+[smh]", value):
                    fail("'for' must be a duration")
                rule["for"] = value
            else:
                if value:
                    fail(f"{key} takes its entries on the following lines")
                rule[key] = {}
                section = key
        elif indent == 10:
            m = re.fullmatch(r"          ([a-z_]+): (.*)", line)
            if not m or section is None or rule is None:
                fail("expected 'key: value' under labels or annotations")
            key, value = m.group(1), m.group(2)
            if section == "labels":
                if not re.fullmatch(r"[a-z]+", value):
                    fail("label values are plain words")
            else:
                q = re.fullmatch(r'"([^"\\]*)"', value)
                if not q:
                    fail("annotation values are double-quoted, without escapes")
                value = q.group(1)
            if key in rule[section]:
                fail("duplicate key")
            rule[section][key] = value
        else:
            fail("unexpected indent")
        i += 1
    return groups


@pytest.fixture(scope="module")
def groups() -> list[dict]:
    return read_rules(RULES)


def alerts(groups) -> list[dict]:
    return [r for g in groups for r in g["rules"] if "alert" in r]


def records(groups) -> list[dict]:
    return [r for g in groups for r in g["rules"] if "record" in r]


def test_line_reader_agrees_with_yaml(groups):
    import yaml  # PyYAML is a test dependency (pyproject's test extra)
    assert yaml.safe_load(RULES.read_text()) == {"groups": groups}


# --- what the real server exports -----------------------------------------------------

@dataclass(frozen=True)
class Exported:
    labels: dict[str, frozenset[str]]  # sample name -> its label names
    values: dict[str, set[str]]        # label name -> the values the code can give it
    services: dict[str, set[str]]      # grpc_service -> its methods


def _grpc_type(method) -> str:
    return {(False, False): "unary", (True, False): "client_stream",
            (False, True): "server_stream", (True, True): "bidi_stream"}[
        (method.client_streaming, method.server_streaming)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Exported:
    """Scrape /metrics of a real server after a few calls of each kind of outcome."""
    r = Running(str(tmp_path_factory.mktemp("ops")))
    try:
        admin = admin_pb2_grpc.AdminServiceStub(r.channel)
        pos = pos_pb2_grpc.PosServiceStub(r.channel)
        admin.IssueCards(admin_pb2.IssueCardsRequest(client_id=os.urandom(16),
                                                     card_nos=CARDS[:2]), metadata=r.md("admin"))
        pos.Recharge(pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=CARDS[0],
                                             amount_fen=10_000), metadata=r.md())
        pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[0],
                                       amount_fen=100), metadata=r.md())
        # Rejected by the money rules (no balance, no such card) and by auth.
        for no, who, code in ((CARDS[1], "pos", grpc.StatusCode.FAILED_PRECONDITION),
                              (99_999_999, "pos", grpc.StatusCode.NOT_FOUND),
                              (CARDS[0], "revoked", grpc.StatusCode.UNAUTHENTICATED)):
            with pytest.raises(grpc.RpcError) as e:
                pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=no,
                                               amount_fen=100), metadata=r.md(who))
            assert e.value.code() == code
        url = f"http://127.0.0.1:{r.server.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as f:
            text = f.read().decode()
    finally:
        r.close()

    labels: dict[str, set[str]] = {}
    seen: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            for k, v in sample.labels.items():
                seen.setdefault(k, set()).add(v)

    services = {s.full_name: {m.name for m in s.methods}
                for mod in (pos_pb2, admin_pb2) for s in mod.DESCRIPTOR.services_by_name.values()}
    types = {_grpc_type(m) for mod in (pos_pb2, admin_pb2)
             for s in mod.DESCRIPTOR.services_by_name.values() for m in s.methods}
    values = {
        "grpc_service": set(services),
        "grpc_method": set().union(*services.values()),
        "grpc_code": {c.name for c in grpc.StatusCode},
        "grpc_type": types,
        "op_type": {op_label(code) for code in OP_NAMES},
        "result": set(RESULT_NAMES.values()),
    }
    # The value sets above come from the code; what the scrape shows must lie within them.
    for label, known in values.items():
        assert seen.get(label, set()) <= known, (label, seen[label] - known)
    return Exported({k: frozenset(v) for k, v in labels.items()}, values, services)


def test_scrape_has_what_the_ops_files_need(exported):
    for name in ("grpc_server_handled_total", "grpc_server_started_total",
                 "grpc_server_handling_seconds_bucket", "mms_ops_total", "mms_batch_size_ops_bucket",
                 "mms_commit_duration_seconds_bucket", "mms_batch_duration_seconds_count",
                 "mms_queue_ops", "mms_inflight_ops", "mms_lmdb_map_used_bytes",
                 "mms_lmdb_map_size_bytes", "mms_journal_last_seq", "mms_checkpoint_seq",
                 "mms_cards"):
        assert name in exported.labels, name
    assert "le" in exported.labels["mms_commit_duration_seconds_bucket"]
    assert "le" not in exported.labels["mms_commit_duration_seconds_count"]


def test_no_metric_has_an_id_label(exported):
    bad = {(name, label) for name, labels in exported.labels.items() for label in labels
           if ID_LABEL.search(label)}
    assert not bad


# --- a checker for the PromQL the files use -------------------------------------------

TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<str>"[^"\\]*")
  | (?P<range>\[[0-9smhdwy:]+\])
  | (?P<dur>\d+[smhdwy](?![\w.]))
  | (?P<num>\d+(?:\.\d+)?(?:e\d+)?)
  | (?P<id>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(){},])
""", re.VERBOSE)

PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3,
              "<=": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}
SET_OPS = {"and", "or", "unless"}
AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk",
                "bottomk", "quantile"}
RANGE_FUNCTIONS = {"rate", "irate", "increase", "delta", "idelta", "deriv", "changes",
                   "resets", "predict_linear", "min_over_time", "max_over_time",
                   "avg_over_time", "sum_over_time", "count_over_time", "last_over_time"}
VECTOR_FUNCTIONS = {"abs", "ceil", "floor", "round", "clamp_min", "clamp_max", "sqrt", "exp",
                    "ln", "log2", "log10", "timestamp"}
OTHER_FUNCTIONS = {"histogram_quantile", "absent", "vector", "scalar"}


@dataclass(frozen=True)
class Value:
    """What an expression yields: a scalar (labels None) or a vector with these labels."""
    labels: frozenset[str] | None
    range: bool = False
    equal_matchers: frozenset[str] = frozenset()  # for absent(): the labels it keeps


class PromQL:
    """Parses one expression of the subset the ops files use and checks it against the
    exported metrics; problems collects what is wrong, in words."""

    def __init__(self, expr: str, exported: Exported, recorded: dict[str, frozenset[str]]):
        self.exported, self.recorded = exported, recorded
        self.problems: list[str] = []
        self.metrics: set[str] = set()
        self.labels_used: set[str] = set()
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(expr):
            m = TOKEN.match(expr, pos)
            if not m:
                raise SyntaxError(f"cannot read {expr[pos:pos + 20]!r}")
            pos = m.end()
            if m.lastgroup != "space":
                self.tokens.append((m.lastgroup, m.group()))
        self.i = 0
        self.value = self.expr(0)
        if self.i != len(self.tokens):
            raise SyntaxError(f"trailing {self.tokens[self.i:]}")

    # tokens
    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> str:
        if self.i >= len(self.tokens):
            raise SyntaxError("unexpected end")
        k, text = self.tokens[self.i]
        if kind is not None and k != kind and text != kind:
            raise SyntaxError(f"expected {kind}, got {text!r}")
        self.i += 1
        return text

    def accept(self, text: str) -> bool:
        if self.peek() == text:
            self.i += 1
            return True
        return False

    def label_list(self) -> frozenset[str]:
        self.take("(")
        names: list[str] = []
        while not self.accept(")"):
            names.append(self.take("id"))
            if self.peek() != ")":
                self.take(",")
        self.labels_used.update(names)
        return frozenset(names)

    # grammar
    def expr(self, min_prec: int) -> Value:
        left = self.unary()
        while (op := self.peek()) in PRECEDENCE and PRECEDENCE[op] >= min_prec:
            self.take()
            self.accept("bool")
            on = ignoring = group_side = None
            extra: frozenset[str] = frozenset()
            if self.accept("on"):
                on = self.label_list()
            elif self.accept("ignoring"):
                ignoring = self.label_list()
            for side in ("group_left", "group_right"):
                if self.accept(side):
                    group_side = side
                    if self.peek() == "(":
                        extra = self.label_list()
            prec = PRECEDENCE[op]
            right = self.expr(prec if op == "^" else prec + 1)
            left = self.binary(op, left, right, on, ignoring, group_side, extra)
        return left

    def binary(self, op, left: Value, right: Value, on, ignoring, group_side, extra) -> Value:
        if left.range or right.range:
            self.problems.append(f"a range vector is an operand of {op}")
        if left.labels is None or right.labels is None:
            return left if right.labels is None else right
        lhs, rhs = left.labels, right.labels
        if on is not None:
            for side, labels in (("left", lhs), ("right", rhs)):
                for label in on - labels:
                    self.problems.append(f"{op} on({label}): the {side} side has no {label}")
            sig_l = sig_r = on
        else:
            ignored = ignoring or frozenset()
            for label in ignored - lhs - rhs:
                self.problems.append(f"{op} ignoring({label}): neither side has {label}")
            sig_l, sig_r = lhs - ignored, rhs - ignored
            if op != "or" and sig_l != sig_r:
                self.problems.append(f"{op} matches nothing: {sorted(lhs)} vs {sorted(rhs)}")
        if op in SET_OPS:
            return Value(lhs if op != "or" else lhs & rhs)
        if group_side == "group_left":
            for label in extra - rhs:
                self.problems.append(f"group_left({label}): the right side has no {label}")
            return Value(lhs | extra)
        if group_side == "group_right":
            for label in extra - lhs:
                self.problems.append(f"group_right({label}): the left side has no {label}")
            return Value(rhs | extra)
        return Value(on if on is not None else lhs - (ignoring or frozenset()))

    def unary(self) -> Value:
        kind, text = self.tokens[self.i] if self.i < len(self.tokens) else (None, None)
        if text == "-":
            self.take()
            return self.unary()
        if text == "(":
            self.take()
            inner = self.expr(0)
            self.take(")")
            return inner
        if kind == "num":
            self.take()
            return Value(None)
        if kind != "id":
            raise SyntaxError(f"unexpected {text!r}")
        name = self.take()
        if name in AGGREGATIONS:
            return self.aggregation(name)
        if self.peek() == "(":
            return self.function(name)
        return self.selector(name)

    def aggregation(self, name: str) -> Value:
        grouping = None
        if self.peek() in ("by", "without"):
            grouping = (self.take(), self.label_list())
        self.take("(")
        args = [self.expr(0)]
        while self.accept(","):
            args.append(self.expr(0))
        self.take(")")
        if grouping is None and self.peek() in ("by", "without"):
            grouping = (self.take(), self.label_list())
        arg = args[-1]
        if arg.labels is None or arg.range:
            self.problems.append(f"{name}() over a scalar or a range vector")
            return Value(frozenset())
        if name in ("topk", "bottomk"):
            return Value(arg.labels)
        if grouping is None:
            return Value(frozenset())
        how, labels = grouping
        for label in labels - arg.labels:
            self.problems.append(f"{name} {how} ({label}): its operand has no {label}")
        return Value(labels if how == "by" else arg.labels - labels)

    def function(self, name: str) -> Value:
        self.take("(")
        args = []
        if self.peek() != ")":
            args.append(self.expr(0))
            while self.accept(","):
                args.append(self.expr(0))
        self.take(")")
        vectors = [a for a in args if a.labels is not None]
        if name in RANGE_FUNCTIONS:
            if len(vectors) != 1 or not vectors[0].range:
                self.problems.append(f"{name}() needs one range vector")
                return Value(frozenset())
            return Value(vectors[0].labels)
        if name in VECTOR_FUNCTIONS:
            if len(vectors) != 1 or vectors[0].range:
                self.problems.append(f"{name}() needs one instant vector")
                return Value(frozenset())
            return Value(vectors[0].labels)
        if name == "histogram_quantile":
            if len(args) != 2 or args[0].labels is not None or args[1].labels is None:
                self.problems.append("histogram_quantile(phi, buckets) takes a scalar and a vector")
                return Value(frozenset())
            if "le" not in args[1].labels:
                self.problems.append("histogram_quantile over series without le")
            return Value(args[1].labels - {"le"})
        if name == "absent":
            return Value(vectors[0].equal_matchers if vectors else frozenset())
        if name == "vector":
            return Value(frozenset())
        if name == "scalar":
            return Value(None)
        raise SyntaxError(f"function {name}() is outside the subset this checker knows")

    def selector(self, name: str) -> Value:
        self.metrics.add(name)
        if name in self.exported.labels:
            labels = self.exported.labels[name] | TARGET_LABELS
        elif name in SYNTHETIC:
            labels = SYNTHETIC[name] | TARGET_LABELS
        elif name in self.recorded:
            labels = self.recorded[name]
        else:
            self.problems.append(f"{name} is not a metric the server exports")
            labels = TARGET_LABELS
        equal = set()
        if self.accept("{"):
            matchers = {}
            while not self.accept("}"):
                label = self.take("id")
                op = self.take("op")
                value = self.take("str")[1:-1]
                if op not in ("=", "!=", "=~", "!~"):
                    raise SyntaxError(f"matcher operator {op!r}")
                self.labels_used.add(label)
                matchers[label] = (op, value)
                if op == "=":
                    equal.add(label)
                if label not in labels:
                    self.problems.append(f"{name} has no label {label}")
                else:
                    self.check_value(name, label, op, value)
                if self.peek() != "}":
                    self.take(",")
            service, method = matchers.get("grpc_service"), matchers.get("grpc_method")
            if service and method and service[0] == "=" and method[0] == "=":
                if method[1] not in self.exported.services.get(service[1], ()):
                    self.problems.append(f"{service[1]} has no method {method[1]}")
        is_range = False
        if self.peek() is not None and self.tokens[self.i][0] == "range":
            self.take()
            is_range = True
        if self.accept("offset"):
            self.take("dur")
        return Value(labels, is_range, frozenset(equal))

    def check_value(self, name: str, label: str, op: str, value: str) -> None:
        known = self.exported.values.get(label)
        if known is None:
            return
        if op in ("=", "!="):
            if value not in known:
                self.problems.append(f'{name}{{{label}{op}"{value}"}}: no such {label}')
            return
        try:
            pattern = re.compile(value)
        except re.error as e:
            self.problems.append(f"{name}: bad regex {value!r}: {e}")
            return
        # A plain alternation names values, each of which must exist; any other regex
        # must match at least one.
        if re.fullmatch(r"[A-Za-z0-9_.]+(\|[A-Za-z0-9_.]+)*", value):
            for alt in value.split("|"):
                if alt not in known:
                    self.problems.append(f'{name}{{{label}{op}"{value}"}}: no such {label} {alt}')
        elif not any(pattern.fullmatch(v) for v in known):
            self.problems.append(f'{name}{{{label}{op}"{value}"}} matches no {label}')


def check(expr: str, exported: Exported, recorded: dict[str, frozenset[str]]) -> PromQL:
    q = PromQL(expr, exported, recorded)
    assert not q.problems, f"{expr}\n" + "\n".join(q.problems)
    bad = {label for label in q.labels_used if ID_LABEL.search(label)}
    assert not bad, f"{expr}: id labels {bad}"
    return q


@pytest.fixture(scope="module")
def recorded(groups, exported) -> dict[str, frozenset[str]]:
    """Recorded series and their labels, for rules and panels that use them."""
    out: dict[str, frozenset[str]] = {}
    for rule in records(groups):
        out[rule["record"]] = check(rule["expr"], exported, out).value.labels
    return out


def test_checker_catches_mistakes(exported):
    """The checker itself: each of these is a mistake it must name."""
    for expr, problem in (
        ('rate(mms_op_total[5m])', "not a metric"),
        ('sum by (grpc_method) (rate(mms_ops_total[5m]))', "has no grpc_method"),
        ('rate(mms_ops_total{result="INSUFICIENT_BALANCE"}[5m])', "no such result"),
        ('rate(mms_ops_total{result=~"OK|CARD_NOT_FUOND"}[5m])', "no such result"),
        ('rate(grpc_server_handled_total{grpc_service=~"mms[.]v2[.].+"}[5m])', "matches no"),
        ('histogram_quantile(0.99, sum by (job) (rate(mms_commit_duration_seconds_bucket[5m])))',
         "without le"),
        ('sum by (result) (rate(mms_ops_total[5m])) / sum(rate(mms_ops_total[5m]))',
         "matches nothing"),
        ('mms_queue_ops > 0 and on (result) mms_cards', "has no result"),
        ('rate(grpc_server_handled_total{grpc_service="mms.v1.PosService",'
         ' grpc_method="IssueCards"}[5m])', "has no method"),
        ('rate(mms_queue_ops)', "range vector"),
        ('mms_cards{card_no="1"}', "has no label card_no"),
    ):
        problems = PromQL(expr, exported, {}).problems
        assert any(problem in p for p in problems), (expr, problems)


# --- the rules ------------------------------------------------------------------------

def test_rules_are_true_to_the_exported_metrics(groups, exported, recorded):
    for rule in alerts(groups):
        check(rule["expr"], exported, recorded)


def test_every_alert_has_severity_summary_and_runbook(groups):
    docs = OPERATING.read_text()
    names = [r["alert"] for r in alerts(groups)]
    assert len(names) == len(set(names)), "duplicate alert names"
    for rule in alerts(groups):
        name = rule["alert"]
        assert re.fullmatch(r"Mms[A-Z][A-Za-z]+", name), name
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert rule.get("labels", {}).get("severity") in SEVERITIES, name
        ann = rule.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), name
        assert ann.get("runbook_url") == runbook_url(name), name
        assert f'<a id="alert-{name.lower()}"></a>' in docs, f"no runbook anchor for {name}"


def test_recording_rules_are_named_by_convention(groups):
    for rule in records(groups):
        assert re.fullmatch(r"mms:[a-z_]+:[a-z0-9_]+", rule["record"]), rule["record"]
        assert set(rule) == {"record", "expr"}, rule["record"]


def test_annotations_use_only_labels_the_alert_has(groups, exported, recorded):
    for rule in alerts(groups):
        labels = PromQL(rule["expr"], exported, recorded).value.labels
        assert labels is not None, rule["alert"]
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.(\w+)", text):
                assert label in labels, f"{rule['alert']}: {label} not in {sorted(labels)}"
            assert text.count("{{") == text.count("}}"), rule["alert"]


def test_runbook_table_lists_exactly_the_alerts(groups):
    docs = OPERATING.read_text()
    documented = set(re.findall(r'^\| <a id="alert-[a-z]+"></a>`(Mms\w+)`', docs, re.MULTILINE))
    assert documented == {r["alert"] for r in alerts(groups)}


def test_promtool_accepts_and_unit_tests_the_rules():
    promtool = shutil.which("promtool")
    if promtool is None:
        # .ci/run installs it, so in CI a missing promtool is a failure, not a skip.
        assert not os.environ.get("CI"), "promtool is missing in CI (.ci/run installs it)"
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    for args in (["check", "rules", str(RULES)], ["test", "rules", str(RULES_TEST)]):
        out = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr


# --- the dashboard --------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def grafana_expr(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def test_dashboard_shape(dashboard):
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
    for p in panels(dashboard):
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"], p["title"]


def test_dashboard_queries_are_true_to_the_exported_metrics(dashboard, exported, recorded):
    for p in panels(dashboard):
        for t in p["targets"]:
            q = check(grafana_expr(t["expr"]), exported, recorded)
            labels = q.value.labels or frozenset()
            for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
                assert label in labels, f"{p['title']}: legend uses {label}, not in {sorted(labels)}"


def test_dashboard_variables_are_true_to_the_exported_metrics(dashboard, exported):
    for v in dashboard["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["query"]["query"])
        assert m, v["name"]
        metric, label = m.groups()
        assert label in exported.labels[metric] | TARGET_LABELS, v["name"]


# Families the dashboard need not show, with the reason.
NOT_ON_DASHBOARD = {
    # Started minus handled is RPCs in progress; mms_inflight_ops shows that in ops.
    "grpc_server_started",
    # A fact of the store's history (records written before all-zero ids were refused),
    # constant while it runs; docs/operating.md says what a nonzero value means.
    "mms_zero_id_records",
}


def test_dashboard_shows_every_exported_family(dashboard, exported, recorded):
    shown = set()
    for p in panels(dashboard):
        for t in p["targets"]:
            shown |= PromQL(grafana_expr(t["expr"]), exported, recorded).metrics
    families = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported.labels}
    families = {f for f in families if f.startswith(("mms_", "grpc_server_"))}
    shown_families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in shown}
    assert families - NOT_ON_DASHBOARD <= shown_families, families - shown_families


def test_dashboard_has_the_panels_operators_expect(dashboard):
    titles = " | ".join(p["title"] for p in panels(dashboard)).lower()
    for words in ("rpc rate by method and code", "latency p50 / p99", "ops/s by type and result",
                  "rejects by result", "batch size", "commit duration", "queue depth",
                  "in-flight", "journal", "checkpoint lag", "lmdb map", "cards"):
        assert words in titles, words
