"""The server's limits and service names, each in one place. Every bound has its reason."""

from core.records import CLIENT_ID_BYTES  # noqa: F401 (the one definition, re-exported)

# The services' full names, as metrics labels and the guard know them.
POS = "mms.v1.PosService"
ADMIN = "mms.v1.AdminService"
REPORT = "mms.v1.ReportService"
SEGMENT = "mms.v1.SegmentService"
CAMPAIGN = "mms.v1.CampaignService"
REPLICATION = "mms.v1.ReplicationService"

# A full batch request is about 110 KB and its response about 400 KB; 4 MiB leaves room
# for IssueCards and bulk summaries while refusing anything absurd before decoding it.
MESSAGE_BYTES_MAX = 4 * 1024 * 1024
# Ops accepted by this server and not yet answered. Half the engine's queue, so the
# server sheds load before the engine has to.
INFLIGHT_OPS_MAX = 131_072
# Submissions of coalesced single ops (unary Swipe, Recharge) in the engine at once.
# While one is being applied and committed, new single ops gather and go in the next
# submission when it is answered: the engine then takes fewer, fuller batches, and
# every batch costs the writer threads CPU and GIL time (on 2 cores, about 2 ms) that
# the event loop would otherwise have. A lone op still goes at once.
SINGLE_SUBMISSIONS_MAX = 1
# Batches one stream may have submitted and unanswered: enough to keep the writer busy
# across a network round trip, bounded so one stream cannot take the whole budget.
STREAM_PIPELINE_BATCHES_MAX = 8
# Rejected rows listed in one BulkRecharge summary (all of them are counted).
BULK_REJECTED_ROWS_MAX = 10_000
# How often the server re-evaluates every rule tag (the scheduler's rule-tag job; at most
# core.domain.segments.RULE_TAGS_MAX tags a run, one run at a time, in a worker thread).
# Hourly: "no visit for 60 days" or "birthday this month" move by the day, and an
# evaluation of 1,000,000 members costs about a second of one core.
RULE_TAG_EVAL_INTERVAL_S = 3600.0
# The server's scheduler (server/rpc/scheduler.py, on the leader only): how often it
# wakes; plan runs it drives one after another in a tick (the next tick takes the rest);
# settle ops per campaign in a tick (each reads at most
# core.domain.campaigns.SETTLE_RECORDS_MAX journal records); how long after its end a
# recharge campaign is still settled (recharges of its last minutes, a server that was
# down at the end).
SCHEDULER_TICK_S = 60.0
SCHEDULED_RUNS_MAX = 4
SCHEDULED_SETTLES_MAX = 10
# Ops a tick may spend sweeping the lists of plan-run starts given up midway
# (plans.sweep_abandoned; each op deletes at most plans.FREEZE_STEP_PAIRS pairs).
SCHEDULED_SWEEP_OPS_MAX = 64
SCHEDULER_SETTLE_AFTER_S = 86_400
# How old the behaviour columns a SegmentService read (count, members, export, report,
# RFM counts) may be before they are loaded again from the tailer's tables: a load costs
# seconds at 1,000,000 members, and under swipe load the tailer moves every second. Each
# answer names the seq its behaviour is of. Rule-tag evaluations always load exactly.
SEGMENT_READ_STALE_S = 30.0
# A plan's or a campaign's settings as JSON (CampaignService): a `members` audience of
# 100,000 ids (core.domain.plans.AUDIENCE_IDS_MAX) is about 1.2 MB of text.
PLAN_JSON_CHARS_MAX = 2 * 1024 * 1024
# Grace for in-flight RPCs on shutdown before they are cancelled.
SHUTDOWN_GRACE_SECONDS = 10.0
# Undecodable requests are logged at most this often, as one line with their count
# since the previous line: a fuzzer or a broken client must not fill the disk.
MALFORMED_LOG_INTERVAL_S = 60.0

# Replication (server/rpc/replication.py). A frame (one commit) travels in chunks of this
# size, below the message bound; one Subscribe read sends frames up to the second bound.
REPLICATION_CHUNK_BYTES = 2 << 20
REPLICATION_SEND_BYTES_MAX = 4 << 20
# An async primary asks its standbys to confirm at most this often (sync: every frame).
REPLICATION_ASYNC_CONFIRM_MS = 20
# A standby that lost its primary subscribes again after this long.
REPLICATION_RECONNECT_S = 0.5
# Status calls between nodes give up after this long.
REPLICATION_CONNECT_TIMEOUT_S = 5.0
# A standby waits this long for a primary to accept its subscription, then tries again:
# a stopped primary (SIGSTOP, a partition) accepts the connection and never answers. Far
# above a loaded primary's answer (retrying too early would throw the try away).
REPLICATION_ACCEPT_TIMEOUT_S = 30.0

# The grpc.aio server's options, for mms serve and the benchmark's no-op ceiling alike:
# the message bound both ways, and no second server on the same port by accident.
SERVER_OPTIONS = (("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                  ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
                  ("grpc.so_reuseport", 0))

# A refusal's message and each of its ErrorInfo metadata values, in UTF-8 bytes: they may
# quote the request (a hostile field of 5,000 characters), and the message goes twice in
# the trailers (grpc-message, percent-encoded, and the status detail), which a client
# refuses past 8 KiB (RESOURCE_EXHAUSTED, the ErrorInfo lost). Cut with an ellipsis.
ERROR_MESSAGE_BYTES_MAX = 512
ERROR_METADATA_VALUE_BYTES_MAX = 256

# hrep (session 10): the standby's receiving side (server/rpc/replication.py,
# Standby._follow). Chunks received and not yet applied, at most (a reader thread takes
# them off the call while the applier writes; each is at most the standby channel's
# receive bound, REPLICATION_SEND_BYTES_MAX + REPLICATION_CHUNK_BYTES, and a group
# commit's is tens of KB), and the bytes of frames written in one standby
# transaction, at most: frames that arrived while the previous transaction committed
# are written together (one commit, one fsync pair, one confirmation).
REPLICATION_RECEIVED_MAX = 16
REPLICATION_APPLY_BYTES_MAX = 32 << 20
# An async primary's Subscribe, woken by a new frame with its standby caught up, waits
# this long before it sends, so that the frames of those milliseconds travel in one
# message (one send, one receive, one standby transaction) rather than one each. Below
# REPLICATION_ASYNC_CONFIRM_MS (what an async standby's lag is read at); sync: 0.
REPLICATION_ASYNC_GATHER_MS = 10
