"""The ``logstore`` command: dispatch to subcommand modules, help, errors, lazy loading."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tools_support import build_store, run_tool

from adapters.rocket.broker import app
from tools import cli, serve


def fake_main(argv: list[str]) -> int:
    """A stand-in subcommand: echoes its arguments, exits with their count."""
    print(json.dumps(argv))
    return len(argv)


def test_help_and_usage_errors() -> None:
    top = run_tool("tools.cli", "--help")
    assert top.returncode == 0
    for name in ("dump", "verify", "bench"):
        assert name in top.stdout
    assert run_tool("tools.cli").returncode == 2
    unknown = run_tool("tools.cli", "frobnicate")
    assert unknown.returncode == 2 and "invalid choice" in unknown.stderr


def test_subcommands_get_their_arguments_untouched(tmp_path: Path) -> None:
    root = tmp_path / "store"
    build_store(root)
    proc = run_tool("tools.cli", "verify", root, "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["ok"] is True
    dumped = run_tool("tools.cli", "dump", "--json", root / "logs" / "plain-0")
    assert dumped.returncode == 0 and json.loads(dumped.stdout)["name"] == "plain-0"
    own_help = run_tool("tools.cli", "dump", "--help")
    assert own_help.returncode == 0 and "logstore-dump" in own_help.stdout
    assert run_tool("tools.cli", "verify", tmp_path / "missing").returncode == 2


def test_registering_a_command_is_one_entry(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.COMMANDS, "echo", cli.Command("echo arguments", f"{__name__}:fake_main"))
    assert cli.main(["echo", "-x", "--y", "z"]) == 3
    assert json.loads(capsys.readouterr().out) == ["-x", "--y", "z"]


def test_missing_module_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(cli.COMMANDS, "bench", cli.Command("benchmarks", "tools.no_such_bench:main"))
    assert cli.main(["bench", "append"]) == 2
    err = capsys.readouterr().err
    assert "'bench' command is not available" in err and "tools.no_such_bench" in err


def test_import_errors_inside_a_module_are_not_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "broken_cmd_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "broken", cli.Command("broken", "broken_cmd_mod:main"))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        cli.main(["broken"])


def test_a_subcommand_that_exits_gives_its_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(cli.COMMANDS, "dump", cli.Command("dump", "tools.dump:main"))
    assert cli.main(["dump", "--no-such-flag"]) == 2


@pytest.mark.parametrize(("main", "argv"), [("main", []), ("namesrv_main", []), ("broker_main", [])])
def test_server_processes_tune_the_gc_before_they_start(
        monkeypatch: pytest.MonkeyPatch, main: str, argv: list[str]) -> None:
    """logstore serve / namesrv / broker set the young-generation GC threshold (app.tune_gc)
    before their loop runs, the two with a broker after placing it on its CPUs
    (app.place_process, not run here: it would move this test process); the process's
    threshold is what tune_gc says."""
    calls: list[str] = []
    monkeypatch.setattr(app, "place_process", lambda config: calls.append("place"))
    monkeypatch.setattr(app, "tune_gc", lambda: calls.append("gc"))
    monkeypatch.setattr(app, "install_loop_policy", lambda: None)
    monkeypatch.setattr(serve.asyncio, "run", lambda coro: (calls.append("run"), coro.close()))
    assert getattr(serve, main)(argv) == 0
    assert calls == (["gc", "run"] if main == "namesrv_main" else ["place", "gc", "run"])
    out = subprocess.run(
        [sys.executable, "-c", "import gc; from adapters.rocket.broker import app; app.tune_gc(); "
                               "print(gc.get_threshold()[0])"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2])
    assert int(out.stdout) == app.GC_YOUNG_THRESHOLD != gc.get_threshold()[0]
