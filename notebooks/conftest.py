"""nbval settings for the workbook.

Failure cells carry both the ``raises-exception`` tag (so JupyterLab's Run All continues
past them) and a ``# NBVAL_RAISES_EXCEPTION`` first line (so a reader sees the intent).
nbval warns when both say the same thing; here they agree on purpose.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Overlapping options from comments and metadata:UserWarning",
    )
