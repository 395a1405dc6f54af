"""The real-manifest corpus (tests/corpus/real, origins in its README): each file validated alone, every document's
verdict and causes pinned in tests/corpus/real/VERDICTS, so that an acceptance or a rejection that changes shows.

After a deliberate change, re-pin with `PYTHONPATH=. .venv/bin/python tests/corpus_verdicts.py --pin` and update the
acceptance rate recorded in tests/corpus/real/README.md and README.md.
"""

from __future__ import annotations

from corpus_verdicts import PINNED, ROOT, corpus, summary


def test_every_verdict_is_the_pinned_one() -> None:
    verdicts = corpus()
    print(summary(verdicts))
    assert [v.row() for v in verdicts] == PINNED.read_text().splitlines()


def test_the_corpus_is_large_enough_and_its_readme_records_todays_rate() -> None:
    verdicts = corpus()
    supported = [v for v in verdicts if v.verdict != "kind"]
    assert len(supported) >= 200
    for readme in (ROOT / "README.md", ROOT.parents[2] / "README.md"):
        assert summary(verdicts) in readme.read_text().replace("\n", " "), readme
