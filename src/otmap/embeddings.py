"""``otmap.embeddings``: the public path of :mod:`otmap.core.embeddings`."""

from otmap.core.embeddings import *  # noqa: F403
from otmap.core.embeddings import __all__  # noqa: F401
