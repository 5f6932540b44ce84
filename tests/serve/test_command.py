"""`caviar serve`'s own refusals: one line and exit status 2, before anything is served."""

from __future__ import annotations

import socket

from tests.support import caviar_run


def test_a_missing_results_folder_or_a_taken_port_is_one_line_and_status_2(tmp_path):
    missing = caviar_run("serve", "--out", tmp_path / "nothing", "--port", "0", timeout=60)
    assert missing.returncode == 2 and missing.stderr.strip() == \
        f"caviar serve: error: --out: no results folder at {tmp_path / 'nothing'}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = caviar_run("serve", "--out", tmp_path, "--port", port, timeout=60)
    assert busy.returncode == 2 and busy.stderr.count("\n") == 1 and f"--port: {port} is in use" in busy.stderr
    bad = caviar_run("serve", "--out", tmp_path, "--port", "70000", timeout=60)
    assert bad.returncode == 2 and "--port: expected 0..65535" in bad.stderr
