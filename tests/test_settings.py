"""engine/settings.py: every BIKE_* variable is one typed field, documented in docs/cli.md; options of a command
(--decoder, --sampling, --endpoint) never outlive it in the environment."""
import os
import re
from pathlib import Path

import pytest

from engine.settings import NOT_SETTINGS, Settings, env_names, env_table

ROOT = Path(__file__).resolve().parents[1]


def test_every_bike_variable_in_the_code_is_a_setting():
    used = set()
    for folder in ("engine", "index", "jobs", "bike"):
        for path in (ROOT / folder).rglob("*.py"):
            used |= set(re.findall(r"\bBIKE_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert used, "the scan found nothing: it cannot fail"
    assert used - env_names() == set(), "BIKE_* names read in the code but not fields of engine.settings.Settings"


def test_docs_table_is_the_settings_table():
    assert env_table() in (ROOT / "docs" / "cli.md").read_text(), \
        "docs/cli.md's table differs from engine.settings.env_table(): paste the new one"


def test_only_settings_reads_bike_variables_from_the_environment():
    """No module but engine/settings.py reads a BIKE_* variable from the environment (marker/test knobs aside)."""
    pattern = re.compile(r"environ(?:\.get)?[\[(]\s*[\"'](BIKE_[A-Z0-9_]+)")
    found = []
    for folder in ("engine", "index", "jobs"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "settings.py":
                found += [(path.name, n) for n in pattern.findall(path.read_text()) if n not in NOT_SETTINGS]
    assert found == []


def test_from_env_types_and_errors():
    s = Settings.from_env({"BIKE_LEASE_S": "5", "BIKE_DECODE_NICE": "3", "BIKE_REMOTE_READ": " Spool ",
                           "BIKE_CACHE_DIR": "", "BIKE_DECODER": " ", "BIKE_STREAM_CACHE_MB": "1.5"})
    assert (s.lease_s, s.decode_nice, s.remote_read, s.cache_dir, s.decoder, s.stream_cache_mb) == \
        (5.0, 3, "spool", "", None, 1.5)
    assert Settings.from_env({}) == Settings()
    with pytest.raises(ValueError, match="BIKE_SPOOL_MAX_GB"):
        Settings.from_env({"BIKE_SPOOL_MAX_GB": "lots"})
    with pytest.raises(Exception):
        Settings().lease_s = 1                                     # frozen


def test_command_options_leave_the_environment_as_it_was(monkeypatch):
    """--decoder/--sampling/--endpoint hold while the command runs, in this process, and nothing is left
    in the environment after it (before: BIKE_DECODER/BIKE_SAMPLING were exported, AWS_ENDPOINT_URL set
    for good)."""
    import jobs.cli
    from engine.sources.remote import endpoint
    from engine.video import default_decoder, default_sampling
    from jobs.cli.options import command_context
    monkeypatch.setenv("BIKE_DECODER", "ffmpeg")
    monkeypatch.delenv("BIKE_SAMPLING", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    before = dict(os.environ)
    args = jobs.cli.build_parser().parse_args(["classify", "v.mp4", "--decoder", "pyav", "--sampling", "keyframes"])
    with command_context(args):
        assert (default_decoder(), default_sampling()) == ("pyav", "keyframes")
        assert dict(os.environ) == before                          # no option is carried by the environment
    assert (default_decoder(), default_sampling()) == ("ffmpeg", "exact")
    args = jobs.cli.build_parser().parse_args(["sql", "--store", "s3://b/p", "--endpoint", "http://h:1", "SELECT 1"])
    with command_context(args):
        assert endpoint() == "http://h:1"
    assert endpoint() is None and dict(os.environ) == before


def test_tag_resolves_the_decoding_choice_into_its_options(monkeypatch, tmp_path):
    """bike tag hands every decode task the decoder and sampling as arguments (jobs/tag/rayrunner.py, in the typed DecodeSpec), so a worker
    of a joined cluster gets them: run_tag resolves None to the settings' value once, on the driver."""
    from engine.video import default_decoder
    from jobs.tag.tag import frame_sampling
    monkeypatch.setenv("BIKE_SAMPLING", "keyframes")
    monkeypatch.setenv("BIKE_DECODER", "pyav")
    assert frame_sampling(None) == "keyframes" and frame_sampling("exact") == "exact"
    assert default_decoder() == "pyav"


def test_tag_endpoint_does_not_outlive_the_command(monkeypatch, tmp_path):
    """``bike tag --endpoint`` used to set $AWS_ENDPOINT_URL for good (a later command in the same process
    went to that server); it is now a TagOptions field, set for the job only."""
    import jobs.cli
    from jobs.errors import UsageError
    from jobs.tag.tag import TagOptions, run_tag
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    (tmp_path / "empty").mkdir()
    assert jobs.cli.main(["tag", str(tmp_path / "empty"), "--store", str(tmp_path / "s"),
                          "--endpoint", "http://127.0.0.1:9"]) == 2                  # no videos: a usage error
    assert "AWS_ENDPOINT_URL" not in os.environ
    with pytest.raises(UsageError):
        run_tag(TagOptions(sources=[str(tmp_path / "empty")], store=str(tmp_path / "s"), endpoint="http://h:1"))
    assert "AWS_ENDPOINT_URL" not in os.environ


def test_train_carries_decoder_to_its_workers_as_a_config_field(tmp_path):
    """``bike train --decoder`` reaches Ray Train workers as a TrainConfig field (it used to ride on
    $BIKE_DECODER, which a joined cluster's workers never saw); the worker holds it around its loop."""
    from dataclasses import asdict

    import jobs.cli
    from engine.model.labels import load_labels
    from jobs.cli.commands.train import build_config
    args = jobs.cli.build_parser().parse_args(["train", "data.csv", "--out", str(tmp_path), "--decoder", "ffmpeg"])
    cfg = build_config(args, load_labels("dog,cat"), [], [])
    assert cfg.decoder == "ffmpeg" and asdict(cfg)["decoder"] == "ffmpeg"     # plain data, sent to the workers
