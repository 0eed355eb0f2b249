"""Weights: reading and writing .pdparams/.safetensors with a load report (io), the restricted unpickler
for pickled files (safe_pickle), the download cache, and converters from other frameworks' checkpoints
(convert). Imports only errors.py; every layer above may use it."""
from .io import (WeightsError, WeightsFileNotFound, check_numeric, file_sha256, load_weights,  # noqa: F401
                 read_state_dict, save_weights)
