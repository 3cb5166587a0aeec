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
from core.records import CATEGORY_COUNT, COMMISSION_RULE, COUPON_TPL, LEVEL, TIER, TYPE_LIMIT

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
# A level validity of a century keeps now + validity far inside int64 seconds.
MAX_VALIDITY_DAYS = 36_500
MAX_VALIDITY_YEARS = 100
# A commission rule pays at most 10,000 yuan per unit.
COMMISSION_FIXED_FEN_LIMIT = 1_000_000

ROUNDING = _fastpath.RULE_SWITCHES["rounding"]
SPEND_ORDER = _fastpath.RULE_SWITCHES["spend_order"]


def add_years(t_s: int, years: int, tz_offset_s: int) -> int:
    """t_s plus whole calendar years in the chain's local time (tz_offset_s east of UTC):
    the same local date and time of day, 29 February -> 28 February in a year without
    one. The one rule for every validity that says years (card validity, level
    validity, renewal, annual fees); the fast path's upgrade uses the same C function."""
    return int(_fastpath.add_years(int(t_s), int(years), int(tz_offset_s)))


def add_years_array(t_s: np.ndarray, years: np.ndarray, tz_offset_s: int) -> np.ndarray:
    """add_years over int64 arrays (bulk runs such as the level review)."""
    return _fastpath.add_years_array(np.asarray(t_s, np.int64), np.asarray(years, np.int64),
                                     int(tz_offset_s))


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
    # How long a level lasts from the day it is entered: validity_years calendar years
    # in the chain's time zone (the seed's "two years from the upgrade"), or
    # validity_days days; at most one of them is set, neither = the level never ends.
    validity_days: int = 0
    validity_years: int = 0


@dataclass(frozen=True)
class BonusTier:
    min_pay_fen: int
    bonus_fen: int
    points: int = 0


_K = _fastpath.CouponKind
COUPON_KINDS = {"fixed": int(_K.COUPON_FIXED), "percent": int(_K.COUPON_PERCENT),
                "threshold": int(_K.COUPON_THRESHOLD), "gift": int(_K.COUPON_GIFT)}


@dataclass(frozen=True)
class CouponTemplate:
    """A kind of coupon HQ issues. kind: fixed (value_fen off), percent (pay percent_bp of
    the eligible lines, saving capped by max_off_fen), threshold (spend min_spend_fen,
    save value_fen), gift (the gift_sku's lines free up to value_fen). Empty stores,
    categories or levels allow all. Quantity and budget bound what may be issued."""
    template_id: int
    name: str
    kind: str
    value_fen: int = 0
    percent_bp: int = 10_000
    min_spend_fen: int = 0
    max_off_fen: int = 0
    gift_sku: int = 0
    stackable: bool = False
    stores: tuple[int, ...] = ()
    categories: tuple[int, ...] = ()
    levels: tuple[int, ...] = ()
    valid_days: int = 30
    total_quantity: int = 0
    budget_fen: int = 0

    def face_fen(self) -> int:
        """What one coupon can cost the chain at most, for the budget."""
        if self.kind == "percent":
            return self.max_off_fen
        return self.value_fen


@dataclass(frozen=True)
class RechargeLimit:
    """Who may recharge the cards of one card type (core/domain/cards.py's CardType carries
    it; the engine enforces it inside the recharge). Empty id lists = every store or
    operator."""

    allowed: bool = True
    store_ids: tuple[int, ...] = ()
    operator_ids: tuple[int, ...] = ()

    def limits(self) -> bool:
        return not self.allowed or bool(self.store_ids) or bool(self.operator_ids)

    @classmethod
    def of_card_type(cls, card_type: dict) -> RechargeLimit:
        """The limit a card type's JSON form (CardType.to_json) states."""
        return cls(bool(card_type.get("recharge_allowed", True)),
                   tuple(int(i) for i in card_type.get("recharge_store_ids", ())),
                   tuple(int(i) for i in card_type.get("recharge_operator_ids", ())))


@dataclass(frozen=True)
class CommissionRule:
    """Staff commission for the lines of one sku or one category (kind "sku" or
    "category"): fixed_fen per unit plus bp of what the member paid for the line
    (after discounts, coupons and offset; floored). A sku's rule wins over its
    category's; lines with neither earn RulesConfig.commission_bp. A count card's use
    earns its service's (category's) fixed_fen per use."""
    kind: str
    key: int
    fixed_fen: int = 0
    bp: int = 0


