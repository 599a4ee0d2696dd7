"""Archives on Dask distributed: real LocalCluster process workers, a `dask scheduler` and
`dask worker`s started as processes on 127.0.0.1 (one killed mid-run), compared byte for byte
with the serial path on real OSCD / NAIP scenes (bicubic model: fast and deterministic)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from georefscale.archive import SceneJob, is_finished, plan_archive, process_archive
from georefscale.catalog import Catalog, ingest
from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.options import (
    ClusterOptions,
    GroundOptions,
    OnboardOptions,
    RateTarget,
    TilingOptions,
)

OSCD = [("norcia", "20150711"), ("norcia", "20171018"), ("rio", "20160424"), ("rio", "20171011")]
STATUS = {"norcia_20150711": "skipped", "rio_20160424": "skipped",  # first date: no reference
          "norcia_20171018": "done", "rio_20171011": "done"}
NAIP = "m_4709963_se_14_1_{}.tif"
CLI = shutil.which("georefscale") or "georefscale"
# Same products everywhere: small tiles so the split path has several bands; with
# split_pixels=100_000 the rio scenes (426 x 353) are split across workers, norcia (385 x 241) not.
BICUBIC = OnboardOptions(model="bicubic", tiling=TilingOptions(128, 16))
OPTS = {"onboard": BICUBIC, "ground": GroundOptions(), "progress": False}
SERIAL = ClusterOptions(workers=0)
SPLIT = {"split_pixels": 100_000, "band_rows": 1}


def _tree(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` but the archive manifest (which holds timings)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root) != Path("manifest.json")
    }


def _hidden(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def oscd_files(oscd_dir: Path) -> list[Path]:
    return [oscd_dir / f"{city}_{day}.tif" for city, day in OSCD]


@pytest.fixture(scope="module")
def oscd_catalog(oscd_files) -> Catalog:
    return Catalog.from_records(ingest(oscd_files).records)


@pytest.fixture(scope="module")
def serial(oscd_catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "out"
    result = process_archive(oscd_catalog, out, cluster=SERIAL, **OPTS)
    assert {s["id"]: s["status"] for s in result.scenes} == STATUS, result.scenes
    return out


def test_plan_picks_earlier_references_in_the_window(naip_dir: Path):
    cat = Catalog.from_records(ingest([naip_dir]).records)
    jobs = plan_archive(cat, selection={"after": "2014-01-01", "before": "2020-01-01"},
                        onboard=BICUBIC)
    assert [j.id[-8:] for j in jobs] == [
        "20140720", "20150926", "20160816", "20170827", "20180716", "20190904"]
    for job in jobs:
        assert job.references and all(r.datetime < job.target.datetime for r in job.references)
        assert len(job.target.sha256) == 64 and not job.split
    assert jobs[0].references[0].id == NAIP.format("20120731").removesuffix(".tif")
    assert jobs[-1].references[0].id == NAIP.format("20180716").removesuffix(".tif")
    first = plan_archive(cat, selection={"before": "2010-01-01"}, onboard=BICUBIC)
    assert len(first) == 1 and first[0].references == ()
    assert first[0].note == "no earlier reference in the catalog"
    assert plan_archive(cat, selection={"aoi": "10,10,11,11"}, onboard=BICUBIC) == []
    with pytest.raises(InputError, match="not before"):
        plan_archive(cat, selection={"after": "2020-01-01", "before": "2019-01-01"})


def test_auto_model_fits_the_scene(oscd_catalog):
    from georefscale.engine import models_for

    fits = models_for(4, "uint16", 4)
    jobs = plan_archive(oscd_catalog, onboard=OnboardOptions(model="auto", factor=4))
    for job in jobs:
        assert job.model in (fits or ["bicubic"]) and job.model_choice.startswith("auto")
    # the same default as a named model's: lossless LR refscale-s2-x4, a rate target the -jp2
    coded = plan_archive(oscd_catalog, onboard=OnboardOptions(
        model="auto", factor=4, rate=RateTarget(max_error=10)))
    assert {j.model for j in jobs} == {"refscale-s2-x4"}
    assert {j.model for j in coded} == {"refscale-s2-x4-jp2"}


def test_serial_manifests_and_resume(serial: Path, oscd_catalog, tmp_path: Path):
    assert _hidden(serial) == []
    scene = json.loads((serial / "rio_20171011" / "manifest.json").read_text())
    assert scene["status"] == "done" and scene["model"] == "bicubic"
    assert [r["id"] for r in scene["references"]] == ["rio_20160424"]
    lr = serial / "rio_20171011" / scene["products"]["lr"]["file"]
    assert hashlib.sha256(lr.read_bytes()).hexdigest() == scene["products"]["lr"]["sha256"]
    assert scene["metrics"]["psnr_db"] > 25 and scene["metrics"]["size_ratio"] > 1
    summary = json.loads((serial / "manifest.json").read_text())
    assert summary["summary"] == {"done": 2, "skipped": 2, "resumed": 0}
    assert summary["cluster"] == {"kind": "serial"}
    skipped = [s for s in summary["scenes"] if s["status"] == "skipped"]
    assert {s["error"] for s in skipped} == {"no earlier reference in the catalog"}
    assert sorted(p.name for p in serial.iterdir()) == [
        "manifest.json", "norcia_20171018", "rio_20171011"]
    # resume: a rerun skips both; a corrupted product is redone, with the same bytes
    result = process_archive(oscd_catalog, serial, cluster=SERIAL, **OPTS)
    assert result.resumed == 2
    out = tmp_path / "out"
    shutil.copytree(serial, out)
    (out / "rio_20171011" / "rio_20171011_lr.tif").write_bytes(b"half-written")
    result = process_archive(oscd_catalog, out, cluster=SERIAL, **OPTS)
    assert {s["id"] for s in result.scenes if s.get("resumed")} == {"norcia_20171018"}
    assert _tree(out) == _tree(serial) and not result.failed


def test_local_cluster_matches_serial(serial: Path, oscd_catalog, tmp_path: Path):
    """The real thing: a LocalCluster of 2 process workers (1 thread each); rio is split."""
    out = tmp_path / "out"
    result = process_archive(oscd_catalog, out, cluster=ClusterOptions(workers=2, **SPLIT), **OPTS)
    assert not result.failed, result.failed
    assert {s["id"]: s["status"] for s in result.scenes} == STATUS
    assert [s["id"] for s in result.scenes if s.get("split")] == ["rio_20171011"]
    pids = {s["worker"] for s in result.scenes if s["status"] == "done" and not s.get("split")}
    assert str(os.getpid()) not in {w.rsplit(":", 1)[1] for w in pids}  # ran on the workers
    assert _tree(out) == _tree(serial) and _hidden(out) == []
    assert json.loads((out / "manifest.json").read_text())["cluster"]["workers"] == 2


def test_split_scene_with_a_reference_model_matches_serial_onboard(oscd_dir, tmp_path: Path):
    """A RefScale model (untrained, 1 block) given as trained-model files (loaded by path on
    each worker), on rio split in 1-row tile bands over 2 process workers, on board and on the
    ground: the reference covers only the west of the target, so eastern tiles fall back to the
    no-reference twin; LR and HR are byte-identical to serial ``onboard`` / ``ground``."""
    torch = pytest.importorskip("torch")
    import rasterio

    from georefscale.api import ground, onboard
    from georefscale.archive import Input, connect, run_split_scene
    from georefscale.engine import NetConfig, RefScaleNet
    from georefscale.engine.run import resolve_model, single_threaded
    from georefscale.engine.weights import save_model
    from georefscale.options import FallbackPolicy
    from georefscale.product import LRInfo
    from georefscale.raster.grid import Grid
    from georefscale.raster.io import write_geotiff

    models = tmp_path / "models"
    for name, use_ref in (("refscale-test-x4", True), ("noref-test-x4", False)):
        torch.manual_seed(0)
        net = RefScaleNet(NetConfig(bands=4, factor=4, hidden=8, blocks=1, ref_features=4,
                                    use_reference=use_ref))
        with torch.no_grad():  # so the output depends on the reference
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
        save_model(net, {"name": name, "dtype": "uint16", "scale": 10000.0}, models)
    target = oscd_dir / "rio_20171011.tif"
    with rasterio.open(oscd_dir / "rio_20160424.tif") as ds:  # west 260 of 426 columns
        win = rasterio.windows.Window(0, 0, 260, ds.height)
        ref = write_geotiff(tmp_path / "rio_20160424_west.tif", ds.read(window=win),
                            Grid.from_dataset(ds).window_grid(win), nodata=ds.nodata,
                            descriptions=ds.descriptions)
    options = OnboardOptions(
        model=str(models / "refscale-test-x4.safetensors"), tiling=TilingOptions(128, 16),
        fallback=FallbackPolicy(noref_model=str(models / "noref-test-x4.safetensors")))
    serial, serial_hr = tmp_path / "serial_lr.tif", tmp_path / "serial_hr.tif"
    with single_threaded():
        onboard(target, [ref], out=serial, options=options)
        ground(serial, [ref], out=serial_hr, model=resolve_model(options.model, None),
               noref_model=resolve_model(options.fallback.noref_model, None))
    job = SceneJob(
        target=Input(target.stem, str(target), "2017-10-11T00:00:00+00:00", None),
        references=(Input(ref.stem, str(ref), "2016-04-24T00:00:00+00:00", None),),
        onboard=options, ground=GroundOptions(), split=True,
    )
    out = tmp_path / "out"
    out.mkdir()
    with connect(workers=2) as client:
        entry = run_split_scene(client, job, out, band_rows=1)
    assert entry["status"] == "done" and entry["split"], entry
    lr = out / job.id / f"{job.id}_lr.tif"
    hr = out / job.id / f"{job.id}_hr.tif"
    with rasterio.open(hr) as ds, rasterio.open(serial_hr) as want:
        assert ds.tags()["GEOREFSCALE_LR"] == lr.name
        np.testing.assert_array_equal(ds.read(), want.read())
    with rasterio.open(lr) as ds:
        info = LRInfo.from_dataset(ds, lr)
    assert info.model == "refscale-test-x4" and info.fallback_model == "noref-test-x4"
    assert info.reference_ids == (ref.stem,) and info.shift_error is not None
    tiles = 3 * 4  # 353 x 426 pixels in 128-pixel tiles
    assert 0 < len(info.fallback_tiles) < tiles and 0 not in info.fallback_tiles
    assert lr.read_bytes() == serial.read_bytes()
    assert _hidden(out) == []


def test_vanished_reference_and_missing_target_fail_per_scene(oscd_dir, oscd_files, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for f in [*oscd_files, *oscd_dir.glob("brasilia_*.tif")]:
        shutil.copy(f, data / f.name)
    cat = Catalog.from_records(ingest([data]).records)
    (data / "rio_20160424.tif").unlink()  # catalogued, then gone
    (data / "norcia_20171018.tif").unlink()
    out = tmp_path / "out"
    result = process_archive(cat, out, cluster=SERIAL, **OPTS)
    status = {s["id"]: (s["status"], s["error"]) for s in result.scenes}
    assert status["rio_20171011"][0] == "failed"
    assert "rio_20160424.tif: reference rio_20160424 does not exist" in status["rio_20171011"][1]
    assert status["norcia_20171018"][0] == "failed"
    assert "norcia_20171018.tif: target norcia_20171018 does not exist" in status[
        "norcia_20171018"][1]
    assert status["brasilia_20171017"] == ("done", None)
    assert sorted(p.name for p in out.iterdir()) == ["brasilia_20171017", "manifest.json"]
    summary = json.loads((out / "manifest.json").read_text())["summary"]
    assert summary == {"done": 1, "failed": 2, "skipped": 3, "resumed": 0}
    catalog = cat.save(tmp_path / "cat.parquet")
    res = CliRunner().invoke(main, ["archive", str(catalog), "-o", str(out), "-m", "bicubic",
                                    "--tile", "128", "--halo", "16", "--ground", "-w", "0",
                                    "--no-progress"])
    assert res.exit_code == 1
    assert "georefscale: error: 2 of 6 scenes failed (first: rio_20171011:" in res.output
    assert "1 already done, 3 skipped (no reference), 2 failed" in res.output


def _archive_with_file_size_limit(catalog: Catalog, out: Path, limit: int) -> None:
    """A serial archive run in a forked process that cannot write files above ``limit`` bytes
    (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG as they would on a full disk)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    process_archive(catalog, out, cluster=SERIAL, **{**OPTS, "ground": None})


