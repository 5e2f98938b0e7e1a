"""The README's "Use your model elsewhere" examples, run as they are written: its shell blocks
through the `vaekit` binary (the `pip install` line is what set up this test), then each Python
block in the same folder."""

import re
import shlex
import subprocess

import pytest

from conftest import ROOT, vaekit_bin

SECTION = "## Use your model elsewhere"


def blocks():
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end > 0 else None]
    return re.findall(r"```(sh|python)\n(.*?)```", section, re.S)


def test_the_readme_section_has_shell_and_python_examples():
    kinds = [k for k, _ in blocks()]
    assert kinds.count("sh") == 2 and kinds.count("python") == 3, kinds


def test_the_readme_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for kind, code in blocks():
        if kind == "sh":
            for line in code.strip().splitlines():
                if line.startswith("pip install"):
                    continue
                args = shlex.split(line)
                assert args[0] == "vaekit", line
                r = subprocess.run([vaekit_bin(), *args[1:]], capture_output=True, text=True)
                assert r.returncode == 0, f"{line}: {r.stderr}"
        else:
            try:
                exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
            except Exception as e:  # name the block in the failure
                pytest.fail(f"README example failed: {e!r}\n{code}")
