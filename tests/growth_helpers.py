"""Random state dicts in the fairseq layouts, for pure-torch growth tests."""
import torch

from fairseq_b2b.growth import BERT, GPT, ModelShape
from fairseq_b2b.growth.layout import FFN, HEAD, RES

VOCAB, POSITIONS = 50, 34


def random_state_dict(layout, shape: ModelShape, seed=0, vocab=VOCAB):
    """Every parameter of ``layout`` at ``shape``, with random values (LayerNorm gains too)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = {RES: shape.embed_dim, HEAD: shape.embed_dim, FFN: shape.ffn_dim}

    def tensor(param):
        dims = [sizes[spec[0]] if spec else (vocab if i == 0 else None) for i, spec in enumerate(param.axes)]
        if "embed_positions" in param.name:
            dims[0] = POSITIONS
        return torch.randn(*dims, generator=gen)

    sd = {}
    for param in layout.globals:
        if param.name in layout.tied:
            continue
        sd[param.name] = tensor(param)
    for alias, original in layout.tied.items():
        sd[alias] = sd[original]
    for i in range(shape.layers):
        for param in layout.layer_params:
            sd[layout.layer_key(i, param.name)] = tensor(param)
    return sd


LAYOUTS = {"bert": BERT, "gpt": GPT}
