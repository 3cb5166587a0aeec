# The fixed-width records of mms, defined once. Cython reads and writes them as C
# structs; core/records.py derives the numpy structured dtypes from these very structs
# (offsets and sizes come from the compiler, see layout() in _fastpath.pyx), and
# tests/unit/test_records.py checks that both views see the same bytes.
cimport cython
from libc.stdint cimport int64_t, uint64_t, int32_t, uint32_t, uint16_t, uint8_t


# One card's hot state: 256 bytes. Money in fen, points in points, times in unix
# seconds. Invariant: points == lot0_points + lot1_points + lot2_points + permanent_points.
cdef packed struct Card:
    uint64_t card_no
    uint64_t member_id
    uint64_t primary_card_no        # supplementary card: spends from this card
    int64_t principal_fen           # paid-in stored value
    int64_t bonus_fen               # stored value given as recharge bonus
    int64_t points
    int64_t spend_total_fen         # lifetime payable amount of swipes
    int64_t recharge_total_fen      # lifetime principal recharged
    int64_t period_spend_fen        # spend in the current level period
    int64_t period_points           # points earned in the current level period
    int64_t period_recharge_fen     # principal recharged in the current level period
    int64_t expires_at_s            # card validity end; 0 = never
    int64_t level_expires_at_s      # level validity end; 0 = never
    int64_t last_visit_s
    uint64_t last_seq               # journal seq of this card's latest record
    int64_t supp_limit_fen          # supplementary spend limit; 0 = none
    int64_t pin_locked_until_s      # wrong PINs locked the card until then
    uint32_t visits
    int32_t count_uses              # remaining uses on a count card
    uint16_t type_id
    uint8_t level
    uint8_t status
    uint8_t pin_failures            # wrong PINs in a row
    uint8_t flags                   # CardFlag bits (bit 0: membership lapsed)
    uint16_t count_service          # the service a count card's uses are for
    int64_t issued_at_s
    uint64_t pin_hash               # keyed hash of the PIN with pin_salt; 0 = no PIN
    uint64_t pin_salt
    int64_t lot0_points             # points earned in lot_year (they expire first)
    int64_t lot1_points             # ... in lot_year + 1
    int64_t lot2_points             # ... in lot_year + 2
    int64_t permanent_points        # points that never expire
    int64_t supp_spent_fen          # supplementary card: spent against supp_limit_fen
    int64_t fee_paid_until_s        # annual fee paid up to
    uint64_t replaced_by            # the card that replaced this one
    int64_t level_period_start_s    # start of the level period the period_* counters cover
    uint16_t lot_year
    uint16_t plan_price_bp          # a plan's member price: bp of the shelf price paid; 0 = none
    uint32_t plan_price_plan        # the plan that gave it
    int64_t plan_price_until_s      # it applies while the swipe's time is before this


# One line item of a swipe: 24 bytes.
cdef packed struct Item:
    uint64_t sku
    int64_t amount_fen              # the line's gross total
    uint32_t qty
    uint16_t category
    uint8_t item_flags              # ITEM_NO_POINTS: group-buy or special item
    uint8_t _reserved


# One coupon on a card: 64 bytes. Journalled as a record of kind KIND_COUPON whose
# after-image holds this struct.
cdef packed struct Coupon:
    uint64_t coupon_id
    uint64_t card_no
    uint32_t template_id
    uint8_t coupon_status
    uint8_t _reserved0
    uint16_t _reserved1
    int64_t valid_from_s
    int64_t valid_to_s
    uint64_t redeemed_seq           # the swipe that redeemed it; 0 = not redeemed
    int64_t redeemed_fen
    uint64_t issued_seq


