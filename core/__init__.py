"""mms core: the transaction engine. Other packages use only the names exported here
and the record views in core.records."""

from core.engine.backup import backup
from core.engine.maintenance import RebuildReport, rebuild_rollups
from core.engine.replication import (
    Feed,
    Frame,
    Replica,
    ReplicationError,
    StaleEpoch,
    decode_frame,
    diverged,
    epoch_start,
    hot_copy,
    install_copy,
    read_position,
    wipe,
)
from core.engine.writer import (
    AdminContext,
    AdminRejected,
    AdminResult,
    BatchResult,
    CommitInfo,
    Engine,
    EngineClosed,
    EngineConfig,
    NotLeader,
    Overloaded,
    system_clock,
)
from core.rules import BonusTier, LevelRule, RulesConfig, RulesError

__all__ = [
    "AdminContext", "AdminRejected", "AdminResult", "BatchResult", "BonusTier", "CommitInfo", "Engine", "EngineClosed",
    "EngineConfig", "LevelRule", "Overloaded", "RebuildReport", "RulesConfig", "RulesError", "backup",
    "rebuild_rollups", "system_clock",
    # replication (core/engine/replication.py)
    "Feed", "Frame", "NotLeader", "Replica", "ReplicationError", "StaleEpoch", "decode_frame",
    "diverged", "epoch_start", "hot_copy", "install_copy", "read_position", "wipe",
]
