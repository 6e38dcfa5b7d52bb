"""The documentation: README.md is a map (at most 250 lines) and every relative link in it, in docs/ and in
benchmarks/README.md names a file or folder of the repository."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def relative_links(page: Path) -> list[str]:
    """The link targets of `page` outside code blocks and spans, less web addresses and in-page anchors."""
    text = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(), flags=re.S)
    return [target.split("#")[0] for target in LINK.findall(text)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")]


def test_the_readme_is_a_map():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    assert {page.name for page in PAGES} >= {"README.md", "fetch.md", "train.md", "predict.md", "cv.md", "gpu.md",
                                             "hardening.md"}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    links = relative_links(page)
    assert links, f"{page}: no links (the pages link back to the README and to each other)"
    broken = [target for target in links if not (page.parent / target).exists()]
    assert not broken, f"{page}: links to nothing: {broken}"


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](missing.md#part) [web](https://example.com) `[code](x.md)` [top](#top)\n")
    assert relative_links(page) == ["page.md", "missing.md"]
