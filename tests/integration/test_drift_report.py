"""The drift report renders in a real headless Chromium: no errors, every plot drawn, nothing fetched."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servekit.monitoring.drift import assess
from servekit.monitoring.report import render_report
from servekit.profile import build_profile
from servekit.signature import Feature, Signature

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PLOTTED = ["shifted", "steady", "colour", "few", "<b>odd & name</b>"]
NOT_PLOTTED = ["constant", "unprofiled"]


@pytest.fixture
def page_file(tmp_path: Path) -> Path:
    """A report with drift, no drift, a new category, too few values, a constant and an unknown feature."""
    rng = np.random.default_rng(0)
    names = ["shifted", "steady", "colour", "few", "<b>odd & name</b>", "constant", "unprofiled"]
    reference = pd.DataFrame(
        {
            "shifted": rng.normal(size=1000),
            "steady": rng.lognormal(size=1000),
            "colour": rng.choice(["red", "green", "blue"], size=1000),
            "few": rng.normal(size=1000),
            "<b>odd & name</b>": rng.poisson(2, size=1000).astype(float),
            "constant": np.full(1000, 4.0),
            "unprofiled": rng.normal(size=1000),
        }
    )
    dtypes = {"colour": "string"}
    signature = Signature(tuple(Feature(n, dtypes.get(n, "float64")) for n in names), input_kind="frame")
    profile = build_profile(reference, signature)
    del profile["features"]["unprofiled"]
    current = pd.DataFrame(
        {
            "shifted": rng.normal(1.0, 1.0, size=400),
            "steady": rng.lognormal(size=400),
            "colour": rng.choice(["red", "green", "purple"], size=400),
            "few": np.where(np.arange(400) < 30, 0.5, np.nan),
            "<b>odd & name</b>": rng.poisson(2, size=400).astype(float),
            "constant": np.full(400, 4.0),
            "unprofiled": rng.normal(size=400),
        }
    )
    report = assess(profile, current, model="demo<script>", version=3, features=names)
    assert report.drifted == ["shifted", "colour"]
    html = render_report(report, profile, current)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def _chromium_available() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; the CI image must provide Chromium")
        pytest.skip(f"{CHROMIUM} is not installed")


def test_report_renders_in_chromium(page_file: Path, tmp_path: Path) -> None:
    _chromium_available()
    from playwright.sync_api import sync_playwright

    messages: list[str] = []
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(page_file.as_uri(), wait_until="load")

            assert page.title() == "Drift report: demo<script> v3"
            assert page.locator("script").count() == 0  # names are text, never markup
            verdict = page.locator("#verdict").inner_text()
            assert verdict == "Drift in 2 of 4 assessed features: shifted, colour"
            rows = page.locator("#summary tbody tr")
            assert rows.count() == 7
            states = [rows.nth(i).locator("td").nth(2).inner_text() for i in range(7)]
            assert states == ["drift", "ok", "drift", "not assessable", "ok", "not assessable", "not assessable"]

            sections = page.locator("details.feature")
            assert sections.count() == 7
            for index in range(7):
                section = sections.nth(index)
                name = section.locator("summary h3").inner_text()
                svg = section.locator("svg.plot")
                if name in NOT_PLOTTED:
                    assert svg.count() == 0, name
                    continue
                assert name in PLOTTED
                assert svg.is_visible(), name
                box = svg.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 60, (name, box)
                reference_bars = svg.locator("rect.ref")
                live_bars = svg.locator("rect.cur")
                assert reference_bars.count() >= 3 and live_bars.count() == reference_bars.count(), name
                tallest = max(reference_bars.nth(i).bounding_box()["height"] for i in range(reference_bars.count()))
                widest = max(reference_bars.nth(i).bounding_box()["width"] for i in range(reference_bars.count()))
                assert tallest > 0 and widest > 0, name
            colour = sections.nth(2).locator("svg.plot text").all_text_contents()
            assert "purple" in colour  # the unseen category is drawn with its own bar pair

            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()

    assert errors == []
    assert messages == []
    assert requests == [page_file.as_uri()]  # nothing but the page itself: no CDN, no fonts, no images
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width == 1100 and height > 1500
    assert len(data) > 50_000  # a blank page of that size compresses to a few kB


def test_report_of_an_empty_window_and_a_broken_profile_still_renders() -> None:
    profile = {
        "rows": 10,
        "features": {
            "x": {"kind": "numeric", "count": 10, "missing": 0, "bin_edges": [0, 1, 2], "bin_counts": "broken"},
            "c": {"kind": "categorical", "count": 10, "missing": 0, "frequencies": {"a": 6, "b": 4}, "other": 0},
        },
    }
    report = assess(profile, pd.DataFrame(), model="m")
    html = render_report(report, profile, pd.DataFrame())
    assert "the reference profile of this feature is invalid" in html
    assert "only 0 rows, need 100" in html
    assert "No feature could be assessed" in html
    assert html.count("<svg") == 1  # the categorical reference alone; the broken one has no plot