def test_full_disk_fails_the_scene_and_the_rerun_completes(oscd_catalog, serial, tmp_path):
    """With files above 50 kB unwritable, rio's 65 kB LR fails (GDAL leaves a truncated file
    and only logs the error: the writer must notice), norcia's 42 kB one is published; the
    rerun without the limit redoes only rio (LR only: the HR files are larger)."""
    out = tmp_path / "out"
    child = multiprocessing.get_context("fork").Process(
        target=_archive_with_file_size_limit, args=(oscd_catalog, out, 50_000))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    scenes = json.loads((out / "manifest.json").read_text())["scenes"]
    failed = {s["id"]: s["error"] for s in scenes if s["status"] == "failed"}
    assert list(failed) == ["rio_20171011"], scenes
    assert "rio_20171011_lr.tif: writing failed (disk full" in failed["rio_20171011"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "norcia_20171018"]
    result = process_archive(oscd_catalog, out, cluster=SERIAL, **{**OPTS, "ground": None})
    assert not result.failed and result.resumed == 1
    lr = {k: v for k, v in _tree(serial).items() if k.endswith("_lr.tif")}
    assert {k: v for k, v in _tree(out).items() if k.endswith("_lr.tif")} == lr


def test_unreachable_scheduler_writes_nothing(oscd_catalog, tmp_path: Path):
    out = tmp_path / "out"
    address = f"tcp://127.0.0.1:{_free_port()}"
    with pytest.raises(InputError, match=f"scheduler {address} does not answer"):
        process_archive(oscd_catalog, out,
                        cluster=ClusterOptions(scheduler=address, connect_timeout=1), **OPTS)
    assert not out.exists()
    res = CliRunner().invoke(main, ["archive", str(tmp_path / "none.parquet"), "-o", str(out)])
    assert res.exit_code == 1 and "georefscale: error:" in res.output and not out.exists()


