"""Text the project does not write itself (judge feedback, app answers, queries, ids,
file names, exception messages) reaches reports as plain, valid text: it cannot turn the
Markdown summary into links, images, HTML or mentions, and half an emoji cannot fail a run."""

from __future__ import annotations

import contextlib
import html.parser
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import cmarkgfm
import pytest
from cmarkgfm.cmark import Options
from markdown_it import MarkdownIt

from pytest_rageval.reports.markdown import render_markdown

# -- the Markdown summary, rendered by real GFM renderers ---------------------------------

BENIGN = "benign"
PAYLOADS = [
    '<img src="https://evil.com/pixel.gif?ZQX">',
    "![ZQX](https://evil.com/pixel.png)",
    "[Approve ZQX](https://evil.com/approve)",
    "<https://evil.com/ZQX> autolink",
    "bare https://evil.com/ZQX and www.evil.com/ZQX and ZQX@evil.com",
    "<details><summary>ZQX</summary>hidden</details>",
    "<h1>ZQX</h1>",
    "<script>alert('ZQX')</script>",
    "<!-- ZQX --> comment",
    "line\n# ZQX heading",
    "line\r\n## ZQX heading\r\n",
    "ZQX setext\n---",
    "ZQX setext\n===",
    "text\n\n<div>ZQX</div>\n\n",
    "a | ZQX | c",
    "|ZQX|\n|---|\n|x|",
    "ends in a pipe ZQX |",
    "escaped \\| pipe ZQX \\",
    "`ZQX` in backticks",
    "``double`` ZQX ```triple```",
    "` ZQX starts and ends with a backtick `",
    "`",
    "@ZQX please approve, cc @octocat",
    "fixes #123 ZQX",
    "&lt;img src=x&gt; ZQX &amp; &#64;octocat",
    "**ZQX** _em_ ~~strike~~ :+1:",
    "x\n[ref]: https://evil.com/ZQX\n[ref]",
    "x\n- [x] ZQX task\n> quote",
    "x\n\n    indented ZQX code",
    "tab\tZQX\x0bvertical\u2028separator",
]


def _document(text: str) -> dict[str, Any]:
    """A report document with ``text`` in every place that shows text the project did not
    write: set id, metric name, question ids, judge feedback, warnings, paths."""
    return {
        "version": 1,
        "baseline": text,
        "stopped": text,
        "notices": [text],
        "sets": [
            {
                "id": text,
                "metrics": {
                    text: {
                        "n": 3,
                        "passed": 1,
                        "invalid": 1,
                        "errors": 1,
                        "pass_rate": 1 / 3,
                        "interval": [0.06, 0.79],
                        "threshold": 0.5,
                        "verdict": "FAILED (drop)",
                    }
                },
                "baseline": {
                    "found": True,
                    "new": [text],
                    "removed": [text],
                    "metrics": {
                        text: {
                            "baseline_pass_rate": 1.0,
                            "delta": -2 / 3,
                            "change": "regression",
                            "p_value": 0.25,
                            "pass_to_fail": [text],
                            "fail_to_pass": [],
                        }
                    },
                    "responses": {text: text},
                },
                "questions": [
                    {
                        "id": text,
                        "query": text,
                        "response": text,
                        "sources": [[text], [text, text]],
                        "outcome": "failed",
                        "metrics": {text: {"feedback": text}},
                    }
                ],
            }
        ],
    }