# One op as the engine receives it: 96 bytes. The server turns packed request
# columns into an array of these without a Python loop per op.
cdef packed struct Op:
    uint64_t client_hi              # client idempotency id, 16 bytes as two big-endian halves
    uint64_t client_lo
    uint64_t card_no
    int64_t amount_fen              # swipe: gross amount; recharge: paid principal
    uint32_t store_id
    uint32_t terminal_id
    uint32_t operator_id
    uint16_t category
    uint8_t op_type
    uint8_t op_flags
    int64_t points_offset           # swipe: points the cashier chose to redeem as cash
    uint64_t ref_hi                 # refund: the client id of the swipe it reverses
    uint64_t ref_lo
    uint32_t items_off              # line items: items[items_off : items_off + items_n]
    uint16_t items_n
    uint8_t coupons_n               # coupons: coupon_ids[coupons_off : coupons_off + coupons_n]
    uint8_t pin_len                 # digits entered; 0 = no PIN entered
    uint32_t coupons_off
    uint32_t pin                    # the PIN's digits as a number (pin_len keeps leading zeros)
    int64_t _reserved0


# One journal record: 160 bytes of what happened plus the card's after-image. The
# after-image makes recovery a copy (the newest record of a card is its state) and
# lets every balance be re-derived from the journal alone.
cdef packed struct JournalRec:
    uint64_t seq
    uint64_t client_hi
    uint64_t client_lo
    int64_t time_s
    uint64_t card_no
    uint64_t prev_seq               # previous record of the same card; 0 = none
    int64_t amount_fen              # as requested
    int64_t discount_fen            # level discount given (swipe)
    int64_t payable_fen             # amount after discount (swipe); paid principal (recharge)
    int64_t principal_delta_fen     # signed change of principal
    int64_t bonus_delta_fen         # signed change of bonus
    int64_t points_delta            # signed change of points
    uint32_t store_id
    uint32_t terminal_id
    uint32_t operator_id
    uint32_t rules_version
    uint16_t category
    uint8_t op_type
    uint8_t result
    uint8_t level_before
    uint8_t op_flags
    uint8_t kind                    # KIND_CARD: after is a Card; KIND_COUPON: a Coupon
    uint8_t _reserved0
    int64_t coupon_fen              # coupons' share of the discount
    int64_t offset_fen              # cash value of the points offset
    int64_t offset_points           # points the offset consumed
    uint64_t ref_seq                # refund: the swipe's seq; coupon record: its swipe's seq
    int64_t commission_fen          # staff commission earned by the op's operator (refund: < 0)
    Card after


# Rules compiled for the fast path. Arrays are owned by a Python object (core/rules.py)
# that outlives every batch that reads them.
cdef packed struct Level:
    int64_t discount_bp             # payable share, 10000 = no discount, 9500 = 5% off
    int64_t points_mult_bp          # 10000 = 1x
    int64_t up_points               # reach this level at period_points >= up_points; 0 = unused
    int64_t up_spend_fen            # ... or period_spend_fen >= this; 0 = unused
    int64_t up_recharge_fen         # ... or period_recharge_fen >= this; 0 = unused
    int64_t keep_spend_fen          # period spend that keeps the level at period end
    int64_t validity_s              # level validity from upgrade in days (as s); 0 = unused
    int64_t validity_years          # ... or in calendar years (wins); both 0 = never expires


cdef packed struct Tier:
    int64_t min_pay_fen
    int64_t bonus_fen
    int64_t points                  # extra points for this tier


# A coupon template as the swipe reads it: 72 bytes.
cdef packed struct CouponTpl:
    uint32_t template_id
    uint8_t tpl_kind                # COUPON_FIXED, COUPON_PERCENT, COUPON_THRESHOLD, COUPON_GIFT
    uint8_t stackable
    uint16_t _reserved
    int64_t value_fen               # fixed / threshold saving / gift value
    int64_t percent_bp              # COUPON_PERCENT: the share paid, 8000 = 20% off
    int64_t min_spend_fen           # the eligible lines must reach this
    int64_t max_off_fen             # cap of a percent coupon; 0 = none
    uint64_t gift_sku
    uint64_t level_mask             # bit l = level l allowed; 0 = all levels
    uint32_t stores_off             # allowed stores: scope[stores_off : stores_off + stores_n]
    uint16_t stores_n
    uint16_t cats_n                 # allowed categories: scope[cats_off : cats_off + cats_n]
    uint32_t cats_off
    uint32_t _reserved2


