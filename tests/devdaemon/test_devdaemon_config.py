"""A bad configuration stops the daemon with one clear line, never a traceback."""

import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import REPO, write_config


def run(config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devdaemon", "--config", str(config), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )


class TestConfig:
    @pytest.mark.parametrize(
        ("old", "new", "named"),
        [
            ('token = "', 'tokn = "', "[panel] token is missing"),
            ('token_id = "', 'token_id = "X', "[panel] token_id"),
            ("port = 2022", 'port = "2022"', "[sftp] port must be an integer"),
            ("upload_limit_mb = 2", "upload_limit_mb = 0", "[api] upload_limit_mb"),
            ('url = "http://127.0.0.1:1"', 'url = "ftp://x"', "[panel] url"),
            ("[system]", "[systems]", "[system] is missing"),
            ("[api]", '[api]\ntls_cert = "/x.pem"', "[api] tls_cert and tls_key"),
        ],
    )
    def test_it_names_the_wrong_key(
        self, tmp_path: Path, old: str, new: str, named: str
    ) -> None:
        config = write_config(tmp_path, 8080, "http://127.0.0.1:1")
        config.write_text(config.read_text().replace(old, new, 1))

        result = run(config)

        assert result.returncode == 2
        assert named in result.stderr
        assert "Traceback" not in result.stderr

    def test_it_says_when_the_file_is_missing_or_not_toml(self, tmp_path: Path) -> None:
        missing = run(tmp_path / "nope.toml")
        (tmp_path / "bad.toml").write_text("[panel\n")
        broken = run(tmp_path / "bad.toml")

        assert missing.returncode == 2
        assert "cannot read" in missing.stderr
        assert broken.returncode == 2
        assert "not valid TOML" in broken.stderr
        assert "Traceback" not in missing.stderr + broken.stderr

    def test_it_refuses_an_unknown_log_level(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, 8080, "http://127.0.0.1:1")

        result = run(config, "--log-level", "LOUD")

        assert result.returncode == 2
        assert "--log-level" in result.stderr
