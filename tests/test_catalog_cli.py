"""`georefscale catalog build|query|show` on the real NAIP and OSCD archives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from georefscale.cli import EXIT_NO_CANDIDATE, main

REPO = Path(__file__).resolve().parents[1]
# The NAIP scene interior in EPSG:4326 and the same box in EPSG:3857 (from EPSG:26914
# 487000,5206500 - 489000,5208500).
AOI_4326 = "-99.17,47.01,-99.14,47.03"
AOI_3857 = "-11039668,5944016,-11036745,5946960"


@pytest.fixture(scope="module")
def cli() -> CliRunner:
    if "catalog" not in main.commands:  # the COMMAND_MODULES entry may not be committed yet
        from georefscale.cli.catalog import register

        register(main)
    return CliRunner()


@pytest.fixture(scope="module")
def naip_parquet(cli: CliRunner, naip_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Path:
    out = tmp_path_factory.mktemp("cat") / "naip.parquet"
    res = cli.invoke(main, ["catalog", "build", str(naip_dir), "-o", str(out), "--sensor", "NAIP"])
    assert res.exit_code == 0, res.output
    assert "10 records (10 added" in res.output
    return out


def _query(cli: CliRunner, catalog: Path, *args: str) -> list[dict]:
    res = cli.invoke(main, ["catalog", "query", str(catalog), *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_query_json_ranks_2019_first_in_both_crs(cli: CliRunner, naip_parquet: Path) -> None:
    rows = _query(cli, naip_parquet, "--aoi", AOI_4326, "--before", "2020-08-31")
    assert {"id", "href", "datetime", "overlap", "ranking"} <= set(rows[0])
    assert rows[0]["id"] == "m_4709963_se_14_1_20190904"
    assert rows[0]["datetime"].startswith("2019-09-04") and rows[0]["overlap"] == 1.0
    assert Path(rows[0]["href"]).is_file()
    mercator = _query(cli, naip_parquet, "--aoi", AOI_3857, "--aoi-crs", "EPSG:3857",
                      "--before", "2020-08-31")
    assert [r["id"] for r in mercator] == [r["id"] for r in rows]


def test_query_elsewhere_exits_3(cli: CliRunner, naip_parquet: Path) -> None:
    res = cli.invoke(main, ["catalog", "query", str(naip_parquet), "--aoi", "10,10,10.1,10.1"])
    assert res.exit_code == EXIT_NO_CANDIDATE
    assert "no reference for AOI" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--aoi", "1,2,3"], "is not WKT"),
    (["--aoi", AOI_4326, "--before", "2020-02-30"], "does not parse"),
    (["--aoi", AOI_4326, "--aoi-crs", "EPSG:0"], "unknown AOI CRS"),
    (["--aoi", AOI_3857], "outside longitude/latitude"),
])
def test_query_bad_input_exits_1(cli: CliRunner, naip_parquet: Path, args: list[str],
                                 message: str) -> None:
    res = cli.invoke(main, ["catalog", "query", str(naip_parquet), *args])
    assert res.exit_code == 1 and message in res.output, res.output


def test_query_target_finds_other_oscd_date(cli: CliRunner, oscd_dir: Path,
                                            tmp_path: Path) -> None:
    out = tmp_path / "oscd.parquet"
    assert cli.invoke(main, ["catalog", "build", str(oscd_dir / "pisa_*.tif"),
                             "-o", str(out)]).exit_code == 0
    rows = _query(cli, out, "--target", str(oscd_dir / "pisa_20180211.tif"))
    assert [r["id"] for r in rows] == ["pisa_20150704"]


def test_build_nothing_readable_writes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "junk_20200101.tif").write_bytes(b"junk")
    out = tmp_path / "cat.parquet"
    res = cli.invoke(main, ["catalog", "build", str(tmp_path), "-o", str(out)])
    assert res.exit_code == 1
    assert "junk_20200101.tif: skipped" in res.output and "not written" in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "junk_20200101.tif"]


def test_query_not_a_catalog(cli: CliRunner, naip_dir: Path) -> None:
    tif = str(naip_dir / "m_4709963_se_14_1_20190904.tif")
    res = cli.invoke(main, ["catalog", "query", tif, "--aoi", AOI_4326])
    assert res.exit_code == 1 and "not a catalog" in res.output


def test_show_summary_record_and_export(cli: CliRunner, naip_parquet: Path,
                                        tmp_path: Path) -> None:
    res = cli.invoke(main, ["catalog", "show", str(naip_parquet), "--json"])
    summary = json.loads(res.output)
    assert summary["records"] == 10 and summary["crs"] == ["EPSG:26914"]
    items = tmp_path / "items.json"
    res = cli.invoke(main, ["catalog", "show", str(naip_parquet), "m_4709963_se_14_1_20190904",
                            "--export", str(items)])
    item = json.loads(res.output)
    assert item["properties"]["proj:code"] == "EPSG:26914"
    assert len(json.loads(items.read_text())["features"]) == 10


def test_committed_catalogs_resolve_against_archive(cli: CliRunner, data_dir: Path,
                                                    tmp_path: Path) -> None:
    for name in ("naip.parquet", "oscd.parquet"):
        shutil.copy(REPO / "catalogs" / name, tmp_path / name)  # metadata only, no imagery
    rows = _query(cli, tmp_path / "naip.parquet", "--aoi", AOI_4326, "--before", "2020-08-31",
                  "--archive", str(data_dir))
    assert rows[0]["id"] == "m_4709963_se_14_1_20190904"
    assert Path(rows[0]["href"]).is_file()
    rows = _query(cli, tmp_path / "oscd.parquet", "--target",
                  str(data_dir / "oscd" / "rio_20171011.tif"), "--archive", str(data_dir))
    assert rows[0]["id"] == "rio_20160424" and Path(rows[0]["href"]).is_file()
