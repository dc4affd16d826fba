"""Edges of growth and of the two-stage defaults (issue 12, items 4b, 4d, 4f), on real models
trained a few updates on the built-in corpus, and the one-way import flow of the package."""
import ast
import logging
import os

import pytest
import torch

import fairseq_b2b  # noqa: F401
from fairseq_b2b.checkpoints import build_from_args, parse_training_args, train_in_process
from fairseq_b2b.cli import grow as grow_cli
from fairseq_b2b.growth import BERT, GPT, GrowthError, ModelShape, grow_state_dict
from fairseq_b2b.growth.expand import expand_in
from fairseq_b2b.fairseq_args import option

from conftest import TINY, run_cli
from growth_helpers import random_state_dict

ROBERTA_TINY = ["--arch", "roberta", "--encoder-layers", "2", "--encoder-embed-dim", "64", "--encoder-attention-heads",
                "2", "--encoder-ffn-embed-dim", "256"]
LM_TINY = ["--arch", "transformer_lm", "--decoder-layers", "2", "--decoder-embed-dim", "64", "--decoder-attention-heads",
           "2", "--decoder-ffn-embed-dim", "256", "--decoder-input-dim", "64", "--decoder-output-dim", "64",
           "--decoder-learned-pos", "--decoder-normalize-before"]


def _train_stock(tmp_path_factory, data_bin, name, task, *arch):
    save = tmp_path_factory.mktemp(name)
    run_cli("fairseq-train", data_bin, "--task", task, *(["--criterion", "masked_lm"] if task == "masked_lm" else []),
            *arch, "--max-update", "10", "--save-dir", save, *TINY)
    return str(save / "checkpoint_last.pt")


@pytest.fixture(scope="module")
def untied_roberta(tmp_path_factory, data_bin):
    """A stock roberta with --untie-weights-roberta (own LM-head output matrix), 10 updates."""
    return _train_stock(tmp_path_factory, data_bin, "untied_roberta", "masked_lm", *ROBERTA_TINY, "--untie-weights-roberta")


@pytest.fixture(scope="module")
def untied_lm(tmp_path_factory, data_bin):
    """A stock transformer_lm without --share-decoder-input-output-embed (and with fairseq's
    sqrt(D) embedding scale), pre-LN with learned positions, 10 updates."""
    return _train_stock(tmp_path_factory, data_bin, "untied_lm", "language_modeling", *LM_TINY)


@pytest.fixture(scope="module")
def pre_ln_roberta(tmp_path_factory, data_bin):
    """A stock pre-LN roberta: its final encoder layer_norm (1-D tensors) is outside the BERT layout."""
    return _train_stock(tmp_path_factory, data_bin, "pre_ln_roberta", "masked_lm", *ROBERTA_TINY,
                        "--encoder-normalize-before")


def _model_sd(path):
    return torch.load(path, weights_only=False)["model"]


def _build(argv):
    """(cfg, task, model) as fairseq-train builds them (``--init-from-small`` grows here)."""
    return build_from_args(parse_training_args(argv))


def _one_line_exit(argv):
    with pytest.raises(SystemExit) as e:
        _build(argv)
    message = str(e.value.code)
    assert message.startswith("fairseq-b2b: error: ") and "\n" not in message, message
    return message


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def b2b_log():
    handler, logger = _Records(), logging.getLogger("fairseq_b2b")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


# --------------------------------------------------------------------------------------------
# 4b: a 1-D parameter outside the layout is refused with one line


def test_a_one_dimensional_extra_is_refused_before_growth():
    src, tgt = ModelShape(2, 64, 256, 2), ModelShape(2, 128, 512, 4)
    sd = random_state_dict(BERT, src)
    sd["encoder.sentence_encoder.layer_norm.weight"] = torch.ones(64)
    with pytest.raises(GrowthError, match="'encoder.sentence_encoder.layer_norm.weight' is not part of the bert layout"):
        grow_state_dict(sd, BERT, src, tgt, method="fpi")
    del sd["encoder.sentence_encoder.layer_norm.weight"]
    sd["encoder.sentence_encoder.version"] = torch.tensor([3.0])  # fairseq's version buffer is carried over
    assert torch.equal(grow_state_dict(sd, BERT, src, tgt, method="fpi").state_dict["encoder.sentence_encoder.version"],
                       torch.tensor([3.0]))


