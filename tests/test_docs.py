"""Every document the code and the docs refer to is in the repository, and every section they
cite (`novita-api.md §2.6`, `docs/architecture.md §9`) is a heading of it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A document named in the text, and the sections cited right after it ("§1-§3, §5, §7"; a
# range may also use an en dash, written \u2013 below).
REFERENCE = re.compile(
    r"(?P<doc>[\w./-]*[\w-]\.md)(?P<sections>(?:[ ,]*(?:and )?§[\d.]*\d(?:[\u2013-]§?[\d.]*\d)?)*)"
)
SECTION = re.compile(r"§([\d.]*\d)(?:[\u2013-]§?([\d.]*\d))?")
# Names of the design documents that used to live outside the repository.
OUTSIDE = re.compile(r"\b(DESIGN|STYLE)( §|\.md)|reliability-notes|dependency-notes")


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    suffixes = {".py", ".md", ".toml", ".yml", ".yaml", ".cfg", ".txt"}
    names = {"Makefile", "Procfile", "Dockerfile", ".env.example"}
    return [
        ROOT / name
        for name in listed
        if (Path(name).suffix in suffixes or Path(name).name in names) and (ROOT / name).exists()
    ]


def resolve(doc: str, source: Path) -> Path | None:
    candidates = [source.parent / doc, ROOT / doc, ROOT / "docs" / Path(doc).name]
    return next((c for c in candidates if c.is_file()), None)


def headings(path: Path) -> set[str]:
    """The section numbers of a document's headings: "## 2. …" → "2", "### 7.5 …" → "7.5"."""
    found = re.findall(r"^#+\s+([\d.]*\d)\.?\s", path.read_text(), flags=re.MULTILINE)
    return set(found)


def test_every_document_referred_to_exists_with_the_sections_cited() -> None:
    missing: list[str] = []
    for path in tracked_text_files():
        if path.name == "test_docs.py":
            continue  # its own examples
        text = path.read_text(errors="replace")
        for match in REFERENCE.finditer(text):
            doc = match.group("doc")
            where = f"{path.relative_to(ROOT)}: {match.group(0).strip()}"
            target = resolve(doc, path)
            if target is None:
                missing.append(f"{where} (no such document)")
                continue
            cited = {n for pair in SECTION.findall(match.group("sections")) for n in pair if n}
            absent = sorted(cited - headings(target))
            if absent:
                missing.append(f"{where} (no section {', '.join(absent)})")
    assert missing == []


def test_nothing_refers_to_documents_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in tracked_text_files()
        if path.name != "test_docs.py"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert found == []


def test_the_check_reads_the_references_it_should() -> None:
    assert REFERENCE.search("the wire format (novita-api.md §1-§3, §5, §7): routes")
    assert [m.group("doc") for m in REFERENCE.finditer("see docs/architecture.md §9 and x.md")] == [
        "docs/architecture.md",
        "x.md",
    ]
    sections = REFERENCE.search("(novita-api.md §2.9, §7.3)").group("sections")  # type: ignore[union-attr]
    assert SECTION.findall(sections) == [("2.9", ""), ("7.3", "")]
    assert {"2.6", "7", "7.5"} <= headings(ROOT / "docs" / "novita-api.md")
