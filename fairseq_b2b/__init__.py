"""fairseq-b2b: bert2BERT (Chen et al., ACL 2022) as a fairseq extension.

Importing the package registers its models and tasks with fairseq; ``fairseq-train
--user-dir $(b2b-user-dir)`` does the same for stock fairseq commands.
"""
import argparse

import torch

__version__ = "0.1.0"

# fairseq checkpoints hold an argparse.Namespace; torch>=2.6 loads with weights_only=True.
torch.serialization.add_safe_globals([argparse.Namespace])

from . import models  # noqa: E402,F401
from . import tasks  # noqa: E402,F401
