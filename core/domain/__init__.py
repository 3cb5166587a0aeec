"""The chain's domain: every module here reaches LMDB only through the engine's
admin context (core.engine.writer.AdminContext)."""
