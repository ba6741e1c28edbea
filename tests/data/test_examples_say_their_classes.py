"""Every shipped example says, in its header, which classes it segments and whether it merges any (issue 20)."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

EXAMPLES = sorted(path.name for path in resources.files("proxyhpo").joinpath("examples").iterdir() if path.name.endswith(".yaml"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_example_says_whether_it_merges_classes(name: str) -> None:
    text = resources.files("proxyhpo").joinpath("examples", name).read_text()
    header = " ".join(line.removeprefix("#").strip() for line in text.splitlines()[: text.splitlines().index(next(l for l in text.splitlines() if not l.startswith("#")))])
    found = re.search(r"Classes( and channels)?:", header)
    assert found, f"examples/{name}: its header comment has no 'Classes:' sentence"
    said = header[found.end() :]
    merged = bool((yaml.safe_load(text).get("data") or {}).get("merge_labels"))
    if merged:
        assert "merges" in said, f"examples/{name} sets data.merge_labels, but its header does not say it merges"
    else:
        assert "nothing merged" in said, f"examples/{name} merges no class, but its header does not say 'nothing merged'"


def test_every_example_is_checked() -> None:
    assert {"demo.yaml", "demo-studies.yaml", "spleen.yaml", "prostate.yaml", "nas-brain.yaml", "nas-prostate.yaml", "nas-heart.yaml", "nas-demo.yaml"} <= set(EXAMPLES)
