"""``--task b2b_squad``: extractive question answering (SQuAD v1.1) on a ``b2b_bert`` model.

``DATA`` (what ``b2b-squad prepare`` writes) holds the pre-training ``dict.txt`` and
``bpe.codes`` and one SQuAD v1.1 JSON file per split (``train.json``, ``valid.json``).  Each
split is read, checked, tokenized with the pre-training pipeline and cut into windows when it
is loaded (:mod:`fairseq_b2b.eval.squad_data`); unmappable answers are counted and logged.
The model gets a span head (:mod:`fairseq_b2b.models.span_head`); train with
``--criterion b2b_span``.
"""

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from fairseq.data import Dictionary, FairseqDataset, data_utils
from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING, OmegaConf, open_dict

logger = logging.getLogger(__name__)


@dataclass
class SquadConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "folder with dict.txt, bpe.codes, train.json, valid.json"})
    bpe_codes: str = field(default="", metadata={"help": "BPE codes of pre-training (default: DATA/bpe.codes)"})
    max_positions: int = field(default=512, metadata={"help": "longest input sequence (question + window + 4)"})
    window_length: int = field(default=0, metadata={"help": "input length of one window, question + context + 4, "
                                                            "at most --max-positions (0: --max-positions, the "
                                                            "model's positions)"})
    doc_stride: int = field(default=128, metadata={"help": "step between the starts of a long context's windows"})
    max_query_length: int = field(default=64, metadata={"help": "question pieces kept (at most half the positions)"})
    max_answer_length: int = field(default=30, metadata={"help": "longest answer span decoded, in pieces"})
    seed: int = II("common.seed")


class SquadWindows(FairseqDataset):
    """The windows of one split: ``source`` (LongTensor) and start/end targets."""

    def __init__(self, feature_set, dictionary: Dictionary, shuffle: bool, seed: int):
        self.fs = feature_set
        self.pad = dictionary.pad()
        self.shuffle, self.seed, self.epoch = shuffle, seed, 1
        self.sizes = np.array([len(f.source) for f in feature_set.features], dtype=np.int64)

    def __getitem__(self, index):
        f = self.fs.features[index]
        return {"id": index, "source": torch.tensor(f.source, dtype=torch.long), "start": f.start, "end": f.end}

    def __len__(self):
        return len(self.fs.features)

    def collater(self, samples):
        if not samples:
            return {}
        src = data_utils.collate_tokens([s["source"] for s in samples], self.pad, left_pad=False)
        return {"id": torch.tensor([s["id"] for s in samples]),
                "net_input": {"src_tokens": src, "src_lengths": torch.tensor([len(s["source"]) for s in samples])},
                "target": {"start": torch.tensor([s["start"] for s in samples]),
                           "end": torch.tensor([s["end"] for s in samples])},
                "nsentences": len(samples), "ntokens": int(sum(len(s["source"]) for s in samples))}

    def num_tokens(self, index):
        return int(self.sizes[index])

    def size(self, index):
        return int(self.sizes[index])

    def ordered_indices(self):
        if self.shuffle:
            return np.random.RandomState(self.seed + self.epoch).permutation(len(self))
        return np.arange(len(self))

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False

    def set_epoch(self, epoch):
        self.epoch = epoch


@register_task("b2b_squad", dataclass=SquadConfig)
class SquadTask(FairseqTask):
    cfg: SquadConfig

    def __init__(self, cfg: SquadConfig, dictionary: Dictionary):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.feature_sets = {}
        self._tokenizer = None

    @classmethod
    def setup_task(cls, cfg: SquadConfig, **kwargs):
        dictionary = cls.load_dictionary(os.path.join(cfg.data, "dict.txt"))
        dictionary.add_symbol("<mask>")  # as masked_lm pre-training did: the model's vocabulary
        logger.info(f"dictionary: {len(dictionary)} types")
        return cls(cfg, dictionary)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from ..eval.squad_data import QATokenizer

            self._tokenizer = QATokenizer(self.cfg.bpe_codes or os.path.join(self.cfg.data, "bpe.codes"),
                                          self.dictionary)
        return self._tokenizer

    def split_file(self, split: str) -> str:
        return os.path.join(self.cfg.data, f"{split}.json")

    def load_feature_set(self, split: str, path: str = None, training: bool = None):
        from ..eval.squad_data import build_features, read_squad

        training = split == "train" if training is None else training
        length = min(self.cfg.window_length or self.cfg.max_positions, self.cfg.max_positions)
        fs = build_features(read_squad(path or self.split_file(split)), self.tokenizer, length,
                            self.cfg.doc_stride, self.cfg.max_query_length, training)
        st = fs.stats
        logger.info(f"{split}: {st['questions']} questions, {st['windows']} windows "
                    f"({st['windowed_questions']} questions over several), {st['unmappable_answers']} of "
                    f"{st['answers']} answers unmappable"
                    + (f" ({st['unmappable_train_questions']} questions without training windows)" if training else ""))
        self.feature_sets[split] = fs
        return fs

    def load_dataset(self, split, combine=False, epoch=1, **kwargs):
        fs = self.load_feature_set(split)
        self.datasets[split] = SquadWindows(fs, self.dictionary, shuffle=split == "train", seed=self.cfg.seed)
        return self.datasets[split]

    def build_model(self, cfg, from_checkpoint=False):
        from fairseq import models

        from ..models.span_head import register_span_head

        with open_dict(cfg) if OmegaConf.is_config(cfg) else _nothing():
            cfg.max_positions = self.cfg.max_positions
        model = models.build_model(cfg, self, from_checkpoint)
        if getattr(model, "family", None) != "bert":
            raise ValueError(f"--task b2b_squad needs a BERT-family model (b2b_bert_*), not {type(model).__name__}")
        register_span_head(model)
        return model

    def max_positions(self):
        return self.cfg.max_positions

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.dictionary


def _nothing():
    import contextlib

    return contextlib.nullcontext()