def default_levels() -> tuple[LevelRule, ...]:
    # The seed's example: regular -> silver at 10,000 points, silver -> gold at 50,000;
    # an upgrade keeps the level for two years.
    return (
        LevelRule("regular"),
        LevelRule("silver", discount_bp=9_800, points_mult_bp=12_000, up_points=10_000,
                  keep_spend_fen=1_000_000, validity_years=2),
        LevelRule("gold", discount_bp=9_500, points_mult_bp=15_000, up_points=50_000,
                  keep_spend_fen=5_000_000, validity_years=2),
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
    # (category, multiplier bp) and (store id, multiplier bp); unlisted ones earn 1x.
    category_points_mult_bp: tuple[tuple[int, int], ...] = ()
    store_points_mult_bp: tuple[tuple[int, int], ...] = ()
    # (sku, (price fen per unit at level 0, level 1, ...)); 0 = no member price there.
    member_prices: tuple[tuple[int, tuple[int, ...]], ...] = ()
    # Points offset at the till: 100 points = 1 yuan, at most half the order by default.
    offset_points_per_yuan: int = 100
    offset_max_bp: int = 5_000
    offset_max_points: int = 0
    # Points earned in year Y stay valid to 31 Dec of Y + points_valid_years (local
    # time); 0 = points never expire.
    points_valid_years: int = 1
    tz_offset_s: int = 8 * 3_600
    pin_max_failures: int = 5
    pin_lock_s: int = 30 * 60
    coupon_templates: tuple[CouponTemplate, ...] = ()
    # Staff commission of the op's operator, journalled with each swipe (0 = none).
    commission_bp: int = 0
    commission_rules: tuple[CommissionRule, ...] = ()

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
            for name in ("up_points", "up_spend_fen", "up_recharge_fen", "keep_spend_fen"):
                v = getattr(lv, name)
                need(is_int(v) and 0 <= v < 2**62, f"{where}.{name} must be >= 0")
            need(is_int(lv.validity_days) and 0 <= lv.validity_days <= MAX_VALIDITY_DAYS,
                 f"{where}.validity_days must be 0..{MAX_VALIDITY_DAYS}")
            need(is_int(lv.validity_years) and 0 <= lv.validity_years <= MAX_VALIDITY_YEARS,
                 f"{where}.validity_years must be 0..{MAX_VALIDITY_YEARS}")
            need(not (lv.validity_days and lv.validity_years),
                 f"{where}: set validity_days or validity_years, not both")
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
        for c, m in self.category_points_mult_bp:
            need(is_int(c) and 0 <= c < CATEGORY_COUNT, "categories are 0..65535")
            need(is_int(m) and 0 <= m <= MULT_BP_LIMIT, f"category multipliers are 0..{MULT_BP_LIMIT}")
        stores = [st for st, _ in self.store_points_mult_bp]
        need(len(set(stores)) == len(stores), "a store appears twice in store_points_mult_bp")
        for st, m in self.store_points_mult_bp:
            need(is_int(st) and 0 <= st < 2**32, "store ids are 0..2^32-1")
            need(is_int(m) and 0 <= m <= MULT_BP_LIMIT, f"store multipliers are 0..{MULT_BP_LIMIT}")
        skus = [sku for sku, _ in self.member_prices]
        need(len(set(skus)) == len(skus), "a sku appears twice in member_prices")
        for sku, prices in self.member_prices:
            need(is_int(sku) and 1 <= sku < 2**64, "skus are 1..2^64-1")
            need(len(prices) == len(self.levels), f"sku {sku}: one member price per level")
            need(all(is_int(p) and 0 <= p <= MAX_AMOUNT_FEN_LIMIT for p in prices),
                 f"sku {sku}: prices are 0..{MAX_AMOUNT_FEN_LIMIT} fen")
        need(is_int(self.offset_points_per_yuan) and 0 <= self.offset_points_per_yuan <= 1_000_000,
             "offset_points_per_yuan must be 0..1000000")
        need(is_int(self.offset_max_bp) and 0 <= self.offset_max_bp <= 10_000,
             "offset_max_bp must be 0..10000")
        need(is_int(self.offset_max_points) and 0 <= self.offset_max_points <= 10**15,
             "offset_max_points must be >= 0")
        need(is_int(self.points_valid_years) and 0 <= self.points_valid_years <= 2,
             "points_valid_years must be 0 (never expire), 1 or 2")
        need(is_int(self.tz_offset_s) and -14 * 3600 <= self.tz_offset_s <= 14 * 3600,
             "tz_offset_s must be within +-14 hours")
        need(is_int(self.pin_max_failures) and 1 <= self.pin_max_failures <= 100,
             "pin_max_failures must be 1..100")
        need(is_int(self.pin_lock_s) and 0 <= self.pin_lock_s <= 366 * 86_400,
             "pin_lock_s must be 0..one year")
        ids = [t.template_id for t in self.coupon_templates]
        need(len(set(ids)) == len(ids), "a coupon template id appears twice")
        for t in self.coupon_templates:
            where = f"coupon_templates[{t.template_id}]"
            need(is_int(t.template_id) and 1 <= t.template_id < 2**32, f"{where}: id 1..2^32-1")
            need(isinstance(t.name, str) and 1 <= len(t.name.strip()) <= 60,
                 f"{where}: name must be 1..60 characters")
            need(t.kind in COUPON_KINDS, f"{where}: kind must be one of {sorted(COUPON_KINDS)}")
            for name in ("value_fen", "min_spend_fen", "max_off_fen", "budget_fen"):
                v = getattr(t, name)
                need(is_int(v) and 0 <= v <= MAX_AMOUNT_FEN_LIMIT, f"{where}: {name} 0..{MAX_AMOUNT_FEN_LIMIT}")
            need(is_int(t.percent_bp) and 0 <= t.percent_bp <= 10_000, f"{where}: percent_bp 0..10000")
            need(t.kind == "percent" or t.value_fen > 0, f"{where}: value_fen must be > 0")
            need(t.kind != "percent" or t.percent_bp < 10_000, f"{where}: percent_bp must be < 10000")
            need(t.kind != "threshold" or t.min_spend_fen > 0, f"{where}: a threshold needs min_spend_fen")
            need(t.kind != "gift" or (is_int(t.gift_sku) and t.gift_sku > 0), f"{where}: a gift needs gift_sku")
            need(all(is_int(x) and 0 <= x < 2**32 for x in t.stores), f"{where}: stores 0..2^32-1")
            need(all(is_int(x) and 0 <= x < CATEGORY_COUNT for x in t.categories), f"{where}: categories 0..65535")
            need(all(is_int(x) and 0 <= x < 64 for x in t.levels), f"{where}: levels 0..63")
            need(len(t.stores) < 65_536 and len(t.categories) < 65_536, f"{where}: too many stores or categories")
            need(is_int(t.valid_days) and 1 <= t.valid_days <= MAX_VALIDITY_DAYS, f"{where}: valid_days 1..{MAX_VALIDITY_DAYS}")
            need(is_int(t.total_quantity) and t.total_quantity >= 0, f"{where}: total_quantity >= 0")
        need(is_int(self.commission_bp) and 0 <= self.commission_bp <= 10_000,
             "commission_bp must be 0..10000")
        seen: set[tuple[str, int]] = set()
        for r in self.commission_rules:
            where = f"commission_rules[{r.kind} {r.key}]"
            need(r.kind in ("sku", "category"), f"{where}: kind must be sku or category")
            need(is_int(r.key) and (0 < r.key < 2**64 if r.kind == "sku" else 0 <= r.key < CATEGORY_COUNT),
                 f"{where}: key must be a sku (1..2^64-1) or a category (0..65535)")
            need((r.kind, r.key) not in seen, f"{where}: appears twice")
            seen.add((r.kind, r.key))
            need(is_int(r.fixed_fen) and 0 <= r.fixed_fen <= COMMISSION_FIXED_FEN_LIMIT,
                 f"{where}: fixed_fen 0..{COMMISSION_FIXED_FEN_LIMIT}")
            need(is_int(r.bp) and 0 <= r.bp <= 10_000, f"{where}: bp 0..10000")

    def _compile_commission(self) -> tuple[np.ndarray, np.ndarray]:
        tables = []
        for kind in ("sku", "category"):
            rules = sorted((r for r in self.commission_rules if r.kind == kind),
                           key=lambda r: r.key)
            t = np.zeros(len(rules), dtype=COMMISSION_RULE)
            for i, r in enumerate(rules):
                t[i] = (r.key, r.fixed_fen, r.bp)
            tables.append(t)
        return tables[0], tables[1]

    def compile(self, pin_key: tuple[int, int] = (0, 0),
                type_limits: dict[int, RechargeLimit] | None = None) -> _fastpath.Rules:
        """The fast path's tables. pin_key is the engine's secret for PIN hashes;
        type_limits are the card types' recharge limits by type id."""
        self.validate()
        levels = np.zeros(len(self.levels), dtype=LEVEL)
        for i, lv in enumerate(self.levels):
            levels[i] = (lv.discount_bp, lv.points_mult_bp, lv.up_points, lv.up_spend_fen,
                         lv.up_recharge_fen, lv.keep_spend_fen, lv.validity_days * SECONDS_PER_DAY,
                         lv.validity_years)
        tiers = np.zeros(len(self.tiers), dtype=TIER)
        for i, t in enumerate(self.tiers):
            tiers[i] = (t.min_pay_fen, t.bonus_fen, t.points)
        cats = np.full(CATEGORY_COUNT, 10_000, dtype=np.int32)
        for c, m in self.category_points_mult_bp:
            cats[c] = m
        cats[list(self.no_points_categories)] = 0
        stores = sorted(self.store_points_mult_bp)
        prices = sorted(self.member_prices)
        tpls, scope = self._compile_coupons()
        limits = _compile_type_limits(type_limits or {}, scope)
        sku_comm, cat_comm = self._compile_commission()
        return _fastpath.Rules(
            self.version, ROUNDING[self.rounding], SPEND_ORDER[self.spend_order],
            self.max_amount_fen, self.max_balance_fen, self.points_per_yuan_bp,
            self.recharge_points_per_yuan_bp, levels, tiers, cats,
            store_ids=np.array([st for st, _ in stores], dtype=np.uint64),
            store_mult_bp=np.array([m for _, m in stores], dtype=np.int64),
            skus=np.array([sku for sku, _ in prices], dtype=np.uint64),
            prices=np.array([list(p) for _, p in prices], dtype=np.int64).reshape(
                len(prices), len(self.levels)),
            offset_points_per_yuan=self.offset_points_per_yuan,
            offset_max_bp=self.offset_max_bp, offset_max_points=self.offset_max_points,
            points_valid_years=self.points_valid_years, pin_max_failures=self.pin_max_failures,
            pin_lock_s=self.pin_lock_s, tz_offset_s=self.tz_offset_s,
            pin_key0=pin_key[0], pin_key1=pin_key[1], coupon_tpls=tpls,
            scope=np.array(scope, dtype=np.uint64), type_limits=limits,
            commission_bp=self.commission_bp, sku_commission=sku_comm,
            category_commission=cat_comm,
        )

    def _compile_coupons(self) -> tuple[np.ndarray, list[int]]:
        tpls = np.zeros(len(self.coupon_templates), dtype=COUPON_TPL)
        scope: list[int] = [0]
        for i, t in enumerate(sorted(self.coupon_templates, key=lambda t: t.template_id)):
            row = tpls[i]
            row["template_id"], row["tpl_kind"] = t.template_id, COUPON_KINDS[t.kind]
            row["stackable"] = int(t.stackable)
            row["value_fen"], row["percent_bp"] = t.value_fen, t.percent_bp
            row["min_spend_fen"], row["max_off_fen"] = t.min_spend_fen, t.max_off_fen
            row["gift_sku"] = t.gift_sku
            row["level_mask"] = sum(1 << lv for lv in set(t.levels))
            row["stores_off"], row["stores_n"] = len(scope), len(set(t.stores))
            scope.extend(sorted(set(t.stores)))
            row["cats_off"], row["cats_n"] = len(scope), len(set(t.categories))
            scope.extend(sorted(set(t.categories)))
        return tpls, scope

    def coupon_template(self, template_id: int) -> CouponTemplate | None:
        for t in self.coupon_templates:
            if t.template_id == template_id:
                return t
        return None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: dict) -> RulesConfig:
        """Rules from plain data (JSON, TOML). A value of the wrong shape is a RulesError
        that names the field and what it must be."""
        if not isinstance(d, dict):
            raise RulesError("the rules must be an object of rule fields")
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise RulesError(f"unknown rule fields: {sorted(unknown)}")
        if "levels" in d:
            d["levels"] = _records(d["levels"], "levels", LevelRule)
        if "tiers" in d:
            d["tiers"] = _records(d["tiers"], "tiers", BonusTier)
        if "no_points_categories" in d:
            d["no_points_categories"] = _ints(d["no_points_categories"], "no_points_categories")
        for name in ("category_points_mult_bp", "store_points_mult_bp"):
            if name in d:
                d[name] = tuple(tuple(_ints(pair, f"{name}[{i}]", 2))
                                for i, pair in enumerate(_list(d[name], name)))
        if "coupon_templates" in d:
            d["coupon_templates"] = _records(
                d["coupon_templates"], "coupon_templates", CouponTemplate,
                lists=("stores", "categories", "levels"))
        if "commission_rules" in d:
            d["commission_rules"] = _records(d["commission_rules"], "commission_rules",
                                             CommissionRule)
        if "member_prices" in d:
            prices = []
            for i, pair in enumerate(_list(d["member_prices"], "member_prices")):
                where = f"member_prices[{i}]"
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise RulesError(f"{where} must be [sku, [price fen per level, ...]]")
                prices.append((_ints([pair[0]], where)[0], _ints(pair[1], f"{where}[1]")))
            d["member_prices"] = tuple(prices)
        rules = cls(**d)
        rules.validate()
        return rules

    @classmethod
    def from_json(cls, raw: bytes) -> RulesConfig:
        try:
            doc = loads_bounded(raw, "the rules JSON", chars_max=RULES_JSON_CHARS_MAX)
        except ValueError as e:
            raise RulesError(str(e)) from None
        return cls.from_dict(doc)

    @classmethod
    def from_toml(cls, path: str) -> RulesConfig:
        with open(path, "rb") as f:
            return cls.from_dict(tomllib.load(f).get("rules", {}))


