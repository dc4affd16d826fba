"""fairseq-b2b: bert2BERT (Chen et al., ACL 2022) as a fairseq extension.

Importing the package registers its models and tasks with fairseq; ``fairseq-train
--user-dir $(b2b-user-dir)`` does the same for stock fairseq commands.
"""
import argparse

import torch

__version__ = "0.1.0"


def _numpy_scalar_types() -> list:
    """Fine-tuned checkpoints (--report-mcc, --report-acc-and-f1, ...) keep the best dev score
    as a numpy scalar."""
    import importlib

    import numpy as np

    found = []
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            found.append(importlib.import_module(module).scalar)
        except (ImportError, AttributeError):
            continue
    return found + [np.dtype] + [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32")]


# fairseq checkpoints hold an argparse.Namespace (and numpy scalars); torch>=2.6 loads with
# weights_only=True, so allow-list exactly these types.
torch.serialization.add_safe_globals([argparse.Namespace, *_numpy_scalar_types()])

from . import models  # noqa: E402,F401
from . import tasks  # noqa: E402,F401
from . import criterions  # noqa: E402,F401
from .log_file import one_file_handler_per_log_file  # noqa: E402

one_file_handler_per_log_file()  # fairseq writes --log-file lines once more per epoch otherwise
