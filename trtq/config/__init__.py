"""Config files: schema, loading with located errors, and the fingerprint of what changes calibration."""

from trtq.config.loader import LoadedConfig, load_config
from trtq.config.schema import ALGORITHMS, Algorithm, TrtqConfig

__all__ = ["ALGORITHMS", "Algorithm", "LoadedConfig", "TrtqConfig", "load_config"]
