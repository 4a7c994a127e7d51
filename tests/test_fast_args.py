"""`analyze`'s plain command lines are read without typer (commands/fast_args.py, ~90 ms of
start-up): the command must get exactly the values typer would give it, and everything else
must still go to typer (help, errors, exit codes)."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import typer

from dsdoctor import cli
from dsdoctor.commands import analyze as command
from dsdoctor.commands.fast_args import parse
from dsdoctor.commands.params import for_typer


def _typer_kwargs(args: list[str]):
    """What typer calls `analyze` with for `args` (the real signature), or the error's name."""
    seen: dict = {}

    @functools.wraps(command.analyze)
    def capture(**kw):
        seen.update(kw)

    app = typer.Typer()
    app.command("analyze")(for_typer(capture))       # as commands/analyze.py registers it

    @app.callback()
    def _group() -> None:
        pass

    try:
        app(args=["analyze", *args], standalone_mode=False)
    except Exception as e:         # a usage error: the fast reader must have declined
        return type(e).__name__
    return seen


SAME = [
    ["a.log"],
    ["--json", "a.log", "b.log"],
    ["a.log", "--json", "b.log"],                       # options among the arguments
    ["-c", "cfg.json", "run/"],
    ["--config=cfg.json", "--json", "x.log.gz"],
    ["--world-size", "8", "x"],
    ["--world-size=1048576", "x"],
    ["--world-size", "1", "--world-size", "64", "x"],   # the last one wins
    ["--select", "a,b", "--select", "c", "--ignore", "d*", "x"],
    ["--rules-dir", "r1", "--rules-dir=r2", "x"],
    ["-f", "sarif", "--fail-on", "never", "x"],
    ["--format", "json", "--format", "github", "x"],
    ["--all-lines", "--force", "--html", "o.html", "--write-config", "o.json", "--rules", "rdir", "x"],
    ["--", "-weird.log", "--json"],                   # after --, everything is a path
    ["-", "--json"],                                  # stdin
    ["x", "--config", "-"],
]


@pytest.mark.parametrize("args", SAME, ids=" ".join)
def test_fast_reader_gives_what_typer_gives(args):
    want = _typer_kwargs(args)
    assert isinstance(want, dict), want
    assert parse(command.analyze, args) == want


DECLINED = [
    [],                                   # no path: typer's "Missing argument"
    ["--help"], ["x", "--help"], ["-h", "x"],
    ["--jso", "x"],                       # click does not expand abbreviations
    ["--wrold-size", "8", "x"],
    ["--world-size", "0", "x"], ["--world-size", "1048577", "x"], ["--world-size", "abc", "x"],
    ["--world-size", "08", "x"], ["--world-size", "+8", "x"], ["--world-size", " 8", "x"],
    ["--config"],                         # a missing value
    ["x", "--config"],
    ["--config", "--json", "x"],          # a dash-led value
    ["-ccfg.json", "x"],                  # attached short value
    ["--json=1", "x"],
    ["--config=", "x"],
]


@pytest.mark.parametrize("args", DECLINED, ids=" ".join)
def test_anything_else_goes_to_typer(args):
    assert parse(command.analyze, args) is None


def test_a_parameter_typer_must_handle_declines():
    def cmd(paths: list[str] = typer.Argument(...),
            n: int = typer.Option(1, "--n", callback=lambda v: v)) -> None:
        pass

    def cmd2(paths: list[str] = typer.Argument(...), flag: bool = typer.Option(False, "--flag/--no-flag")) -> None:
        pass

    def cmd3(paths: list[str] = typer.Argument(...), p: Path = typer.Option(None, "--p", exists=True)) -> None:
        pass

    for fn in (cmd, cmd2, cmd3):
        assert parse(fn, ["x"]) is None


def _main(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out, err = capsys.readouterr()
    return e.value.code, out, err


@pytest.mark.parametrize("extra", [["--json"], [], ["--format", "sarif"], ["--fail-on", "never", "--json"]])
def test_cli_output_and_exit_code_are_typers(extra, tmp_path, capsys, monkeypatch):
    log = tmp_path / "rank0.log"
    log.write_text("[rank0]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a "
                   "total capacity of 79.15 GiB of which 1.19 GiB is free.\n")
    argv = ["analyze", *extra, str(log)]
    assert cli._direct(argv) is not None
    direct = _main(argv, capsys)
    monkeypatch.setattr(cli, "_direct", lambda argv: None)
    via_typer = _main(argv, capsys)
    assert direct == via_typer
    if "--json" in extra:
        assert json.loads(direct[1])["findings"]


@pytest.mark.parametrize("argv", [["analyze", "/nonexistent/x.log"], ["analyze", "--format", "xml", "x"],
                                  ["analyze", "--json", "--format", "text", "x"]])
def test_cli_errors_are_typers(argv, capsys, monkeypatch):
    direct = _main(argv, capsys)
    monkeypatch.setattr(cli, "_direct", lambda argv: None)
    assert direct == _main(argv, capsys)
    assert direct[0] == 2 and direct[2].startswith("dsdoctor: error:")
