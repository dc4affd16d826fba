"""``b2b-train``: fairseq-train with the fairseq-b2b plugin loaded; ``b2b-user-dir``: the
directory to pass to stock fairseq commands as ``--user-dir``."""
from __future__ import annotations

import os
import sys


def user_dir() -> str:
    import fairseq_b2b

    return os.path.dirname(os.path.abspath(fairseq_b2b.__file__))


def print_user_dir() -> None:
    print(user_dir())


def with_user_dir(argv: list) -> list:
    """``argv`` plus ``--user-dir`` pointing at this package, unless the user gave one."""
    if any(a == "--user-dir" or a.startswith("--user-dir=") for a in argv):
        return list(argv)
    return list(argv) + ["--user-dir", user_dir()]


def main(argv=None) -> None:
    from fairseq_cli import train

    sys.argv = [sys.argv[0]] + with_user_dir(sys.argv[1:] if argv is None else argv)
    train.cli_main()


if __name__ == "__main__":
    main()