def _list(value: object, where: str) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        raise RulesError(f"{where} must be a list")
    return value


def _ints(value: object, where: str, n: int | None = None) -> tuple[int, ...]:
    """A list of whole numbers (n of them, when n is given)."""
    items = _list(value, where)
    if n is not None and len(items) != n:
        raise RulesError(f"{where} must be a list of {n} whole numbers")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise RulesError(f"{where} must hold whole numbers only")
    return tuple(items)


def _records(value: object, where: str, kind: type, lists: tuple[str, ...] = ()) -> tuple:
    """A list of objects, each with the fields of the dataclass kind; fields named in
    lists are lists of whole numbers."""
    fields = dataclasses.fields(kind)
    names = [f.name for f in fields]
    required = [f.name for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    out = []
    for i, item in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise RulesError(f"{at} must be an object with fields {names}")
        unknown = sorted(set(item) - set(names))
        if unknown:
            raise RulesError(f"{at}: unknown fields {unknown}; the fields are {names}")
        missing = [n for n in required if n not in item]
        if missing:
            raise RulesError(f"{at}: missing fields {missing}")
        item = {**item, **{k: _ints(item[k], f"{at}.{k}") for k in lists if k in item}}
        out.append(kind(**item))
    return tuple(out)


# Bounds on JSON taken from callers (rules, member custom fields): nesting is refused
# past JSON_DEPTH_MAX (the rules nest 3 deep), and a document past its size bound is
# refused before it is parsed.
JSON_DEPTH_MAX = 16
RULES_JSON_CHARS_MAX = 1024 * 1024


def json_depth(doc: object) -> int:
    """How deep lists and objects nest in doc (a scalar is 0), without recursion."""
    depth, stack = 0, [(doc, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, list):
            continue
        depth = max(depth, d)
        stack.extend((x, d + 1) for x in v if isinstance(x, (dict, list)))
    return depth


def loads_bounded(text: str | bytes, what: str, *, chars_max: int,
                  depth_max: int = JSON_DEPTH_MAX) -> object:
    """json.loads with named bounds; ValueError names what and the rule broken."""
    if len(text) > chars_max:
        raise ValueError(f"{what} is longer than {chars_max} characters")
    try:
        doc = json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} nests deeper than {depth_max} levels") from None
    except ValueError as e:
        pos = getattr(e, "pos", None)
        at = f" at character {pos}" if isinstance(pos, int) else ""
        raise ValueError(f"{what} is not valid JSON{at}") from None
    if json_depth(doc) > depth_max:
        raise ValueError(f"{what} nests deeper than {depth_max} levels")
    return doc


def _compile_type_limits(limits: dict[int, RechargeLimit], scope: list[int]) -> np.ndarray:
    """TypeLimit rows for the types that limit something, sorted by type id; their id
    lists are appended to scope as sorted runs."""
    rows = sorted((t, lim) for t, lim in limits.items() if lim.limits())
    out = np.zeros(len(rows), dtype=TYPE_LIMIT)
    for i, (type_id, lim) in enumerate(rows):
        if not 0 < type_id < 65_536:
            raise RulesError(f"card type id {type_id} out of range")
        stores, ops = sorted(set(lim.store_ids)), sorted(set(lim.operator_ids))
        if len(stores) >= 65_536 or len(ops) >= 65_536:
            raise RulesError(f"card type {type_id}: too many recharge stores or operators")
        row = out[i]
        row["type_id"], row["recharge_allowed"] = type_id, int(lim.allowed)
        row["stores_off"], row["stores_n"] = len(scope), len(stores)
        scope.extend(stores)
        row["operators_off"], row["operators_n"] = len(scope), len(ops)
        scope.extend(ops)
    return out
