"""Runtime backends for jetvox models behind one small Engine protocol."""

from jetvox.engines.base import Engine, EngineError, TensorSpec, check_feeds
from jetvox.engines.loader import open_engine

__all__ = ["Engine", "EngineError", "TensorSpec", "check_feeds", "open_engine"]
