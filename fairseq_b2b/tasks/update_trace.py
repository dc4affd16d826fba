"""``--submodel-trace FILE``: one JSON line per update (sub-model, exact loss, FLOPs, boundaries applied,
a digest of every layer's weights at the start of the update), for debugging; rank r > 0 writes
``FILE.rank<r>``.
"""
import hashlib
import json
import math
from typing import List, Tuple

import torch

from ..flops import layer_stack_owner


def rank_and_world() -> Tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def layer_digests(model) -> List[str]:
    """A short digest of each layer's parameters (bit-exact identity of layers, for traces)."""
    out = []
    for layer in layer_stack_owner(model).layers:
        h = hashlib.sha1()
        for p in layer.parameters():
            h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        out.append(h.hexdigest()[:16])
    return out


def trace_path_for_rank(path: str, rank: int) -> str:
    return path if rank == 0 else f"{path}.rank{rank}"


class UpdateTrace:
    """Writes the trace record of an update (called from ``reduce_metrics``)."""

    def _trace(self, logging_outputs, update_num, sub, flops, counts, missed=0) -> None:
        rank, world = rank_and_world()
        path = trace_path_for_rank(self.b2b_cfg.submodel_trace, rank)
        loss = float(sum(log.get("loss", 0) for log in logging_outputs))
        sample_size = float(sum(log.get("sample_size", 0) for log in logging_outputs))
        record = {
            "num_updates": update_num + 1, "rank": rank, "world_size": world, "epoch": self._epoch,
            "stage": 1 if sub is not None else 2,
            "method": self._schedule.method, "phase": self._schedule.phase(self._epoch, update_num),
            "depth": sub.depth if sub is not None else self._flops.depth,
            "trainable_from": sub.trainable_from if sub is not None else 0,
            "train_embeddings": sub.train_embeddings if sub is not None else True,
            "shared": bool(sub is not None and sub.shared),
            "frozen_input": bool(sub is not None and sub.frozen_input),
            "loss": loss / sample_size / math.log(2) if sample_size else None,
            "ntok": counts[0], "sqtok": counts[1], "scored": counts[2],
            "update_flops": flops, "overflow_flops": missed, "train_flops": self.train_flops,
            "boundaries": self._events[1] if self._events[0] == update_num else [],
            "digests": self._digests[1] if self._digests[0] == update_num else None,
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
