"""``otmap.costs``: the public path of :mod:`otmap.core.costs`."""

from otmap.core.costs import *  # noqa: F403
from otmap.core.costs import __all__  # noqa: F401
