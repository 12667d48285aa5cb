"""``otmap.maps``: the public path of :mod:`otmap.core.maps`."""

from otmap.core.maps import *  # noqa: F403
from otmap.core.maps import __all__  # noqa: F401
