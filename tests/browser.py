"""What the browser tests share: Debian's Chromium driven by Playwright, and where
screenshots go (a scratch folder, or ``docs/img/`` with ``BACKHAUL_SCREENSHOTS=docs/img``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(
    os.environ.get("BACKHAUL_SCREENSHOTS") or Path(tempfile.gettempdir()) / "backhaul-screenshots"
)
requires_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium)",
)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium for one module's tests."""
    from playwright import sync_api

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
