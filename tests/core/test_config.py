import argparse

from core.config import Settings, add_settings_arguments


def test_flags_override_the_environment_and_absent_flags_do_not(tmp_path):
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser, "model", "threads")
    args = parser.parse_args(["--model", str(tmp_path / "m"), "--threads", "3"])
    settings = Settings.from_args(args)
    assert settings.model_dir == tmp_path / "m" and args.threads == 3
    assert settings.data_dir == Settings.from_env().data_dir  # no --data flag: the environment's
    assert Settings.from_args(parser.parse_args([])).model_dir == Settings.from_env().model_dir