def test_a_pre_ln_roberta_source_is_one_line_not_a_load_state_dict_traceback(tmp_path, data_bin, pre_ln_roberta):
    message = _one_line_exit([data_bin, "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "b2b_bert_tiny_wide",
                              "--init-from-small", pre_ln_roberta, "--cpu", "--save-dir", str(tmp_path / "run")])
    assert "'encoder.sentence_encoder.layer_norm.weight' is not part of the bert layout" in message
    out = tmp_path / "never.pt"
    with pytest.raises(SystemExit) as e:
        grow_cli.main(["--source", pre_ln_roberta, "--arch", "b2b_bert_tiny_wide", "--output", str(out)])
    assert str(e.value.code).startswith("b2b-grow: error: ") and "layer_norm.weight" in str(e.value.code)
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# 4d: --submodel-epochs defaults to stage 1 for a grown model only


SCRATCH = ["--task", "b2b_masked_lm", "--cpu", "--tokens-per-sample", "64", "--batch-size", "8", "--optimizer", "adam",
           "--lr", "1e-3", "--log-format", "json", "--log-interval", "1", "--num-workers", "0", "--no-epoch-checkpoints"]


def test_scratch_is_plain_training_and_the_tiny_readme_command_runs(tmp_path, data_bin, b2b_log):
    """No --init-from-small, no --submodel-epochs: plain training, said in the log; a 2-layer
    *_tiny arch trains instead of stopping at '--submodel-layers 3 exceeds ...'."""
    log = train_in_process([data_bin, "--arch", "b2b_bert_tiny", *SCRATCH, "--max-update", "2",
                            "--save-dir", str(tmp_path / "scratch")])
    assert "exceeds" not in log
    assert any("no --init-from-small: plain full-model training" in line for line in b2b_log)
    saved = torch.load(tmp_path / "scratch" / "checkpoint_last.pt", weights_only=False)
    assert saved["cfg"]["task"]["submodel_epochs"] == 0  # the checkpoint records what ran
    assert saved["optimizer_history"][-1]["num_updates"] == 2


def test_explicit_submodel_epochs_on_scratch_runs_stage_1_and_says_so(tmp_path, data_bin, b2b_log):
    _, task, _ = _build([data_bin, "--arch", "b2b_bert_tiny_deep", *SCRATCH, "--submodel-epochs", "5",
                         "--save-dir", str(tmp_path / "run")])
    assert task.submodel_epochs == 5 and task.in_stage1()
    assert type(task._schedule).__name__ == "TwoStageSchedule"
    assert any("stage-1 sub-model training for 5 epochs (--submodel-epochs 5, asked for on a model that is not grown"
               in line for line in b2b_log)
    # asked for on a 2-layer model, the lb check still speaks
    assert "--submodel-layers 3 exceeds the model's 2 layers" in _one_line_exit(
        [data_bin, "--arch", "b2b_bert_tiny", *SCRATCH, "--submodel-epochs", "5", "--save-dir", str(tmp_path / "x")])


def test_grown_model_defaults_to_the_papers_stage_1_also_when_resumed(tmp_path, data_bin, small_bert, b2b_log):
    """--init-from-small: Eb=5, lb=3 (the paper's); a resumed run (growth skipped by the hook)
    keeps them, and its saved args record the growth instead of asking to grow again."""
    save = tmp_path / "grown"
    argv = [data_bin, "--arch", "b2b_bert_tiny_deep", *SCRATCH, "--init-from-small", small_bert, "--save-dir", str(save),
            "--max-update", "1"]
    train_in_process(argv)
    assert any("a model grown with --init-from-small: stage-1 sub-model training for 5 epochs" in line for line in b2b_log)
    first = torch.load(save / "checkpoint_last.pt", weights_only=False)["cfg"]
    recorded = option(first["model"], "b2b_grown_from")
    assert first["task"]["submodel_epochs"] == 5 and option(first["model"], "init_from_small") is None
    assert recorded["method"] == "aki" and recorded["source"] == os.path.abspath(small_bert)
    b2b_log.clear()
    cfg, task, model = _build(argv)
    assert any("growth from" in line and "skipped" in line for line in b2b_log)
    assert task.submodel_epochs == 5 and task.submodel_layers == 3 and task.in_stage1()
    assert option(cfg.model, "init_from_small") is None and option(cfg.model, "b2b_grown_from") == recorded
    # a schedule baseline on a grown model needs no --submodel-epochs 0
    _, task, _ = _build([data_bin, "--arch", "b2b_bert_tiny_deep", *SCRATCH, "--init-from-small", small_bert,
                         "--stacking-schedule", "2:1,4:1", "--save-dir", str(tmp_path / "stack")])
    assert task.submodel_epochs == 0 and task._schedule.method == "StackBERT"


