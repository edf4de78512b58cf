"""Issue 28, row 20: README.md is for users (under 20 KB), the measurement history lives in
docs/, and what a fresh machine needs stays word for word."""
from __future__ import annotations

import re

from tests.support import REPO_ROOT

README = REPO_ROOT / "README.md"


def test_readme_is_short_and_keeps_the_fresh_machine_commands_and_mistakes():
    text = README.read_text()
    assert len(text.encode()) < 20 * 1024, len(text.encode())
    assert "bash scripts/bootstrap.sh && .venv/bin/inv start\n" in text
    assert "bash scripts/bootstrap.sh && .venv/bin/inv test\n" in text
    assert "**Mistakes.**" in text
    assert not re.search(r"^#+ 20\d\d-\d\d-\d\d", text, re.M), "dated history belongs in docs/"


def test_every_docs_link_of_the_readme_is_a_file_with_the_history():
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text())
    assert "docs/speed-history.md" in links
    for link in links:
        assert (REPO_ROOT / link).is_file(), link
    history = (REPO_ROOT / "docs" / "speed-history.md").read_text()
    assert len(re.findall(r"^### 20\d\d-\d\d-\d\d", history, re.M)) >= 4