# One staff commission rule (per sku, or per category): 24 bytes. A line earns
# fixed_fen per unit plus bp of what was paid for it (floored).
cdef packed struct CommissionRule:
    uint64_t key                    # the sku, or the category
    int64_t fixed_fen
    int64_t bp


# What a card type limits, as the recharge reads it: 16 bytes. Only types that limit
# something are listed; a card whose type is not listed recharges anywhere.
cdef packed struct TypeLimit:
    uint16_t type_id
    uint8_t recharge_allowed        # 0 = cards of this type take no recharge at all
    uint8_t _reserved
    uint32_t stores_off             # stores allowed to recharge: scope[stores_off : +stores_n]
    uint32_t operators_off          # operators allowed: scope[operators_off : +operators_n]
    uint16_t stores_n               # 0 = every store
    uint16_t operators_n            # 0 = every operator


cdef struct RulesC:
    uint32_t version
    int32_t rounding                # ROUND_HALF_UP or ROUND_FLOOR
    int32_t spend_order             # SPEND_PRINCIPAL_FIRST or SPEND_BONUS_FIRST
    int32_t n_levels
    int32_t n_tiers
    int64_t max_amount_fen
    int64_t max_balance_fen
    int64_t points_per_yuan_bp      # 10000 = one point per whole yuan
    int64_t recharge_points_per_yuan_bp
    const Level *levels
    const Tier *tiers
    const int32_t *category_mult_bp     # 65536 entries; 0 = the category earns no points
    int32_t n_store_mult
    const uint64_t *store_ids           # sorted; points multiplier per store
    const int64_t *store_mult_bp
    int32_t n_skus
    const uint64_t *skus                # sorted; member price per sku and level
    const int64_t *prices               # n_skus x n_levels, fen per unit; 0 = none
    int64_t offset_points_per_yuan      # points worth one yuan at the till; 0 = no offsets
    int64_t offset_max_bp               # offset at most this share of the order
    int64_t offset_max_points           # ... and at most this many points; 0 = no cap
    int32_t points_valid_years          # points earned in year Y live to the end of Y+n; 0 = forever
    int32_t pin_max_failures
    int64_t pin_lock_s
    int64_t tz_offset_s                 # the chain's local time, for year boundaries
    uint64_t pin_key0                   # engine secret mixed into every PIN hash
    uint64_t pin_key1
    int32_t n_tpls
    const CouponTpl *tpls               # sorted by template_id
    const uint64_t *scope               # sorted runs of store ids, categories, operators
    int32_t n_types
    const TypeLimit *types              # sorted by type_id: card types' recharge limits
    int64_t commission_bp               # lines without a rule: this share of what was paid
    int32_t n_sku_comm
    const CommissionRule *sku_comm      # sorted by sku
    int32_t n_cat_comm
    const CommissionRule *cat_comm      # sorted by category


cdef enum:
    ROUND_HALF_UP = 1
    ROUND_FLOOR = 2
    SPEND_PRINCIPAL_FIRST = 1
    SPEND_BONUS_FIRST = 2


# The engine's answer for one op: 16 bytes.
cdef packed struct OpResult:
    uint64_t seq                    # journal seq of the op's record (or the first one's)
    int32_t rec_index               # index into this batch's records; -1 = an earlier batch
    uint8_t code                    # Result
    uint8_t replayed                # 1 = the client id was seen before; nothing applied
    uint16_t _reserved


# One slot of a KeyMap: key and value side by side, so a probe costs one cache miss.
cdef struct Entry:
    uint64_t hi
    uint64_t lo
    int64_t val


