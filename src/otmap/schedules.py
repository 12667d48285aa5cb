"""``otmap.schedules``: the public path of :mod:`otmap.core.schedules`."""

from otmap.core.schedules import *  # noqa: F403
from otmap.core.schedules import __all__  # noqa: F401
