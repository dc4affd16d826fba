"""fairseq's command-line arguments with this plugin loaded: the ``--user-dir`` to pass,
fairseq-train's parser on an argv, and the one reader of an option from parsed arguments.

It imports nothing of the package, so every layer may use it: ``checkpoints`` parses with it
and ``cli.train`` builds ``b2b-train`` on it, without either importing the other's module.
"""
from __future__ import annotations

import os


def user_dir() -> str:
    """The directory to pass to fairseq as ``--user-dir`` (this package's folder)."""
    return os.path.dirname(os.path.abspath(__file__))


def with_user_dir(argv: list) -> list:
    """``argv`` plus ``--user-dir`` pointing at this package, unless the user gave one."""
    if any(a == "--user-dir" or a.startswith("--user-dir=") for a in argv):
        return list(argv)
    return list(argv) + ["--user-dir", user_dir()]


def parse_training_args(argv: list):
    """fairseq-train's parser on ``argv`` (data dir first), with this plugin loaded."""
    from fairseq import options

    parser = options.get_training_parser()
    return options.parse_args_and_arch(parser, input_args=with_user_dir(argv))


def option(args, name: str, default=None):
    """One option of parsed arguments - a Namespace, an OmegaConf DictConfig, or a plain dict (a
    checkpoint's ``cfg["model"]``) - or ``default`` when ``args`` is None or the option is missing
    or None (fairseq's "not given")."""
    if args is None:
        return default
    if isinstance(args, dict):
        value = args.get(name, default)
    else:
        try:
            value = getattr(args, name)
        except (AttributeError, KeyError):
            return default
    return default if value is None else value