# final: never subclassed, so its methods are called directly (and inlined in the
# batch loop) instead of through the vtable.
@cython.final
cdef class KeyMap:
    cdef Entry *e
    cdef size_t cap
    cdef size_t size
    cdef size_t alloc           # entries allocated at e; cap (those in use) is at most this
    cdef int _alloc(self, size_t cap) except -1
    cdef int64_t get(self, uint64_t hi, uint64_t lo) noexcept nogil
    cdef void prefetch(self, uint64_t hi, uint64_t lo) noexcept nogil
    cdef void _get_many(self, const uint64_t *his, const uint64_t *los, int64_t *out,
                        Py_ssize_t n) noexcept nogil
    cdef int put(self, uint64_t hi, uint64_t lo, int64_t v, bint overwrite) except -1 nogil
    cdef int _grow(self) except -1 nogil
    cdef void clear(self) noexcept nogil
    cdef void reset(self, size_t expected) noexcept nogil


cdef class Rules:
    cdef RulesC c
    cdef object _levels
    cdef object _tiers
    cdef object _cats
    cdef object _store_ids
    cdef object _store_mult
    cdef object _skus
    cdef object _prices
    cdef object _tpls
    cdef object _scope
    cdef object _types
    cdef object _sku_comm
    cdef object _cat_comm


# The optional inputs of a batch: line items, and the swipes that refunds reverse.
cdef struct Extras:
    const Item *items
    Py_ssize_t n_items
    const JournalRec *refs
    const uint64_t *coupon_ids          # coupons the ops name (Op.coupons_off/coupons_n)
    Py_ssize_t n_coupon_ids
    const Coupon *coupons               # the coupon table (read only, like cards)
    Py_ssize_t n_coupons
    const uint64_t *ref_coupons         # refunds: coupons the referenced swipe redeemed
    const uint32_t *ref_coupons_off     # per op: ref_coupons[off : off + n]
    const uint8_t *ref_coupons_n
    const JournalRec *prefs             # refunds: the primary's record of a supplementary swipe


@cython.final
cdef class Batcher:
    cdef size_t batch_max
    cdef int32_t *newest
    cdef size_t n_slots
    cdef KeyMap batch_ids
    cdef KeyMap no_refunds
    cdef KeyMap batch_coupons
    cdef Py_ssize_t rec_room            # records out_recs holds (the debug build checks it)
    cdef int ensure_slots(self, size_t n) except -1
    cdef uint8_t _load_coupons(self, const Op *op, const Extras *ex, KeyMap coupon_index,
                               Coupon *cps, int64_t *cslots) noexcept nogil
    cdef Py_ssize_t _coupon_rec(self, JournalRec *recs, Py_ssize_t n_recs, uint64_t first_seq,
                                const Op *op, const Coupon *cp, int64_t slot, uint8_t op_type,
                                int64_t amount, uint64_t ref_seq, uint64_t prev_seq,
                                int64_t *slots, const RulesC *R) noexcept nogil
    cdef Py_ssize_t _restore_coupons(self, Py_ssize_t i, JournalRec *recs, Py_ssize_t n_recs,
                                     uint64_t first_seq, const Op *op, const JournalRec *orig,
                                     int64_t ref_prior, const Extras *ex, KeyMap coupon_index,
                                     int64_t *slots, const RulesC *R,
                                     uint64_t refund_seq) noexcept nogil
    cdef int64_t _current_slot(self, uint64_t card_no, const Card *cards, Py_ssize_t n_cards,
                               KeyMap card_index, const JournalRec *recs) noexcept nogil
    cdef const JournalRec *_payer_record(self, Py_ssize_t i, JournalRec *recs,
                                         Py_ssize_t n_recs, int64_t ref_prior,
                                         const JournalRec *orig, const Extras *ex) noexcept nogil
    cdef Py_ssize_t _run(self, const Op *ops, Py_ssize_t n, const Card *cards,
                         Py_ssize_t n_cards, KeyMap card_index, KeyMap id_index,
                         const RulesC *R, int64_t now_s, uint64_t first_seq,
                         JournalRec *recs, OpResult *res, int64_t *slots,
                         const Extras *ex, KeyMap refunded, KeyMap coupon_index) noexcept nogil
