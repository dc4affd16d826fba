"""The one error type users see: a one-line message that names the problem and the fix."""
import contextlib

from .growth.grow import GrowthError


class B2BError(GrowthError):
    """Bad input to a fairseq-b2b command or option."""


@contextlib.contextmanager
def one_line_errors(prog: str, interrupted: str = "interrupted"):
    """A command's body: B2BError, OSError and Ctrl-C end it with one ``PROG: ...`` line."""
    try:
        yield
    except B2BError as e:
        raise SystemExit(f"{prog}: error: {e}") from None
    except OSError as e:
        raise SystemExit(f"{prog}: error: {e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None
    except KeyboardInterrupt:
        raise SystemExit(f"{prog}: {interrupted}") from None