# --------------------------------------------------------------------------------------------
# 4f: an untied output projection is grown as its own tensor, or refused


def _grow(tmp_path, source, arch, method="fpi", exact=False, data=None, extra=(), name="grown.pt"):
    out = str(tmp_path / name)
    report = grow_cli.grow_checkpoint(source, arch, method, exact, 1, out, data, list(extra))
    if data:
        report.update(grow_cli.evaluate_growth(source, out, data))
    return report, _model_sd(out)


def test_untied_roberta_grows_its_own_output_matrix_exactly(tmp_path, data_bin, untied_roberta):
    src = _model_sd(untied_roberta)
    emb, head = "encoder.sentence_encoder.embed_tokens.weight", "encoder.lm_head.weight"
    assert not torch.equal(src[emb], src[head])  # trained apart
    report, grown = _grow(tmp_path, untied_roberta, "b2b_bert_tiny_wide", data=data_bin)
    assert report["untied_outputs"] == [head]
    assert report["max_abs_logit_diff"] < 1e-5, report
    assert grown[head].data_ptr() != grown[emb].data_ptr() and not torch.equal(grown[head], grown[emb])
    # eq. 7 on the stream axis: every copy of column i holds W[:, i] / (its copy count)
    cols = grown[head][:, :64]
    assert torch.allclose(cols * 2, src[head], atol=1e-6)  # 64 -> 128: every stream entry copied twice
    print(f"untied roberta 64 -> 128 (fpi): max |logit diff| {report['max_abs_logit_diff']:.2e}")


def test_untied_transformer_lm_grows_exactly_with_fpi_and_the_exact_mode(tmp_path, data_bin, untied_lm):
    src = _model_sd(untied_lm)
    assert not torch.equal(src["decoder.embed_tokens.weight"], src["decoder.output_projection.weight"])
    fpi, grown = _grow(tmp_path, untied_lm, "b2b_gpt_tiny_wide", data=data_bin)
    assert fpi["untied_outputs"] == ["decoder.output_projection.weight"]
    assert fpi["max_abs_logit_diff"] < 1e-5, fpi
    assert not torch.equal(grown["decoder.output_projection.weight"], grown["decoder.embed_tokens.weight"])
    wider = ["--decoder-embed-dim", "96", "--decoder-attention-heads", "3", "--decoder-ffn-embed-dim", "384"]
    exact, _ = _grow(tmp_path, untied_lm, "b2b_gpt_tiny", exact=True, data=data_bin, extra=wider, name="exact.pt")
    assert exact["max_abs_logit_diff"] < 1e-5, exact
    print(f"untied transformer_lm: fpi 64 -> 128 {fpi['max_abs_logit_diff']:.2e}, "
          f"exact 64 -> 96 {exact['max_abs_logit_diff']:.2e}")


def test_untied_source_into_a_tied_target_is_refused_and_untying_the_target_grows(tmp_path, data_bin, untied_roberta):
    base = [data_bin, "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "b2b_bert_tiny_wide",
            "--init-from-small", untied_roberta, "--growth-method", "fpi", "--cpu", "--tokens-per-sample", "64"]
    message = _one_line_exit(base + ["--save-dir", str(tmp_path / "tied")])
    assert "'encoder.lm_head.weight'" in message and "--untie-weights-roberta" in message
    _, _, model = _build(base + ["--untie-weights-roberta", "--save-dir", str(tmp_path / "untied")])
    src = _model_sd(untied_roberta)
    head = model.encoder.lm_head.weight
    assert head is not model.encoder.sentence_encoder.embed_tokens.weight
    assert torch.allclose(head[:, :64] * 2, src["encoder.lm_head.weight"], atol=1e-6)


def test_untied_direct_copy_keeps_the_trained_output_matrix(tmp_path, untied_roberta):
    _, grown = _grow(tmp_path, untied_roberta, "b2b_bert_tiny_wide", method="direct_copy")
    src = _model_sd(untied_roberta)
    for key in ("encoder.lm_head.weight", "encoder.sentence_encoder.embed_tokens.weight"):
        assert torch.equal(grown[key][:, :64], src[key])
    assert not torch.equal(grown["encoder.lm_head.weight"], grown["encoder.sentence_encoder.embed_tokens.weight"])


