"""report.html in a real browser: headless Chromium renders a small reproduce run's report,
takes a screenshot, and a harness page checks that every claim row and every image loaded.

Marked `browser` (its own CI step, which installs Debian's chromium). The screenshot is kept
at $FACTLAB_ARTIFACTS/report-screenshot.png (else in the test's temporary folder) and its path
is printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from factlab.runs.reproduce import reproduce

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]
TOYS = [f"test_report:{n}" for n in ("TOY_HOLDS", "TOY_FAILS", "TOY_UNSURE")]

# The harness loads the report in a frame and writes what it saw into its own DOM, which
# --dump-dom prints: the claim rows, and for every <img> whether it decoded (naturalWidth).
HARNESS = """<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="f" src="report.html" style="width:1300px;height:900px"></iframe>
<script>
document.getElementById("f").onload = function () {
  var doc = this.contentDocument;
  var rows = Array.from(doc.querySelectorAll("tr.claim")).map(function (r) {
    return [r.dataset.experiment, r.dataset.verdict]; });
  var imgs = Array.from(doc.images).map(function (i) {
    return [i.getAttribute("src"), i.complete && i.naturalWidth > 0]; });
  document.getElementById("out").textContent = "RESULT" + JSON.stringify(
    {rows: rows, imgs: imgs, summary: doc.getElementById("summary").textContent});
};
</script></body></html>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium on PATH (CI's browser step installs Debian's chromium)")


def _browse(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"  # a fresh user-data-dir
    return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def test_report_renders_every_claim_and_image(tmp_path, monkeypatch):
    browser = _chromium()
    monkeypatch.setenv("FACTLAB_ALLOW_MODULES", "1")
    out = tmp_path / "reproduce"
    result = reproduce(out, only=TOYS, launcher="serial", quiet=True)
    n_figures = sum(len(json.loads(p.read_text())["figures"]) > 0
                    for p in out.rglob("summary.json"))

    shots = Path(os.environ.get("FACTLAB_ARTIFACTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    shot = shots / "report-screenshot.png"
    shot.unlink(missing_ok=True)
    _browse(browser, tmp_path, "--window-size=1300,900", "--hide-scrollbars",
            f"--screenshot={shot}", result.report.resolve().as_uri())
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nreport screenshot: {shot}")

    (out / "harness.html").write_text(HARNESS)
    proc = _browse(browser, tmp_path, "--allow-file-access-from-files",
                   "--virtual-time-budget=10000", "--dump-dom",
                   (out / "harness.html").resolve().as_uri())
    match = re.search(r"RESULT(\{.*\})</pre>", proc.stdout.replace("&quot;", '"'))
    assert match, f"harness did not report: {proc.stdout[-500:]} {proc.stderr[-500:]}"
    seen = json.loads(match.group(1).replace("&amp;", "&"))
    assert sorted(seen["rows"]) == [["toy-fails", "fails"], ["toy-holds", "holds"],
                                    ["toy-unsure", "inconclusive"]]
    assert len(seen["imgs"]) == n_figures == 3
    assert all(ok for _, ok in seen["imgs"]), seen["imgs"]
    assert "3 claims: 1 holds, 1 fails, 1 inconclusive" in seen["summary"]
