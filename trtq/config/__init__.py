"""Config files: the schema and loading with errors located by file, line and key."""

from trtq.config.loader import LoadedConfig, load_config
from trtq.config.schema import ALGORITHMS, Algorithm, TrtqConfig

__all__ = ["ALGORITHMS", "Algorithm", "LoadedConfig", "TrtqConfig", "load_config"]
