"""The chain's rules as HQ configures them, validated and compiled for the fast path.

Rules are plain data (a TOML file at bootstrap, JSON in LMDB once set). Each change is
a journalled admin op that bumps the version; every journal record names the version
it was applied under.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from core import _fastpath
from core.records import LEVEL, TIER

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

SECONDS_PER_DAY = 86_400

# Bounds that keep every product on the money path inside int64 (see _fastpath.pyx).
MAX_AMOUNT_FEN_LIMIT = 10**13
MAX_BALANCE_FEN_LIMIT = 10**15
RATE_BP_LIMIT = 1_000_000  # 100 points per yuan
MULT_BP_LIMIT = 100_000  # 10x
CATEGORY_COUNT = 65_536

ROUNDING = _fastpath.RULE_SWITCHES["rounding"]
SPEND_ORDER = _fastpath.RULE_SWITCHES["spend_order"]


class RulesError(ValueError):
    """A rule set that cannot be applied; the message names the field."""


@dataclass(frozen=True)
class LevelRule:
    name: str
    discount_bp: int = 10_000
    points_mult_bp: int = 10_000
    up_points: int = 0
    up_spend_fen: int = 0
    up_recharge_fen: int = 0
    keep_spend_fen: int = 0
    validity_days: int = 0


@dataclass(frozen=True)
class BonusTier:
    min_pay_fen: int
    bonus_fen: int
    points: int = 0


def default_levels() -> tuple[LevelRule, ...]:
    # The seed's example: regular -> silver at 10,000 points, silver -> gold at 50,000;
    # an upgrade keeps the level for two years.
    return (
        LevelRule("regular"),
        LevelRule("silver", discount_bp=9_800, points_mult_bp=12_000, up_points=10_000,
                  keep_spend_fen=1_000_000, validity_days=730),
        LevelRule("gold", discount_bp=9_500, points_mult_bp=15_000, up_points=50_000,
                  keep_spend_fen=5_000_000, validity_days=730),
    )


@dataclass(frozen=True)
class RulesConfig:
    version: int = 1
    rounding: str = "half_up"
    spend_order: str = "principal_first"
    max_amount_fen: int = 100_000_000
    max_balance_fen: int = 10_000_000_000
    points_per_yuan_bp: int = 10_000
    recharge_points_per_yuan_bp: int = 0
    levels: tuple[LevelRule, ...] = field(default_factory=default_levels)
    tiers: tuple[BonusTier, ...] = ()
    no_points_categories: tuple[int, ...] = ()

    def validate(self) -> None:
        def need(cond: bool, what: str) -> None:
            if not cond:
                raise RulesError(what)

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        need(is_int(self.version) and 1 <= self.version < 2**32, "version must be 1..2^32-1")
        need(self.rounding in ROUNDING, f"rounding must be one of {sorted(ROUNDING)}")
        need(self.spend_order in SPEND_ORDER, f"spend_order must be one of {sorted(SPEND_ORDER)}")
        need(is_int(self.max_amount_fen) and 1 <= self.max_amount_fen <= MAX_AMOUNT_FEN_LIMIT,
             f"max_amount_fen must be 1..{MAX_AMOUNT_FEN_LIMIT}")
        need(is_int(self.max_balance_fen) and 1 <= self.max_balance_fen <= MAX_BALANCE_FEN_LIMIT,
             f"max_balance_fen must be 1..{MAX_BALANCE_FEN_LIMIT}")
        for name in ("points_per_yuan_bp", "recharge_points_per_yuan_bp"):
            v = getattr(self, name)
            need(is_int(v) and 0 <= v <= RATE_BP_LIMIT, f"{name} must be 0..{RATE_BP_LIMIT}")
        need(1 <= len(self.levels) <= 255, "between 1 and 255 levels")
        for i, lv in enumerate(self.levels):
            where = f"levels[{i}] ({lv.name})"
            need(is_int(lv.discount_bp) and 0 <= lv.discount_bp <= 10_000,
                 f"{where}.discount_bp must be 0..10000")
            need(is_int(lv.points_mult_bp) and 0 <= lv.points_mult_bp <= MULT_BP_LIMIT,
                 f"{where}.points_mult_bp must be 0..{MULT_BP_LIMIT}")
            for name in ("up_points", "up_spend_fen", "up_recharge_fen", "keep_spend_fen",
                         "validity_days"):
                v = getattr(lv, name)
                need(is_int(v) and 0 <= v < 2**62, f"{where}.{name} must be >= 0")
        prev = 0
        for i, t in enumerate(self.tiers):
            need(is_int(t.min_pay_fen) and 1 <= t.min_pay_fen <= MAX_AMOUNT_FEN_LIMIT,
                 f"tiers[{i}].min_pay_fen must be 1..{MAX_AMOUNT_FEN_LIMIT}")
            need(t.min_pay_fen > prev, "tiers must be sorted by min_pay_fen, strictly rising")
            need(is_int(t.bonus_fen) and 0 <= t.bonus_fen <= MAX_AMOUNT_FEN_LIMIT,
                 f"tiers[{i}].bonus_fen must be 0..{MAX_AMOUNT_FEN_LIMIT}")
            need(is_int(t.points) and 0 <= t.points <= 10**12, f"tiers[{i}].points must be 0..10^12")
            prev = t.min_pay_fen
        for c in self.no_points_categories:
            need(is_int(c) and 0 <= c < CATEGORY_COUNT, "categories are 0..65535")

    def compile(self) -> _fastpath.Rules:
        self.validate()
        levels = np.zeros(len(self.levels), dtype=LEVEL)
        for i, lv in enumerate(self.levels):
            levels[i] = (lv.discount_bp, lv.points_mult_bp, lv.up_points, lv.up_spend_fen,
                         lv.up_recharge_fen, lv.keep_spend_fen, lv.validity_days * SECONDS_PER_DAY)
        tiers = np.zeros(len(self.tiers), dtype=TIER)
        for i, t in enumerate(self.tiers):
            tiers[i] = (t.min_pay_fen, t.bonus_fen, t.points)
        cats = np.zeros(CATEGORY_COUNT, dtype=np.uint8)
        cats[list(self.no_points_categories)] = 1
        return _fastpath.Rules(
            self.version, ROUNDING[self.rounding], SPEND_ORDER[self.spend_order],
            self.max_amount_fen, self.max_balance_fen, self.points_per_yuan_bp,
            self.recharge_points_per_yuan_bp, levels, tiers, cats,
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: dict) -> RulesConfig:
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise RulesError(f"unknown rule fields: {sorted(unknown)}")
        if "levels" in d:
            d["levels"] = tuple(LevelRule(**lv) for lv in d["levels"])
        if "tiers" in d:
            d["tiers"] = tuple(BonusTier(**t) for t in d["tiers"])
        if "no_points_categories" in d:
            d["no_points_categories"] = tuple(d["no_points_categories"])
        rules = cls(**d)
        rules.validate()
        return rules

    @classmethod
    def from_json(cls, raw: bytes) -> RulesConfig:
        return cls.from_dict(json.loads(raw))

    @classmethod
    def from_toml(cls, path: str) -> RulesConfig:
        with open(path, "rb") as f:
            return cls.from_dict(tomllib.load(f).get("rules", {}))
