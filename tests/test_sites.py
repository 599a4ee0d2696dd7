"""Evaluation sites of a folder of dated files, and leaving out what a model was trained on."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from georefscale.cli import main
from georefscale.errors import InputError
from georefscale.evaluation.sites import evaluation_sites, find_sites, seen_in_training

OSCD_TEST = ["brasilia", "montpellier", "norcia", "rio", "saclay_w"]
S2_X4 = ["bicubic", "noref-s2-x4", "refscale-s2-x4"]


def test_find_sites_takes_latest_as_target_and_previous_as_reference(tmp_path, oscd_dir):
    for name in ("a_20150101.tif", "a_20170101.tif", "a_20160101.tif", "b_20150101.tif"):
        (tmp_path / name).symlink_to(oscd_dir / "norcia_20171018.tif")
    sites = find_sites(tmp_path)
    assert [(s.name, s.target.name, s.reference.name) for s in sites] == [
        ("a", "a_20170101.tif", "a_20160101.tif")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no site"):
        find_sites(tmp_path / "empty")


def test_seen_files_come_from_the_model_cards():
    seen = seen_in_training(S2_X4)
    # both directions of every training pair, and the validation city
    assert {"abudhabi_20180328.tif", "abudhabi_20160120.tif", "rennes_20170621.tif"} <= seen
    assert not any(f.startswith(tuple(OSCD_TEST)) for f in seen)
    assert seen_in_training(["bicubic", "no-such-model"]) == set()


def test_the_oscd_archive_evaluates_exactly_the_five_test_cities(oscd_dir):
    kept, skipped = evaluation_sites(oscd_dir, S2_X4)
    assert [s.name for s in kept] == OSCD_TEST
    assert "rennes" in skipped and "paris" in skipped and len(skipped) == 14


def test_naip_test_date_is_not_seen(naip_dir):
    kept, skipped = evaluation_sites(naip_dir, ["refscale-naip-x4"])
    assert skipped == [] and kept[0].target.name.endswith("_20200831.tif")


def test_only_seen_sites_is_an_error_unless_asked_for(oscd_dir):
    with pytest.raises(InputError, match=r"\(rennes\).*refscale-s2-x4.*--include-seen"):
        evaluation_sites(oscd_dir, S2_X4, ["rennes"])
    kept, skipped = evaluation_sites(oscd_dir, S2_X4, ["rennes"], include_seen=True)
    assert [s.name for s in kept] == ["rennes"] and skipped == []


@pytest.mark.parametrize("command", ["evaluate", "rd"])
def test_commands_refuse_to_score_only_training_sites(oscd_dir, command, tmp_path):
    res = CliRunner().invoke(main, [command, "--pairs", str(oscd_dir), "--site", "paris",
                                    "--json", str(tmp_path / "unused.json")])
    assert res.exit_code == 1
    assert "every site here (paris) was in the training or validation data" in res.output
    assert not (tmp_path / "unused.json").exists()
