"""The experiment's plan: every fairseq-train run (name, method, b2b-train argv, the source it
grows from), and ``--only``'s selection of it.  Every run validates every ``N`` updates, N chosen
so that it has at least :data:`MIN_VALID_POINTS` points, and at update 0 (``--validate-at-start``)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .presets import EXACT_FPI, FAMILY_TASK, GROWTH_METHODS, SEEDED_METHODS, ExperimentError, Preset, ShapeAblation, \
    for_family
from .updates import update_freq

MIN_VALID_POINTS = 20


@dataclass
class Run:
    name: str  # folder under DIR/runs
    family: str
    label: str  # method name in the report
    argv: list  # b2b-train arguments after the data dir
    seed: int = 1
    source: str | None = None  # name of the source run it grows from (charged its FLOPs)
    group: str = "main"  # report group: "main" or "budget:<epochs>"
    epochs: int = 0
    needs: tuple = ()  # run names that must finish first


def plan(preset: Preset, families=("bert", "gpt"), updates_per_epoch: int | dict | None = None,
         world_size: int = 1, passthrough: list | None = None) -> list:
    """Every fairseq-train run of the experiment, sources first.  ``updates_per_epoch`` (optimizer
    updates, per family when a dict) sets ``--total-num-update`` (the lr decays linearly to 0 at
    each run's own last update) and the validation interval."""
    uf = update_freq(preset, world_size)
    passthrough = list(passthrough or [])

    def upe(family):
        if isinstance(updates_per_epoch, dict):
            return updates_per_epoch[family]
        return updates_per_epoch

    runs = []
    everything = preset
    for family in families:
        preset = for_family(everything, family)
        task = FAMILY_TASK[family]
        per_epoch = upe(family)

        def schedule(epochs, per_epoch=per_epoch):
            opts = ["--max-epoch", str(epochs)]
            if per_epoch:
                total = max(1, epochs * per_epoch)
                opts += ["--total-num-update", str(total),
                         "--validate-interval-updates", str(max(1, total // (MIN_VALID_POINTS + 4)))]
            return opts

        base = ["--task", task, *preset.train, "--tokens-per-sample", str(preset.tokens_per_sample),
                "--batch-size", str(preset.batch_size), *(["--update-freq", str(uf)] if uf > 1 else []),
                "--log-format", "json", "--log-interval", str(preset.log_interval), "--no-epoch-checkpoints",
                "--validate-at-start"]
        if preset.max_valid_steps:
            base += ["--max-valid-steps", str(preset.max_valid_steps)]
        if family == "bert":
            base += ["--criterion", "masked_lm"]
        src_arch, *src_over = getattr(preset, f"{family}_source")
        tgt_arch, *tgt_over = getattr(preset, f"{family}_target")
        full = ["--submodel-epochs", "0"]
        sources = {"main": f"{family}_source"}
        runs.append(Run(f"{family}_source", family, "source",
                        base + ["--seed", "1", "--arch", src_arch, *src_over, *schedule(preset.source_epochs), *full],
                        epochs=preset.source_epochs))
        if preset.short_source_epochs and any(a.source == "short" for a in preset.ablations.get(family, [])):
            sources["short"] = f"{family}_source_short"
            runs.append(Run(sources["short"], family, "source (short)",
                            base + ["--seed", "1", "--arch", src_arch, *src_over,
                                    *schedule(preset.short_source_epochs), *full], epochs=preset.short_source_epochs))
        two_stage = ["--submodel-epochs", str(preset.submodel_epochs), "--submodel-layers", str(preset.submodel_layers)]

        def method_argv(method, epochs, source, shape=(tgt_arch, *tgt_over)):
            target = base + ["--arch", *shape]
            ckpt = os.path.join("runs", source, "checkpoint_last.pt")
            grown = ["--init-from-small", ckpt]
            if method == "scratch":
                return target + schedule(epochs) + full
            if method in GROWTH_METHODS:
                return target + schedule(epochs) + grown + ["--growth-method", GROWTH_METHODS[method]] + full
            if method == "bert2BERT":
                return target + schedule(epochs) + grown + ["--growth-method", "aki"] + two_stage
            if method == EXACT_FPI:  # weighted LayerNorms annealed to standard ones over ~10% of the run
                anneal = max(1, epochs * per_epoch // 10) if per_epoch else 1000
                return target + schedule(epochs) + grown + ["--growth-method", "fpi", "--growth-exact",
                                                            "--growth-anneal-updates", str(anneal)] + full
            if method == "StackBERT":
                return target + schedule(epochs) + full + ["--stacking-schedule", preset.stacking_schedule]
            if method == "MSLT":  # one length everywhere: Lt/mslt_layers stages, then the full-model epochs
                mslt_epochs = (_layers(list(shape), family) // preset.mslt_layers) * preset.mslt_stage_epochs \
                    + preset.mslt_full_epochs
                return target + schedule(mslt_epochs) + full + ["--mslt-layers", str(preset.mslt_layers),
                                                                 "--mslt-stage-epochs", str(preset.mslt_stage_epochs)]
            if method == "share-then-unshare":
                return target + schedule(epochs) + full + ["--share-layers-until", f"epoch:{preset.share_until_epoch}"]
            raise ExperimentError(f"unknown method {method}")

        grows = ("DirectCopy", "FPI", "AKI", "bert2BERT", EXACT_FPI)
        for method in preset.methods.get(family, ()):
            seeds = preset.seeds if method in SEEDED_METHODS else preset.seeds[:1]
            for seed in seeds:
                suffix = "" if seed == preset.seeds[0] else f"_seed{seed}"
                name = f"{family}_{_slug(method)}{suffix}"
                argv = method_argv(method, preset.target_epochs, sources["main"]) + \
                    ["--seed", str(seed)] + (["--growth-seed", str(seed)] if method in grows else [])
                runs.append(Run(name, family, method, argv, seed, sources["main"] if method in grows else None,
                                epochs=preset.target_epochs, needs=(sources["main"],) if method in grows else ()))
        for eb in preset.ablation_eb:
            if eb > 0 and eb != preset.submodel_epochs and "bert2BERT" in preset.methods.get(family, ()):
                argv = method_argv("bert2BERT", preset.target_epochs, sources["main"])
                argv[argv.index("--submodel-epochs") + 1] = str(eb)
                runs.append(Run(f"{family}_bert2bert_eb{eb}", family, f"bert2BERT (Eb={eb})",
                                argv + ["--seed", "1", "--growth-seed", "1"], 1, sources["main"],
                                epochs=preset.target_epochs, needs=(sources["main"],)))
        for ab in preset.ablations.get(family, []):
            epochs = preset.target_epochs if ab.epochs is None else (
                max(1, preset.target_epochs // -ab.epochs) if ab.epochs < 0 else ab.epochs)
            source = sources[ab.source]
            argv = method_argv(ab.method, epochs, source)
            for opt in ab.extra:  # an option given by the ablation replaces the method's own value
                if opt in argv and opt.startswith("--") and argv.index(opt) + 1 < len(argv) and \
                        not argv[argv.index(opt) + 1].startswith("--"):
                    del argv[argv.index(opt):argv.index(opt) + 2]
            argv += list(ab.extra) + ["--seed", str(preset.seeds[0])] + \
                (["--growth-seed", str(preset.seeds[0])] if ab.method in grows else [])
            group = "main" if epochs == preset.target_epochs else f"budget:{epochs}"
            runs.append(Run(f"{family}_ablation_{_slug(ab.label)}", family, ab.label, argv, preset.seeds[0],
                            source if ab.method in grows else None, group, epochs,
                            needs=(source,) if ab.method in grows else ()))
        for shape_ab in preset.shape_ablations.get(family, []):
            group, slug = f"shape:{shape_ab.name}", _slug(shape_ab.name)
            src_name = shape_source_run(family, shape_ab, preset)
            if src_name != sources["main"]:  # the main source, when it has the same shape, is trained once
                runs.append(Run(src_name, family, "source", base + ["--seed", "1", "--arch", *shape_ab.source,
                                                                    *schedule(preset.source_epochs), *full],
                                group=group, epochs=preset.source_epochs))
            for method in shape_ab.methods:
                seed = preset.seeds[0]
                argv = method_argv(method, preset.target_epochs, src_name, shape_ab.target) + \
                    ["--seed", str(seed)] + (["--growth-seed", str(seed)] if method in grows else [])
                runs.append(Run(f"{family}_{slug}_{_slug(method)}", family, method, argv, seed,
                                src_name if method in grows else None, group, preset.target_epochs,
                                needs=(src_name,) if method in grows else ()))
    for run in runs:  # options after `--` come last: fairseq takes the last value of an option
        run.argv = run.argv + passthrough
    return runs


def _layers(shape: list, family: str) -> int:
    side = "encoder" if family == "bert" else "decoder"
    if f"--{side}-layers" in shape:
        return int(shape[shape.index(f"--{side}-layers") + 1])
    from ..models import bert, gpt

    return int({**bert.ARCHS, **gpt.ARCHS}[shape[0]][0])


def shape_source_run(family: str, shape_ab: ShapeAblation, preset: Preset) -> str:
    """The source run of a shape ablation: the main source when the shapes agree, else its own."""
    if list(shape_ab.source) == list(getattr(preset, f"{family}_source")):
        return f"{family}_source"
    return f"{family}_{_slug(shape_ab.name)}_source"


def _slug(label: str) -> str:
    out = "".join(c.lower() if c.isalnum() else "_" for c in label)
    while "__" in out:
        out = out.replace("__", "_")
    return out.strip("_")


def select(runs: list, only: list | None) -> list:
    """The runs ``--only`` names (by run name or method label) and the sources they grow from;
    an unknown name is refused."""
    if not only:
        return runs
    known = {r.name for r in runs} | {r.label for r in runs}
    unknown = [o for o in only if o not in known]
    if unknown:
        names = ", ".join(dict.fromkeys(r.label for r in runs))
        raise ExperimentError(f"--only {unknown[0]}: no such run or method in this preset (methods: {names})")
    chosen = [r for r in runs if r.name in only or r.label in only]
    needed = {n for r in chosen for n in r.needs}
    return [r for r in runs if r in chosen or r.name in needed]
