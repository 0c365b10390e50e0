"""The progress bar draws only on a terminal, and never into captured or piped output."""

from __future__ import annotations

import io

from tools.progress import Progress, human_bytes


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_when_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress(100, "verify", stream=out) as bar:
        bar.update(50)
        bar.set(100)
    assert out.getvalue() == ""


def test_draws_on_a_terminal_and_ends_the_line() -> None:
    out = FakeTty()
    bar = Progress(2048, "verify", unit="B", stream=out)
    bar.update(1024)
    bar.set(2048, total=4096)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\rverify [") and text.endswith("\n")
    assert "50.0% 2.0 KiB/4.0 KiB" in text.splitlines()[-1]
    bar.update(1)  # after close: nothing more
    assert out.getvalue() == text


def test_line_with_zero_total_and_plain_units() -> None:
    bar = Progress(0, "", stream=FakeTty())
    assert "0.0% 0/0" in bar.line(0.0)
    assert human_bytes(10) == "10 B" and human_bytes(3 * 1024**3) == "3.0 GiB"
