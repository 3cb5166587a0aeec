"""The server's limits and service names, each in one place. Every bound has its reason."""

from core.records import CLIENT_ID_BYTES  # noqa: F401 (the one definition, re-exported)

# The services' full names, as metrics labels and the guard know them.
POS = "mms.v1.PosService"
ADMIN = "mms.v1.AdminService"
REPORT = "mms.v1.ReportService"
CAMPAIGN = "mms.v1.CampaignService"

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
# A plan's or a campaign's settings as JSON (CampaignService): a `members` audience of
# 100,000 ids (core.domain.plans.AUDIENCE_IDS_MAX) is about 1.2 MB of text.
PLAN_JSON_CHARS_MAX = 2 * 1024 * 1024
# Grace for in-flight RPCs on shutdown before they are cancelled.
SHUTDOWN_GRACE_SECONDS = 10.0
# Undecodable requests are logged at most this often, as one line with their count
# since the previous line: a fuzzer or a broken client must not fill the disk.
MALFORMED_LOG_INTERVAL_S = 60.0

# The grpc.aio server's options, for mms serve and the benchmark's no-op ceiling alike:
# the message bound both ways, and no second server on the same port by accident.
SERVER_OPTIONS = (("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                  ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
                  ("grpc.so_reuseport", 0))
