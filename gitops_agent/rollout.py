"""The old name of `fleet` (kept so imports keep working): fleet rollouts across the nodes."""

from .fleet import *  # noqa: F401,F403
from .fleet import __all__, Strategy as Policy  # noqa: F401  (`Policy`: the old name of `Strategy`)