class _Shape(html.parser.HTMLParser):
    """A rendered page as its tags, the text of each <code>, and the text outside code
    (where GitHub turns @names, #numbers and :emoji: into links)."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.codes: list[str] = []
        self.outside: list[str] = []
        self._in_code = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(f"<{tag} {sorted(attrs)}>")
        if tag == "code":
            self._in_code = True
            self.codes.append("")

    def handle_endtag(self, tag: str) -> None:
        self.tags.append(f"</{tag}>")
        self._in_code = self._in_code and tag != "code"

    def handle_comment(self, data: str) -> None:
        self.tags.append(f"<!--{data}-->")

    def handle_data(self, data: str) -> None:
        if self._in_code:
            self.codes[-1] += data
        else:
            self.outside.append(data)


RENDERERS: dict[str, Callable[[str], str]] = {
    # GitHub's own renderer (tables, autolinks, tag filter), raw HTML let through as
    # GitHub lets through <img>, <details> and the like
    "cmark-gfm": lambda text: cmarkgfm.github_flavored_markdown_to_html(
        text, options=Options.CMARK_OPT_UNSAFE
    ),
    # markdown-it's GFM preset: tables, strikethrough, raw HTML and bare-URL links
    "markdown-it": MarkdownIt("gfm-like").render,
}


@pytest.mark.parametrize("renderer", RENDERERS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_untrusted_text_in_the_markdown_summary_stays_text(payload: str, renderer: str) -> None:
    render = RENDERERS[renderer]
    hostile = _Shape(render(render_markdown(_document(payload), html=payload)))
    benign = _Shape(render(render_markdown(_document(BENIGN), html=BENIGN)))
    # the same page as with harmless text: no <img>, <a>, heading, extra cell or list item
    assert hostile.tags == benign.tags
    # nothing of the payload outside code, where GitHub would make mentions and links
    assert hostile.outside == benign.outside
    # and the payload is still there to read, in full, wherever the harmless text was
    shown = " ".join(payload.split())
    assert hostile.codes == [shown if code == BENIGN else code for code in benign.codes]
    # 15, and the flipped question's query, both answers and its three source ids
    assert benign.codes.count(BENIGN) == 21


def test_the_markdown_summary_of_harmless_text_reads_as_before() -> None:
    text = render_markdown(_document("faithfulness"), html="r.html")
    assert text.splitlines()[2:4] == [
        "| set | metric | pass rate | 95% CI | threshold | baseline | delta | change | "
        "invalid | errors | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    assert (
        "| `faithfulness` | `faithfulness` | 0.33 (1/3) | 0.06-0.79 | 0.50 | 1.00 | -0.67 | "
        "regression (p=0.25) | 1 | 1 | ❌ FAILED (drop) |"
    ) in text
    assert "  - ❌ `faithfulness`: `faithfulness`" in text
    assert "- `faithfulness`" in text.split("**Errors and warnings**")[1]


@pytest.mark.parametrize("renderer", RENDERERS)
def test_a_verdict_the_gate_did_not_write_stays_text(renderer: str) -> None:
    # `rageval report` renders any report file: its verdicts may not be the gate's words
    document = _document("faithfulness")
    document["sets"][0]["metrics"]["faithfulness"]["verdict"] = (
        "![x](https://evil.com/p.png) | @octocat"
    )
    page = RENDERERS[renderer](render_markdown(document))
    shape = _Shape(page)
    assert not [tag for tag in shape.tags if tag.startswith(("<a ", "<img "))]
    assert "❌ <code>![x](https://evil.com/p.png) | @octocat</code></td>" in page
    assert shape.tags.count("<td []>") == 11
    # the gate's own verdicts show as they are
    document["sets"][0]["metrics"]["faithfulness"]["verdict"] = "FAILED (must_pass)"
    assert "| ❌ FAILED (must_pass) |" in render_markdown(document)
    assert "<td>❌ FAILED (must_pass)</td>" in RENDERERS[renderer](render_markdown(document))


@pytest.mark.parametrize(
    ("text", "markdown"),
    [
        ("plain", "`plain`"),
        ("a`b", "``a`b``"),
        ("``x`", "``` ``x` ```"),
        ("`", "`` ` ``"),
        ("a|b", "`a|b`"),
        ("", "` `"),
    ],
)
def test_code_spans_outlast_the_backticks_inside(text: str, markdown: str) -> None:
    from pytest_rageval.reports.markdown import inert

    assert inert(text) == markdown
    # in a table a pipe is escaped; GFM unescapes it inside the code span
    assert inert("a|b", table=True) == "`a\\|b`"


# -- half an emoji ------------------------------------------------------------------------

HALF_EMOJI = """
import pytest
from fakes import ScriptedLLM
from llama_index.core.llms import CompletionResponse


class HalfEmojiJudge(ScriptedLLM):
    def _answer(self, prompt):
        return CompletionResponse(text=super()._answer(prompt).text + " half an emoji: \\ud83d")


@pytest.fixture(scope="session")
def rag_judge_llm():
    return HalfEmojiJudge()


@pytest.fixture(scope="session")
def rag_query_engine():
    return lambda query: (f"Paris \\ud83d, from {query}", ["Paris is in France \\udcff"])
