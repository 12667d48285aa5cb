"""Hypothesis settings and strategies shared by the layers' ``test_bad_inputs.py`` (issue 11):
malformed values, arrays and sample sets, and the check that a call succeeds or raises an
:class:`~otmap.errors.OTMapError`."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from otmap.errors import OTMapError

#: few examples and no example database; derandomized so that the suite is the same on every
#: run
FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 3), st.floats(), st.text(max_size=6),
    st.lists(st.integers(-2, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(-2, 3), max_size=2),
)
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_,
                          np.complex64])
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
#: finite float sample sets [n, d] and [n, c, h, w] (constant, tiny or huge values too)
SAMPLE_SETS = hnp.arrays(
    st.sampled_from([np.float32, np.float64]),
    st.one_of(st.tuples(st.integers(2, 8), st.integers(1, 3)),
              st.tuples(st.integers(2, 4), st.integers(1, 3), st.integers(1, 6),
                        st.integers(1, 6))),
    elements=st.floats(-2.0**100, 2.0**100, width=32))


def ok_or_otmap_error(fn, *args, **kwargs) -> None:
    """Call ``fn``: success and :class:`OTMapError` pass, any other exception fails."""
    try:
        fn(*args, **kwargs)
    except OTMapError as err:
        event(type(err).__name__)
    else:
        event("success")
