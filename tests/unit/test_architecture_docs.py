"""docs/architecture.md is the index of docs/architecture/ (one page per subsystem): every page is
linked from it, every topic it lists stands on the page it names, and a citation such as
`docs/architecture.md, "Claim"` in code, SQL or docs names a topic that exists."""

from __future__ import annotations

import re
from pathlib import Path

from harness.toolchain import REPO

DOCS = REPO / "docs"
INDEX = DOCS / "architecture.md"
PAGES = DOCS / "architecture"
ROW = re.compile(r"^\| \[[^\]]+\]\(architecture/([a-z-]+\.md)\) \| [^|]+ \| (.+) \|$")
# A citation on one line: `docs/architecture.md, "Topic"` or `docs/architecture/page.md, *Topic*`.
CITATION = re.compile(r'docs/architecture(?:\.md|/([a-z-]+\.md)),? (?:"([^"\n]+)"|\*([^*\n]+)\*)')
TEXT_SUFFIXES = {".py", ".sql", ".ts", ".md", ".sh", ".yaml", ".toml"}


def _index() -> dict[str, str]:
    """{topic: page file name} from the index's table."""
    topics: dict[str, str] = {}
    for line in INDEX.read_text().splitlines():
        row = ROW.match(line)
        if row:
            for topic in row.group(2).split(" · "):
                assert topic not in topics, f"{topic!r} listed twice in {INDEX.name}"
                topics[topic] = row.group(1)
    return topics


def _starts(page: Path) -> list[str]:
    """What the page's headings and top-level items say first."""
    return [
        re.sub(r"^(#+|-) ", "", line)
        for line in page.read_text().splitlines()
        if line.startswith(("# ", "## ", "- "))
    ]


def _stands_on(topic: str, page: Path) -> bool:
    return any(re.match(re.escape(topic) + r"(\W|$)", start) for start in _starts(page))


def test_every_page_is_linked_from_the_index_and_every_link_is_a_page() -> None:
    linked = set(_index().values())
    assert linked, f"no page table found in {INDEX}"
    assert linked == {page.name for page in PAGES.glob("*.md")}


def test_every_topic_of_the_index_stands_on_its_page() -> None:
    missing = [
        f"{topic!r} (index: {page})"
        for topic, page in _index().items()
        if not _stands_on(topic, PAGES / page)
    ]
    assert missing == [], "topics the index lists but its page does not start an item with"


def _cited_files() -> list[Path]:
    skip = {".git", ".venv", ".toolchain", "node_modules", ".local-stack", ".pulumi-state"}
    # The index explains the form with a placeholder; this file shows each form.
    own = {INDEX, Path(__file__).resolve()}
    return [
        path
        for path in REPO.rglob("*")
        if path.suffix in TEXT_SUFFIXES
        and path.is_file()
        and not skip.intersection(path.relative_to(REPO).parts)
        and path.resolve() not in own
    ]


def test_every_citation_names_a_topic_that_exists() -> None:
    topics = _index()
    wrong = []
    for path in _cited_files():
        for found in CITATION.finditer(path.read_text(errors="replace")):
            page, topic = found.group(1), found.group(2) or found.group(3)
            where = f"{path.relative_to(REPO)}: {found.group(0)}"
            if page is None and topic not in topics:
                wrong.append(f"{where} (not a topic of docs/architecture.md)")
            elif page is not None and not (PAGES / page).is_file():
                wrong.append(f"{where} (no such page)")
            elif page is not None and not _stands_on(topic, PAGES / page):
                wrong.append(f"{where} (not on that page)")
    assert wrong == [], "citations of the architecture pages that lead nowhere:\n" + "\n".join(
        wrong
    )


def test_the_citation_pattern_reads_each_form() -> None:
    forms = [
        'docs/architecture.md, "Chained dispatch"',
        "docs/architecture/dispatch.md, *Limits*",
        'docs/architecture.md "Missing dispatcher"',
    ]
    assert [CITATION.search(form).groups() for form in forms] == [  # type: ignore[union-attr]
        (None, "Chained dispatch", None),
        ("dispatch.md", None, "Limits"),
        (None, "Missing dispatcher", None),
    ]