"""


def test_half_an_emoji_anywhere_passes_and_writes_every_report(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeconftest(HALF_EMOJI)
    # JSON escapes that decode to lone surrogates, as a generator cut mid-emoji writes them
    project.makefile(
        ".json",
        rag_set=r"""{"evaluators": ["faithfulness", "relevancy"], "questions": [
            {"query": "Where is Paris \ud83d?"},
            {"id": "q\ud83d2", "query": "Where is Paris?"},
            {"query": "A whole one: \ud83d\ude00?"}]}""",
    )
    step = project.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = project.runpytest(
        "--rag-report=r.json", "--rag-html=r.html", "--rag-markdown=r.md", "--junitxml=j.xml"
    )
    assert result.ret == 0
    result.assert_outcomes(passed=3)
    result.stdout.no_fnmatch_line("*Error*")
    texts = {
        name: (project.path / name).read_bytes().decode("utf-8")
        for name in ("r.json", "r.html", "r.md", "step.md", "j.xml")
    }
    [questions] = [entry["questions"] for entry in json.loads(texts["r.json"])["sets"]]
    assert [q["id"] for q in questions] == ["where-is-paris", "q\ufffd2", "a-whole-one"]
    assert [q["query"] for q in questions] == [
        "Where is Paris \ufffd?",
        "Where is Paris?",
        "A whole one: 😀?",
    ]
    assert questions[0]["response"] == "Paris \ufffd, from Where is Paris \ufffd?"
    assert questions[0]["contexts"] == ["Paris is in France \ufffd"]
    assert questions[0]["metrics"]["faithfulness"]["feedback"] == "YES half an emoji: \ufffd"
    assert (
        '<td class="text"><span class="response">Paris \ufffd, from Where is Paris \ufffd?</span></td>'
        in texts["r.html"]
    )
    assert 'name="q\ufffd2"' in texts["j.xml"]
    assert texts["r.md"].startswith("### pytest-rageval: passed (2 of 2 set metrics ok)")
    assert texts["step.md"] == texts["r.md"]
    # every verdict was cached, with the text as it entered: in the SQLite file...
    with contextlib.closing(
        sqlite3.connect(project.path / ".rageval_cache" / "verdicts.sqlite3")
    ) as db:
        cached = db.execute("SELECT metric, value FROM verdicts ORDER BY metric").fetchall()
        recorded = [json.loads(v) for (v,) in db.execute("SELECT value FROM recordings")]
    assert [metric for metric, _ in cached] == ["faithfulness"] * 3 + ["relevancy"] * 3
    assert (
        sorted(json.loads(value)["feedback"] for _, value in cached)
        == ["YES half an emoji: \ufffd"] * 6
    )
    assert sorted(r["response"] for r in recorded) == [
        "Paris \ufffd, from A whole one: 😀?",
        "Paris \ufffd, from Where is Paris \ufffd?",
        "Paris \ufffd, from Where is Paris?",
    ]
    # ...and a second run asks the judge nothing
    again = project.runpytest("--rag-cache=readonly")
    again.assert_outcomes(passed=3)
    again.stdout.fnmatch_lines(
        ["verdict cache (readonly): faithfulness 3 hits, 0 misses; relevancy 3 hits, 0 misses"]
    )


def test_reports_cannot_fail_on_half_an_emoji_that_comes_another_way(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a metric named by the user, and a hook adding text of its own to the report
    project.makeconftest(
        """
        import pytest
        from pytest_rageval import ContainsEvaluator


        @pytest.fixture(scope="session")
        def rag_query_engine():
            return lambda query: "Paris"


        @pytest.fixture(scope="session")
        def rag_evaluators():
            return {"contains\\ud83d": ContainsEvaluator()}


        def pytest_rageval_update_report(config, report):
            report["notices"].append("from a hook: \\ud83d")
            report["commit"] = "\\udcff"
        """
    )
    project.makefile(".yaml", rag_set='questions: [{id: q, query: "Where?", reference: "Paris"}]')
    step = project.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = project.runpytest(
        "--rag-cache=off",
        "--rag-report=r.json",
        "--rag-html=r.html",
        "--rag-markdown=r.md",
        "--junitxml=j.xml",
    )
    assert result.ret == 0
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*NOT written*")
    texts = {
        name: (project.path / name).read_bytes().decode("utf-8")
        for name in ("r.json", "r.html", "r.md", "step.md", "j.xml")
    }
    report = json.loads(texts["r.json"])
    assert report["commit"] == "\ufffd"
    assert list(report["sets"][0]["metrics"]) == ["contains\ufffd"]
    # Markdown shows what no reader could see as itself as its escape
    assert "- `from a hook: \\ud83d`" in texts["r.md"]
    assert "from a hook: \ufffd" in texts["r.html"]
    assert 'name="rag.contains\ufffd.result" value="passing"' in texts["j.xml"]
