"""How a sub-model runs one update (Algorithm 2, lines 5-7; a schedule's phase): the model as the
sub-model (:func:`active_submodel`), its forward and backward, and the optimizer step restricted
to the parameters it trains (:func:`partition_parameters`, :class:`fairseq_b2b.optim.RestrictedStep`).
"""
import contextlib
from typing import List, Tuple

import torch
from torch import nn

from ..flops import layer_stack_owner
from ..optim.restrict import RestrictedStep, UnsupportedOptimizer
from .submodel_sampling import Submodel


def partition_parameters(model) -> Tuple[List[nn.Parameter], List[List[nn.Parameter]], List[nn.Parameter]]:
    """(embedding block, per-layer parameters, head) of a b2b model; they cover all parameters.

    The head is everything outside the layer stack and the embedding block, plus the tied
    token embedding when it is also the head's output projection."""
    owner = layer_stack_owner(model)
    layers = [list(layer.parameters()) for layer in owner.layers]
    layer_ids = {id(p) for ps in layers for p in ps}
    input_ids = set()
    for name in ("embed_tokens", "embed_positions", "layernorm_embedding", "emb_layer_norm", "project_in_dim",
                 "quant_noise"):
        module = getattr(owner, name, None)
        if isinstance(module, nn.Module):
            input_ids.update(id(p) for p in module.parameters())
    output_ids = set()
    for module in (getattr(getattr(model, "encoder", None), "lm_head", None),
                   getattr(getattr(model, "decoder", None), "output_projection", None)):
        if isinstance(module, nn.Module):
            output_ids.update(id(p) for p in module.parameters())
    embedding, head = [], []
    for p in model.parameters():
        if id(p) in layer_ids:
            continue
        (embedding if id(p) in input_ids and id(p) not in output_ids else head).append(p)
    return embedding, layers, head


def _detach_input(module, args, kwargs):
    if args:
        return (args[0].detach(),) + tuple(args[1:]), kwargs
    kwargs = dict(kwargs)
    kwargs["x"] = kwargs["x"].detach()
    return args, kwargs


@contextlib.contextmanager
def active_submodel(model, sub: Submodel):
    """The model as ``sub`` for one update: its bottom ``depth`` layers, those below
    ``trainable_from`` without autograd (Algorithm 2, lines 5-6; MSLT's frozen layers), every
    position running layer 0 when ``sub.shared``, and the embedding output detached when the
    lowest trained layer is layer 0 but the embedding block is not trained (Algorithm 2's stage 1;
    StackBERT and MSLT's first stage train it)."""
    ctx = model.shared_layers(sub.depth) if sub.shared else model.submodel(sub.depth, sub.trainable_from)
    with ctx:
        handle = None
        if sub.trainable_from == 0 and not sub.train_embeddings:
            handle = layer_stack_owner(model).layers[0].register_forward_pre_hook(_detach_input, with_kwargs=True)
        try:
            yield model
        finally:
            if handle is not None:
                handle.remove()


stage1_submodel = active_submodel  # the name Algorithm 2's code and tests use


def unwrap_model(model):
    """The fairseq model inside the data-parallel wrappers."""
    from ..models.common import SubmodelMixin

    m = model
    for _ in range(8):
        if isinstance(m, SubmodelMixin) or m is None:
            break
        m = getattr(m, "module", None)
    return m if m is not None else model


def _ddp_requiring_all_grads(model) -> bool:
    """True for a ``pytorch_ddp`` wrapper built without ``--find-unused-parameters``: its
    reducer waits for a gradient of every parameter in every backward."""
    m = model
    for _ in range(8):
        if isinstance(m, torch.nn.parallel.DistributedDataParallel):
            return not m.find_unused_parameters
        m = getattr(m, "module", None)
        if m is None:
            return False
    return False


class SubmodelStep:
    """The update of a sub-model: forward, backward, restricted optimizer step."""

    def _active_params(self, model, sub: Submodel) -> List[nn.Parameter]:
        if self._active_model is not model:
            self._active, self._active_model = {}, model
        if sub not in self._active:
            embedding, layers, head = partition_parameters(model)
            if sub.shared:
                idle = {id(p) for ps in layers[1:] for p in ps}
                active = [p for p in model.parameters() if id(p) not in idle]
            else:
                active = [p for ps in layers[sub.trainable_from:sub.depth] for p in ps] + head
                if sub.trainable_from == 0 and sub.train_embeddings:
                    active += embedding
            self._active[sub] = active
        return self._active[sub]

    def _submodel_train_step(self, sub, sample, model, criterion, optimizer, update_num, ignore_grad):
        """FairseqTask.train_step for one sub-model (Algorithm 2, lines 5-6; a schedule's phase)."""
        from fairseq.optim.amp_optimizer import AMPOptimizer

        inner = unwrap_model(model)
        model.train()
        model.set_num_updates(update_num)
        amp = torch.autocast("cuda") if isinstance(optimizer, AMPOptimizer) else contextlib.nullcontext()
        with active_submodel(inner, sub):
            with torch.autograd.profiler.record_function("forward"), amp:
                loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        if _ddp_requiring_all_grads(model):
            # pytorch_ddp without --find-unused-parameters: give every inactive parameter a
            # zero gradient so that its reducer completes (RestrictedStep skips them anyway).
            active = {id(p) for p in self._active_params(inner, sub)}
            idle = [p.view(-1)[:1].float() for p in inner.parameters() if p.requires_grad and id(p) not in active]
            if idle:
                loss = loss + torch.cat(idle).sum() * 0.0
        with torch.autograd.profiler.record_function("backward"):
            optimizer.backward(loss)
        return loss, sample_size, logging_output

    _stage1_train_step = _submodel_train_step

    def optimizer_step(self, optimizer, model, update_num):
        sub = self.submodel_for(update_num)
        if sub is None:
            return super().optimizer_step(optimizer, model, update_num)
        if self._restricted is None or self._restricted.optimizer is not optimizer:
            try:
                self._restricted = RestrictedStep(optimizer)
            except UnsupportedOptimizer as e:
                raise SystemExit(f"fairseq-b2b: error: {e}") from None
        inner = unwrap_model(model)
        # Algorithm 2, line 7 (only the top lb layers of the sub-model and the shared head); a
        # schedule's phase: only the layers it trains (+ embeddings, head); sharing: layer 0.
        self._restricted.step(self._active_params(inner, sub))
        if sub.shared:
            self._mirror_shared(inner, optimizer)
