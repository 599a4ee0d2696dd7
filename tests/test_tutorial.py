"""docs/stac-tutorial.md runs: every ``georefscale`` command of its bash blocks and its Python
block, in order, against the sample STAC catalog served on 127.0.0.1 (small crops of the scenes,
so it takes seconds), with the tutorial's port replaced by the test server's."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner

from georefscale.cli import main
from georefscale.sample_stac import serve, write_catalog

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "stac-tutorial.md"
TUTORIAL_URL = "http://127.0.0.1:8765"
CROP = 96  # HR pixels: one tile, and enough for the reference's co-registration
TARGET, REFERENCE = "rio_20171011", "rio_20160424"


def _blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of ``lang`` in a Markdown text."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _commands(text: str) -> list[list[str]]:
    """The ``georefscale`` commands of the bash blocks, as argument lists (without the
    program name)."""
    lines = [ln for block in _blocks(text, "bash") for ln in block.replace("\\\n", " ")
             .splitlines()]
    return [shlex.split(ln)[1:] for ln in lines if ln.startswith("georefscale ")]


@pytest.fixture(scope="module")
def stac_url(oscd_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tutorial's catalog (the two rio scenes and both montpellier ones, cropped) served
    on a free port."""
    root = tmp_path_factory.mktemp("stac-demo")
    write_catalog([oscd_dir / f"{s}.tif" for s in (TARGET, REFERENCE, "montpellier_20150812",
                                                    "montpellier_20171030")], root, crop=CROP)
    server, url = serve(root)
    yield url
    server.shutdown()


def test_stac_tutorial_runs(stac_url: str, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    text = TUTORIAL.read_text().replace(TUTORIAL_URL, stac_url)
    commands = _commands(text)
    assert {c[0] if c[0] != "catalog" else " ".join(c[:2]) for c in commands} == {
        "catalog build", "catalog show", "catalog query", "onboard", "ground", "roundtrip",
        "archive"}
    monkeypatch.chdir(tmp_path)
    outputs = []
    for args in commands:
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, f"georefscale {shlex.join(args)}:\n{res.output}"
        outputs.append(res.output)
    built = [o for c, o in zip(commands, outputs, strict=True) if c[:2] == ["catalog", "build"]]
    assert built and all("4 records (4 added, 0 updated, 0 skipped)" in o for o in built)
    query = outputs[[c[:2] for c in commands].index(["catalog", "query"])]
    assert re.search(rf"^\s+1\s+{REFERENCE}\s.*{stac_url}/items/{REFERENCE}_B02.tif$", query,
                     flags=re.M)
    trips = [json.loads(o) for c, o in zip(commands, outputs, strict=True) if c[0] == "roundtrip"]
    # the rate target's product: two layers (the full scene, as the tutorial shows), or, on
    # these small crops, possibly the target coded directly when that needs fewer bytes
    assert trips[0].get("layers", 1) == 1
    assert trips[1].get("layers") == 2 or trips[1]["product"] == "direct"
    assert all(len(t["bands"]) == 4 for t in trips)
    assert [t["references"] for t in trips] == [
        [REFERENCE], [REFERENCE] if trips[1].get("layers") == 2 else []]
    assert all(0 < b["ssim"] <= 1 for t in trips for b in t["bands"])
    assert trips[1]["psnr_db"] >= 45 > trips[0]["psnr_db"]
    for out in ("rio_lr.tif", "rio_45.jp2", "rio_hr.tif", "rio_45_hr.tif"):
        assert (tmp_path / out).is_file(), out
    archived = tmp_path / "archive-out" / TARGET
    assert (archived / f"{TARGET}_lr.tif").read_bytes() == (tmp_path / "rio_lr.tif").read_bytes()
    assert sorted(p.name for p in archived.iterdir()) == [
        "manifest.json", f"{TARGET}_hr.tif", f"{TARGET}_lr.tif"]

    (python,) = _blocks(text, "python")
    exec(compile(python, str(TUTORIAL), "exec"), {"__name__": "tutorial"})
    assert (tmp_path / "rio_py_lr.tif").read_bytes() == (tmp_path / "rio_lr.tif").read_bytes()
    with rasterio.open("rio_py_hr.tif") as a, rasterio.open("rio_hr.tif") as b:
        assert np.array_equal(a.read(), b.read())
    # the same product as the CLI's (two layers, or the target coded directly on these crops)
    assert (tmp_path / "rio_py_45.enh.jp2").is_file() == (tmp_path / "rio_45.enh.jp2").is_file()
    for scene in ("rio_20171011", "montpellier_20171030"):
        products = [json.loads((tmp_path / out / scene / "manifest.json").read_text())["products"]
                    for out in ("archive-out", "archive-py")]
        assert products[0] == products[1], scene