def test_output_path_that_is_a_file(oscd_catalog, tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        process_archive(oscd_catalog, tmp_path / "file" / "out", cluster=SERIAL, **OPTS)


# -- a scheduler and workers started as separate processes -------------------------------------


@pytest.fixture
def cluster(tmp_path: Path):
    """`dask scheduler` + 2 `dask worker` processes (no nanny: a kill is final) on 127.0.0.1."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = (tmp_path / "dask.log").open("w")
    procs = {"scheduler": subprocess.Popen(
        ["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=log, stderr=subprocess.STDOUT, env=env)}
    for name in ("w0", "w1"):
        procs[name] = subprocess.Popen(
            ["dask", "worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--host", "127.0.0.1",
             "--local-directory", str(tmp_path / name)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
            yield address, procs, client
    finally:
        for p in reversed(procs.values()):
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()


@pytest.fixture(scope="module")
def naip_catalog(naip_dir: Path) -> Catalog:
    return Catalog.from_records(ingest([naip_dir]).records)


NAIP_RUN = {**OPTS, "selection": {"after": "2015-01-01"},
            "onboard": OnboardOptions(model="bicubic", tiling=TilingOptions(256, 32))}


@pytest.fixture(scope="module")
def naip_serial(naip_catalog, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("naip") / "serial"
    result = process_archive(naip_catalog, out, cluster=SERIAL, **NAIP_RUN)
    assert len(result.scenes) == 6 and not result.failed
    return out


def test_external_scheduler_survives_a_killed_worker(cluster, oscd_catalog, serial,
                                                      tmp_path: Path):
    """The OSCD scenes (rio split into tile bands) on a separately started scheduler; worker w0
    is SIGKILLed while the scheduler has tasks on it; the lost tasks and the rest of the run
    finish on w1 with exactly the serial bytes and nothing half-written."""
    address, procs, client = cluster
    out = tmp_path / "out"
    outcome: dict = {}
    run = threading.Thread(target=lambda: outcome.update(result=process_archive(
        oscd_catalog, out, cluster=ClusterOptions(scheduler=address, **SPLIT), **OPTS)))
    run.start()
    names = {addr: w["name"] for addr, w in client.scheduler_info()["workers"].items()}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(names.get(a) == "w0" and keys for a, keys in client.processing().items()):
            break
        time.sleep(0.01)
    else:
        pytest.fail("worker w0 never got a task")
    procs["w0"].send_signal(signal.SIGKILL)
    procs["w0"].wait(timeout=10)
    run.join(timeout=240)
    assert not run.is_alive()
    result = outcome["result"]
    assert not result.failed, result.failed
    assert {s["id"]: s["status"] for s in result.scenes} == STATUS
    assert _tree(out) == _tree(serial) and _hidden(out) == []
    summary = json.loads((out / "manifest.json").read_text())
    assert summary["cluster"]["scheduler"] == address and summary["summary"]["done"] == 2
    assert len(client.scheduler_info()["workers"]) == 1  # w0 is gone for good


@pytest.mark.slow
def test_ctrl_c_then_resume_gives_the_same_files(naip_catalog, naip_serial, tmp_path: Path):
    """Ctrl-C (SIGINT) to `georefscale archive` after the first finished scene; the folder
    holds only complete scenes; the rerun skips them and ends with the serial bytes."""
    catalog = tmp_path / "naip.parquet"
    naip_catalog.save(catalog)
    out = tmp_path / "out"
    args = [CLI, "archive", str(catalog), "-o", str(out),
            "-m", "bicubic", "--after", "2015-01-01", "--tile", "256", "--halo", "32",
            "--ground", "-w", "1", "--no-progress"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (
        out.is_dir() and any(not p.name.startswith(".") and p.is_dir() for p in out.iterdir())
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    done = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert 1 <= len(done) < 6
    for folder in done:  # every published scene is complete
        job = [j for j in plan_archive(naip_catalog, **{k: v for k, v in NAIP_RUN.items()
                                                        if k != "progress"})
               if j.id == folder.name][0]
        assert isinstance(job, SceneJob) and is_finished(job, out)
    rerun = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} already done, 0 skipped (no reference), 0 failed" in rerun.stderr
    assert _tree(out) == _tree(naip_serial)
