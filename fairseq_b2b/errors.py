"""The one error type users see: a one-line message that names the problem and the fix."""
from .growth.grow import GrowthError


class B2BError(GrowthError):
    """Bad input to a fairseq-b2b command or option."""
