"""Pure-torch growth operators of bert2BERT (no fairseq import): state dict in, state dict out."""
from .grow import (  # noqa: F401
    METHODS,
    GrowthError,
    GrowthResult,
    ModelShape,
    check_growable,
    grow_state_dict,
    infer_shape,
    make_maps,
    stack_layer_order,
    widen_tensor,
)
from .layout import BERT, GPT, LAYOUTS, LLAMA, FamilyLayout, detect_family  # noqa: F401
