"""SQuAD v1.1 for fairseq-b2b's BERT: reading the JSON, tokenizing with character offsets,
windows over long contexts, and decoding spans back to text.

Tokenization is the pre-training pipeline's, in process: the same Moses call as
``b2b-preprocess`` (:func:`fairseq_b2b.data.pipeline._tokenize_line`, ``escape=False``), the
model's fastBPE codes, and its ``dict.txt`` (units it lacks become ``<unk>``).  Moses tokens
are substrings of the text (Moses only drops whitespace and control characters), so every
token, and every BPE piece of it, is aligned to the characters it came from.  An answer's
character span maps to the pieces it overlaps; it is *mappable* when those pieces map back to
exactly the answer's text, and counted as unmappable otherwise (an answer that starts or ends
inside a BPE piece, say).

One input sequence, RoBERTa's pair layout (fairseq ``sentence_prediction`` with
``--init-token 0 --separator-token 2``)::

    <s> question </s> </s> context-window </s>

Contexts longer than the positions leave for are cut into windows of ``budget`` tokens
starting every ``doc_stride`` tokens (BERT's ``run_squad.py`` convention: the stride is the
step between window starts); a training window whose answer is not entirely inside points
its start and end at ``<s>`` (position 0), as BERT does.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .common import EvalError

BOS_POSITION = 0
SPECIAL_TOKENS = 4  # <s> q </s> </s> c </s>


# ------------------------------------------------------------------------------ reading

@dataclass
class Example:
    qid: str
    question: str
    context: str
    answers: List[Tuple[str, int]]  # (text, answer_start)
    title: str = ""


def read_squad(path) -> List[Example]:
    """The questions of a SQuAD v1.1 JSON file, checked: one-line errors for a file that is not
    v1.1 JSON (v2.0's unanswerable questions included) and for an answer whose
    ``answer_start`` does not point at its text."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"SQuAD file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise EvalError(f"{path} is not SQuAD v1.1 JSON: {type(e).__name__}: {str(e).splitlines()[0][:120]}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise EvalError(f"{path} is not SQuAD v1.1 JSON: expected an object with a 'data' list of articles")
    version = data.get("version")
    if version is not None and str(version).lstrip("v") != "1.1":
        raise EvalError(f"{path} is SQuAD version {version!r}, not v1.1 (unanswerable questions are not supported)")
    examples: List[Example] = []
    seen = set()
    for a, article in enumerate(data["data"]):
        if not isinstance(article, dict) or not isinstance(article.get("paragraphs"), list):
            raise EvalError(f"{path} is not SQuAD v1.1 JSON: data[{a}] has no 'paragraphs' list")
        for p, para in enumerate(article["paragraphs"]):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(para, dict) or not isinstance(para.get("context"), str) \
                    or not isinstance(para.get("qas"), list):
                raise EvalError(f"{path} is not SQuAD v1.1 JSON: {where} needs a 'context' string and a 'qas' list")
            context = para["context"]
            for q, qa in enumerate(para["qas"]):
                here = f"{where}.qas[{q}]"
                if not isinstance(qa, dict) or not isinstance(qa.get("id"), str) \
                        or not isinstance(qa.get("question"), str) or not isinstance(qa.get("answers"), list):
                    raise EvalError(f"{path} is not SQuAD v1.1 JSON: {here} needs 'id', 'question' and 'answers'")
                if qa.get("is_impossible"):
                    raise EvalError(f"{path}: question {qa['id']} is unanswerable (SQuAD v2.0): only v1.1 is supported")
                if qa["id"] in seen:
                    raise EvalError(f"{path}: question id {qa['id']!r} occurs twice")
                seen.add(qa["id"])
                answers = []
                for n, ans in enumerate(qa["answers"]):
                    if not isinstance(ans, dict) or not isinstance(ans.get("text"), str) \
                            or not isinstance(ans.get("answer_start"), int) or isinstance(ans.get("answer_start"), bool):
                        raise EvalError(f"{path} is not SQuAD v1.1 JSON: {here}.answers[{n}] needs 'text' and an "
                                        "integer 'answer_start'")
                    start, text = ans["answer_start"], ans["text"]
                    if not text or start < 0 or context[start:start + len(text)] != text:
                        found = context[max(0, start):max(0, start) + len(text)]
                        raise EvalError(f"{path}: question {qa['id']}: answer {text[:60]!r} does not stand at "
                                        f"answer_start {start} of its context (found {found[:60]!r} there)")
                    answers.append((text, start))
                if not answers:
                    raise EvalError(f"{path}: question {qa['id']} has no answer (SQuAD v1.1 questions have at least one)")
                examples.append(Example(qa["id"], qa["question"], context, answers, str(article.get("title", ""))))
    if not examples:
        raise EvalError(f"{path} holds no questions")
    return examples


# ------------------------------------------------------------------------------ tokenizing

@dataclass
class Tokenized:
    """A text as dictionary indices, one per BPE piece, with each piece's characters
    ``[spans[i][0], spans[i][1])`` in the text."""

    text: str
    ids: List[int]
    pieces: List[str]
    spans: List[Tuple[int, int]]


class AlignmentError(ValueError):
    pass


def align_tokens(text: str, tokens: Sequence[str]) -> List[List[int]]:
    """The position in ``text`` of every character of every token: tokens are matched in
    order, skipping whitespace and the control characters Moses drops."""
    positions: List[List[int]] = []
    i = 0
    for tok in tokens:
        chars = []
        for ch in tok:
            while i < len(text) and text[i] != ch and (text[i].isspace() or ord(text[i]) < 32 or text[i] == "\ufeff"):
                i += 1
            if i >= len(text) or text[i] != ch:
                raise AlignmentError(f"token {tok!r} not found in the text at character {i}")
            chars.append(i)
            i += 1
        positions.append(chars)
    return positions


class QATokenizer:
    """The pre-training pipeline's Moses + BPE + dictionary, keeping character offsets."""

    def __init__(self, codes, dictionary):
        from ..data import pipeline
        from ..data.bpe import BpeApplier

        pipeline._init_moses()
        self._moses_line = pipeline._tokenize_line
        self._bpe = BpeApplier(Path(codes))
        self.dictionary = dictionary

    def moses(self, text: str) -> List[str]:
        line = self._moses_line(text.replace("\n", " "))
        return line.split(" ") if line else []

    def bpe_line(self, text: str) -> str:
        """The text as the pipeline writes it (``bpe_lines``): BPE pieces joined by spaces."""
        tokens = self.moses(text)
        return self._bpe.apply([" ".join(tokens)])[0] if tokens else ""

    def encode(self, text: str) -> Tokenized:
        tokens = self.moses(text)
        chars = align_tokens(text, tokens)
        bpe = self._bpe.apply([" ".join(tokens)])[0].split(" ") if tokens else []
        pieces, spans = [], []
        t, k = 0, 0  # token index, character index within it
        for piece in bpe:
            body = piece[:-2] if piece.endswith("@@") else piece
            if t >= len(tokens) or tokens[t][k:k + len(body)] != body:
                raise AlignmentError(f"BPE piece {piece!r} does not continue token {tokens[t] if t < len(tokens) else None!r}")
            spans.append((chars[t][k], chars[t][k + len(body) - 1] + 1))
            pieces.append(piece)
            k += len(body)
            if not piece.endswith("@@"):
                if k != len(tokens[t]):
                    raise AlignmentError(f"BPE pieces of {tokens[t]!r} end early")
                t, k = t + 1, 0
        ids = [self.dictionary.index(p) for p in pieces]
        return Tokenized(text, ids, pieces, spans)


def char_to_token_span(tok: Tokenized, start: int, end: int) -> Optional[Tuple[int, int]]:
    """The pieces ``(first, last)`` covering characters ``[start, end)`` when they map back to
    exactly that text, else None (unmappable)."""
    covering = [i for i, (a, b) in enumerate(tok.spans) if a < end and b > start]
    if not covering:
        return None
    s, e = covering[0], covering[-1]
    if token_span_text(tok, s, e) != tok.text[start:end]:
        return None
    return s, e


def token_span_text(tok: Tokenized, s: int, e: int) -> str:
    """The context text from the first character of piece ``s`` to the last of piece ``e``."""
    return tok.text[tok.spans[s][0]:tok.spans[e][1]]


# ------------------------------------------------------------------------------ windows

@dataclass
class Feature:
    """One window of one question: the model's input and, for training, the target."""

    example_index: int
    window_start: int            # first context piece in the window
    context_offset: int          # position of that piece in ``source``
    context_length: int          # context pieces in the window
    source: List[int]
    start: int = BOS_POSITION    # target positions (BOS: the answer is not in this window)
    end: int = BOS_POSITION


@dataclass
class FeatureSet:
    examples: List[Example]
    contexts: List[Tokenized]          # per example (shared objects for a shared context)
    features: List[Feature]
    answer_spans: List[List[Optional[Tuple[int, int]]]]  # per example, per answer: pieces or None
    stats: Dict = field(default_factory=dict)


def window_starts(n: int, budget: int, stride: int) -> List[int]:
    """Starts of windows of ``budget`` pieces, every ``stride`` pieces, covering ``n`` pieces."""
    starts = [0]
    while starts[-1] + budget < n:
        starts.append(starts[-1] + stride)
    return starts


def build_features(examples: List[Example], tokenizer: QATokenizer, max_positions: int, doc_stride: int,
                   max_query_length: int, training: bool) -> FeatureSet:
    """Tokenize and window every question.  Training windows get targets from the first
    answer; a training question whose first answer is unmappable gets no windows (counted in
    ``stats["unmappable_train_questions"]``).  Every answer's mapping is counted in
    ``stats["answers"]``/``stats["unmappable_answers"]``."""
    d = tokenizer.dictionary
    if max_positions < SPECIAL_TOKENS + 2:
        raise EvalError(f"--max-positions {max_positions} leaves no room for a question and a context")
    query_cap = max(1, min(max_query_length, (max_positions - SPECIAL_TOKENS) // 2))
    cache: Dict[str, Tokenized] = {}
    contexts, features, spans = [], [], []
    stats = {"questions": len(examples), "answers": 0, "unmappable_answers": 0, "unmappable_questions": 0,
             "unmappable_train_questions": 0, "unmappable_examples": [], "windows": 0, "windowed_questions": 0,
             "truncated_questions": 0, "unknown_pieces": 0, "pieces": 0}
    for idx, ex in enumerate(examples):
        if ex.context not in cache:
            try:
                cache[ex.context] = tokenizer.encode(ex.context)
            except AlignmentError as e:
                raise EvalError(f"question {ex.qid}: its context cannot be aligned to its tokens ({e})") from None
            stats["pieces"] += len(cache[ex.context].ids)
            stats["unknown_pieces"] += sum(i == d.unk() for i in cache[ex.context].ids)
        ctx = cache[ex.context]
        contexts.append(ctx)
        mapped = [char_to_token_span(ctx, start, start + len(text)) for text, start in ex.answers]
        spans.append(mapped)
        stats["answers"] += len(mapped)
        bad = sum(m is None for m in mapped)
        stats["unmappable_answers"] += bad
        if bad == len(mapped):
            stats["unmappable_questions"] += 1
            if len(stats["unmappable_examples"]) < 10:
                stats["unmappable_examples"].append({"id": ex.qid, "answer": ex.answers[0][0]})
        if training and mapped[0] is None:
            stats["unmappable_train_questions"] += 1
            continue
        q = tokenizer.encode(ex.question).ids if ex.question.strip() else []
        if len(q) > query_cap:
            q = q[:query_cap]
            stats["truncated_questions"] += 1
        budget = max_positions - len(q) - SPECIAL_TOKENS
        prefix = [d.bos(), *q, d.eos(), d.eos()]
        starts = window_starts(len(ctx.ids), budget, max(1, min(doc_stride, budget)))
        stats["windowed_questions"] += len(starts) > 1
        for a in starts:
            piece_ids = ctx.ids[a:a + budget]
            f = Feature(idx, a, len(prefix), len(piece_ids), prefix + piece_ids + [d.eos()])
            if training:
                s, e = mapped[0]
                if a <= s and e < a + len(piece_ids):
                    f.start, f.end = len(prefix) + s - a, len(prefix) + e - a
            features.append(f)
    stats["windows"] = len(features)
    return FeatureSet(examples, contexts, features, spans, stats)


# ------------------------------------------------------------------------------ decoding

def best_span(start_logits, end_logits, context_offset: int, context_length: int,
              max_answer_length: int) -> Tuple[float, int, int]:
    """(score, first, last) context-relative pieces of the best span of one window:
    ``first <= last < first + max_answer_length``, score = start logit + end logit."""
    import torch

    s = start_logits[context_offset:context_offset + context_length].float()
    e = end_logits[context_offset:context_offset + context_length].float()
    n = s.numel()
    if n == 0:
        return -math.inf, 0, 0
    scores = s[:, None] + e[None, :]
    i = torch.arange(n)
    allowed = (i[None, :] >= i[:, None]) & (i[None, :] < i[:, None] + max(1, max_answer_length))
    scores = scores.masked_fill(~allowed, -math.inf)
    flat = int(scores.argmax())
    return float(scores.view(-1)[flat]), flat // n, flat % n


def window_log_probs(logits, length: int):
    """Start (or end) log-probabilities of one window: log-softmax over its ``length``
    non-padding positions (``<s>`` included), as the span loss normalizes them in training."""
    import torch

    return torch.log_softmax(logits[:length].float(), dim=-1)


def decode(fs: FeatureSet, logits: Dict[int, Tuple], max_answer_length: int) -> Dict[str, str]:
    """{qid: answer text}: per question the most probable span over all its windows,
    ``log p(start) + log p(end)`` with each window's positions normalized as in training (a window
    that puts its mass on ``<s>``, "not in this window", offers only improbable spans).  ``logits``
    maps a feature index to its (start, end) logits over the window's positions."""
    best: Dict[int, Tuple[float, str]] = {}
    for k, f in enumerate(fs.features):
        if k not in logits:
            continue
        start, end = logits[k]
        start, end = window_log_probs(start, len(f.source)), window_log_probs(end, len(f.source))
        score, a, b = best_span(start, end, f.context_offset, f.context_length, max_answer_length)
        if score == -math.inf:
            continue
        text = token_span_text(fs.contexts[f.example_index], f.window_start + a, f.window_start + b)
        if f.example_index not in best or score > best[f.example_index][0]:
            best[f.example_index] = (score, text)
    return {fs.examples[i].qid: best[i][1] if i in best else "" for i in range(len(fs.examples))}


def gold_answers(examples: List[Example]) -> Dict[str, List[str]]:
    return {ex.qid: [t for t, _ in ex.answers] for ex in examples}
