"""Helpers shared by the HuggingFace / GGUF import tests."""
import pytest

from fairseq_b2b.hf import common
from fairseq_b2b.hf.import_hf import main as import_main


def import_fails(argv) -> str:
    """b2b-import-hf's one-line refusal of ``argv`` (exit with a message, nothing else)."""
    with pytest.raises(SystemExit) as e:
        import_main(argv)
    msg = str(e.value.code)
    assert msg.startswith("b2b-import-hf: error: ") and "\n" not in msg, msg
    return msg


def load_fairseq(ckpt, data_dir):
    """The fairseq model and task of a written checkpoint, in eval mode."""
    from fairseq import checkpoint_utils

    with common.quiet_fairseq():
        models, _, task = checkpoint_utils.load_model_ensemble_and_task([ckpt], arg_overrides={"data": data_dir})
    return models[0].eval(), task