def test_pure_growth_of_an_untied_state_dict_follows_eq_7_and_refuses_a_tied_target():
    src, tgt = ModelShape(2, 64, 256, 2), ModelShape(2, 96, 384, 3)
    sd = random_state_dict(GPT, src)
    sd["decoder.output_projection.weight"] = torch.randn_like(sd["decoder.embed_tokens.weight"])
    res = grow_state_dict(sd, GPT, src, tgt, method="fpi", seed=3)
    g = res.maps["res"]
    counts = torch.bincount(g, minlength=64)
    assert torch.allclose(res.state_dict["decoder.output_projection.weight"],
                          expand_in(sd["decoder.output_projection.weight"], 1, g))
    assert torch.allclose(res.state_dict["decoder.layer_norm.weight"], sd["decoder.layer_norm.weight"][g])  # not divided
    assert counts.max() == 2
    tied_target = random_state_dict(GPT, tgt)
    with pytest.raises(GrowthError, match="untied.*but the target ties them"):
        grow_state_dict(sd, GPT, src, tgt, method="fpi", target_init=tied_target)


# --------------------------------------------------------------------------------------------
# imports flow one way: growth <- growth_hook <- models <- tasks <- (checkpoints, experiment) <- cli

#: every module of the package, by rank (lowest first); a module imports only modules of its own
#: rank or below.  Longest prefix wins ("eval.common" over "eval"); "" is the package itself, which
#: registers the models, tasks and criterions.
MODULE_RANKS = (
    ("growth",),  # growth math, pure torch
    ("errors", "outputs", "paths", "log_file", "fairseq_args", "json_log", "flops", "data", "report",
     "eval.metrics", "eval.squad_metric"),  # helpers that know no model and no task
    ("growth_hook",),  # --init-from-small: loads a checkpoint, grows into a built model
    ("models", "optim", "criterions"),
    ("", "tasks", "evaluate", "attention",
     "eval.common", "eval.squad_data"),  # tasks.squad reads SQuAD through eval.squad_data (and its EvalError)
    ("checkpoints", "grow_checkpoint", "growth_eval", "experiment", "hf", "eval",
     "data.qa_builtin"),  # qa_builtin scores its baseline with eval's SQuAD metric
    ("cli",),
)
FLOW = " <- ".join("/".join(m or "fairseq_b2b" for m in ms) for ms in MODULE_RANKS)


def _rank_of(module: str):
    ranks = {(f"fairseq_b2b.{m}" if m else "fairseq_b2b"): r for r, ms in enumerate(MODULE_RANKS) for m in ms}
    hits = [p for p in ranks if module == p or (p != "fairseq_b2b" and module.startswith(p + "."))]
    return ranks[max(hits, key=len)] if hits else None


def _cycles(graph: dict) -> list:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
                on.discard(component[-1])
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_imports():
    root = os.path.dirname(fairseq_b2b.__file__)
    modules = {}
    for folder, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = "fairseq_b2b." + os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                modules[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    deps.add(full if full in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def test_imports_flow_one_way():
    graph = _package_imports()
    assert len(graph) > 80  # the walk found the package
    unranked = sorted(m for m in graph if _rank_of(m) is None)
    assert not unranked, f"modules without a rank in MODULE_RANKS: {unranked}"
    against = [f"{module} (rank {_rank_of(module)}) imports {dep} (rank {_rank_of(dep)})"
               for module, deps in sorted(graph.items()) for dep in sorted(deps) if _rank_of(dep) > _rank_of(module)]
    assert not against, f"imports against the flow {FLOW}: " + "; ".join(against)
    # within a rank too: no module reaches itself (``import fairseq_b2b`` only registers the plugin)
    cycles = _cycles({m: {d for d in deps if d != "fairseq_b2b"} for m, deps in graph.items()})
    assert not cycles, f"import cycles: {cycles}"
    assert not {d for d in graph["fairseq_b2b.growth_hook"] if d.startswith("fairseq_b2b.models")}
    assert "fairseq_b2b.growth_hook" in graph["fairseq_b2b.models.common"]
    assert not {d for d in graph["fairseq_b2b.growth.grow"] if not d.startswith("fairseq_b2b.growth")}
