"""The report: built from stored tables only, well-formed, self-contained, and honest about
stale results and unmeasured claims.

Two tiny studies are run once per session (``precision run SPEC --quick``, serial): a
softmax-family study with figures and a summation/variance study without, stored in a folder
named ``<script>`` (`report_studies`). Most tests build the report in-process without figures
(`precision.report.document.build_report`); the report that ``precision report`` built with them
is shared with test_site.py (`conftest.shared_report`).
"""

from __future__ import annotations

import functools
import html
import json
import re
import shlex
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_studies import HOSTILE, SOFTMAX, SharedReport

from precision import store
from precision.cli import run_captured
from precision.report.claims import CLAIMS, exp_thresholds
from precision.report.claims.micro import measure
from precision.report.document import build_report, study_pages
from precision.run.staleness import staleness
from precision.store.results import load_study

call = run_captured  # the CLI in-process: (exit status, stdout, stderr)

SUMMATION = HOSTILE
"""The key (folder name) of the shared report's summation study."""


@pytest.fixture(scope="module")
def results(shared_report: SharedReport) -> Path:
    """The shared report's results (read-only: a test that edits them copies them first)."""
    return shared_report.results


@pytest.fixture(scope="module")
def cli_report(shared_report: SharedReport) -> tuple[Path, int, str, str]:
    """``precision report`` with figures, once (the shared report)."""
    return shared_report.folder, shared_report.code, shared_report.out, shared_report.err


@functools.cache
def micro_tables() -> dict:
    """The measurements no study holds, taken once, as ``precision report`` takes them."""
    return measure()


def claims_of(results: Path, tmp_path: Path) -> pd.DataFrame:
    report = build_report(results, tmp_path / "report", figures=False, micro=micro_tables())
    return report.claims.set_index("id")


# ---------------------------------------------------------------- the files


class TagChecker(HTMLParser):
    """Checks that tags balance and collects every src/href."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.references: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.references += [v for k, v in attrs if k in ("src", "href") and v is not None]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


PAGES = ("index.html", "claims.html", "glossary.html", "benchmarks.html", "provenance.html")
"""The pages every report has, beside one ``study-<name>.html`` per study."""


def test_report_command_writes_the_documents(cli_report):
    folder, code, out, err = cli_report
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("report: 2 studies, ")
    for name in (*PAGES, "study-softmax.html", "study-_script_.html", "index.md", "claims.csv"):
        assert (folder / name).is_file(), name
    assert len(pd.read_csv(folder / "claims.csv")) == len(CLAIMS)


def test_html_is_well_formed_and_references_only_files_beside_it(cli_report):
    folder = cli_report[0]
    images = []
    for page in sorted(folder.glob("*.html")):
        checker = TagChecker()
        checker.feed(page.read_text(encoding="utf-8"))
        checker.close()
        assert checker.errors == [] and checker.stack == [], page.name
        images += [r for r in checker.references if r.endswith(".png")]
        for reference in checker.references:
            assert not re.match(r"^[a-z]+:", reference), reference  # no URL, nothing remote
            target = reference.split("#")[0]
            assert not target or (folder / target).is_file(), (page.name, reference)
        # The spec's description holds markup: it must arrive as text, never as a tag.
        assert "b" not in checker.tags, page.name
    assert len(set(images)) >= 5  # a heatmap per problem of the study run with figures
    study = (folder / "study-softmax.html").read_text()
    assert "tiny softmax family &lt;b&gt;&amp;amp; co" in study


def test_markdown_images_exist(cli_report):
    folder = cli_report[0]
    text = (folder / "index.md").read_text(encoding="utf-8")
    targets = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert targets and all((folder / t).is_file() for t in targets)


# ---------------------------------------------------------------- numbers come from the tables


def edited_copy(results: Path, tmp_path: Path, study: str, edit) -> Path:
    """A copy of the results in which ``edit(table) -> table`` changed one stored table."""
    copy = tmp_path / "results"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("report"))
    path = copy / study / "errors.parquet"
    edit(pd.read_parquet(path)).to_parquet(path, index=False)
    return copy


def test_a_claim_follows_its_stored_rows(results, tmp_path):
    before = claims_of(results, tmp_path / "a")

    def probabilities_never_fail(table):
        rows = (table["problem"] == "cross_entropy") & (table["variant"] == "from_probabilities")
        table.loc[rows, "outcome"] = "ok"
        return table

    after = claims_of(edited_copy(results, tmp_path, "softmax", probabilities_never_fail), tmp_path)
    claim = "cross-entropy-logits"
    # The stored run has nan losses from probabilities (log of an underflowed probability).
    assert re.search(
        r"float16: inf or nan in [1-9][0-9.]*% of the rows from probabilities",
        before.loc[claim, "measured"],
    )
    assert (
        "float16: inf or nan in 0% of the rows from probabilities" in after.loc[claim, "measured"]
    )
    assert before.loc[claim, "verdict"] == "holds" and after.loc[claim, "verdict"] == "qualified"
    assert "no stored input made the probabilities form fail" in after.loc[claim, "measured"]
    untouched = [c for c in before.index if c != claim and not c.startswith(("naive", "stable"))]
    assert (before.loc[untouched, "measured"] == after.loc[untouched, "measured"]).all()


def test_key_numbers_follow_the_stored_errors(results, tmp_path):
    def doubled(table):
        return table.assign(err_over_u=2 * table["err_over_u"])

    copy = edited_copy(results, tmp_path, SUMMATION, doubled)
    original = build_report(results, tmp_path / "r1", figures=False)
    edited = build_report(copy, tmp_path / "r2", figures=False)
    table = load_study(results / SUMMATION).table
    good = table[(table["outcome"] == "ok") & table["certified"].fillna(False).astype(bool)]
    worst = good.loc[good["variant"] == "welford", "err_over_u"].max()
    assert f"| {worst:.4g} |" in original.texts["index.md"]
    assert f"| {2 * worst:.4g} |" in edited.texts["index.md"]
    assert edited.stale[SUMMATION] == ["errors.parquet was modified after the run"]
    stale_line = f"Stale results (1 of 2 studies: {html.escape(SUMMATION)})"
    assert stale_line in edited.texts["index.html"]
    assert "Stale results" not in original.texts["index.html"]
    page = study_pages([SUMMATION])[SUMMATION]
    assert "errors.parquet was modified after the run" in edited.texts[page]


def test_report_time_claims_match_independent_arithmetic(results, tmp_path):
    claims = claims_of(results, tmp_path)
    # Python's own float64 arithmetic, not the claim's code, decides what the verdict must say.
    assert (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3)
    assert claims.loc["associativity", "verdict"] in ("holds", "qualified")
    assert "float64" in claims.loc["associativity", "measured"].split("True for: ")[-1]
    difference = 1.0 - 0.9999999999999999
    assert difference != 0.0
    one_minus = claims.loc["one-minus"]
    assert one_minus["verdict"] == "qualified"
    assert f"float64 prints {difference!r}" in one_minus["measured"]
    assert "False for: float64" in one_minus["measured"]


def test_exp_thresholds_are_the_last_finite_and_nonzero_floats():
    table = exp_thresholds().set_index("format")
    with np.errstate(over="ignore", under="ignore"):
        for fmt, dtype in (
            ("float16", np.float16),
            ("float32", np.float32),
            ("float64", np.float64),
        ):
            top = dtype(table.loc[fmt, "largest x with finite exp(x)"])
            assert np.isfinite(np.exp(top)) and np.isinf(np.exp(np.nextafter(top, dtype(np.inf))))
            low = dtype(table.loc[fmt, "smallest x with exp(x) > 0"])
            assert np.exp(low) > 0 and np.exp(np.nextafter(low, dtype(-np.inf))) == 0
            # ln(max) lies within one float spacing of where exp stops being finite.
            assert abs(float(top) - np.log(np.finfo(dtype).max)) <= float(np.spacing(top))


def test_missing_studies_are_named_with_the_make_target(results, tmp_path):
    claims = claims_of(results, tmp_path)
    for claim, target in (
        ("normal-equations", "least-squares"),
        ("newton", "optimisation"),
        ("learning-rate", "descent"),
    ):
        assert claims.loc[claim, "verdict"] == "not measured"
        assert claims.loc[claim, "measured"] == f"not measured: run make study-{target}"


# ---------------------------------------------------------------- staleness and bad input


def test_fresh_results_are_current_and_changed_specs_are_stale(results, tmp_path, monkeypatch):
    study = load_study(results / "softmax")
    assert staleness(study) == []
    copy = tmp_path / "softmax"
    shutil.copytree(results / "softmax", copy)
    spec = tmp_path / "softmax.toml"
    spec.write_text(SOFTMAX.replace("seed = 7", "seed = 8"))
    meta = json.loads((copy / "meta.json").read_text())
    (copy / "meta.json").write_text(json.dumps(meta | {"spec_path": str(spec)}))
    assert staleness(load_study(copy)) == [f"its spec file {spec} changed since the run"]
    monkeypatch.setattr(store, "code_fingerprint", lambda: "other code")
    assert "the precision code changed since the run" in staleness(study)[0]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "no such results folder"),
        (lambda d: d.mkdir(), "holds no study results"),
        (
            lambda d: (d / "x").mkdir(parents=True) or (d / "x" / "meta.json").write_text("{"),
            "meta.json: not valid JSON",
        ),
        (
            lambda d: (
                (d / "x").mkdir(parents=True)
                or (d / "x" / "meta.json").write_text(json.dumps({"spec": {}}))
            ),
            "x: no errors.parquet here",
        ),
    ],
)
def test_bad_results_folders_are_one_line_and_exit_2(tmp_path, setup, message):
    folder = tmp_path / "results"
    setup(folder)
    code, out, err = call(["report", "--results", str(folder), "--no-figures"])
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("precision: error: ") and message in lines[0]
    assert not (folder / "report").exists()


def test_a_table_of_an_older_precision_is_read_and_named_stale(results, tmp_path):
    copy = edited_copy(results, tmp_path, "softmax", lambda t: t.drop(columns=["fp_exceptions"]))
    report = build_report(copy, tmp_path / "report", figures=False)
    assert "its table predates the columns fp_exceptions" in report.stale["softmax"]
    # Without the exception flags no naive row counts as overflowed: the claim says so.
    claim = report.claims.set_index("id").loc["naive-overflow"]
    assert claim["verdict"] == "not measured"


def test_condition_slopes_recover_the_power_of_kappa():
    """Rows whose error is exactly kappa^k u (k = 1, 2) give slopes k; a saturated error (no
    correct digit left, relative error capped at 1) is left out of the fit."""
    from precision.report.claims import condition_slopes

    kappas = 10.0 ** np.arange(0, 12, 0.5)
    u = 2.0**-53
    rows = []
    for variant, power in (("qr", 1), ("normal", 2)):
        for kappa in kappas:
            rel = min(kappa**power * u, 1.0)
            rows.append(
                {
                    "problem": "least_squares",
                    "variant": variant,
                    "format": "float64",
                    "n": 10,
                    "cond": kappa,
                    "magnitude": 1.0,
                    "outcome": "ok",
                    "certified": True,
                    "rel_error": rel,
                    "err_over_u": rel / u,
                }
            )
    slopes = condition_slopes(pd.DataFrame(rows)).set_index("variant")["slope"]
    assert slopes["qr"] == pytest.approx(1.0, abs=0.02)
    assert slopes["normal"] == pytest.approx(2.0, abs=0.02)


# ---------------------------------------------------------------- hostile studies (issue 16)

HOSTILE_FOLDER = "x; touch PWNED; #"
UNREACHABLE = """\
name = "tiny"
description = "evil <script>alert(1)</script> <img src=x onerror=alert(2)> &amp; a < b"
seed = 3
formats = ["float16", "float64"]
problems = ["softmax"]

[grid]
log10_cond = [-60, -59]               # no input is this well conditioned: 0 rows
log10_magnitude = [0, 1]
sizes = [10]
samples_per_cell = 1
"""


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory) -> tuple[Path, Path]:
    """``precision report`` (with figures) over one study of 0 rows, a description holding
    markup and a folder whose name is a shell command."""
    folder = tmp_path_factory.mktemp("hostile")
    spec = folder / "s.toml"
    spec.write_text(UNREACHABLE)
    study = folder / "results" / HOSTILE_FOLDER
    code, _, err = call(["run", str(spec), "--out", str(study), "--no-progress"])
    assert code == 0, err
    code, _, err = call(["report", "--results", str(folder / "results")])
    assert (code, err) == (0, "")  # was: internal error (TypeError) on 0 rows
    return folder / "results" / "report", study


def test_a_study_of_no_rows_is_reported(hostile_report):
    text = (hostile_report[0] / "index.md").read_text()
    assert "errors.parquet holds no rows: nothing was measured." in text


def test_markdown_shows_markup_from_a_spec_as_text(hostile_report):
    text = (hostile_report[0] / "index.md").read_text()
    assert not re.search(r"(?<!\\)<(script|img)", text)  # every tag's < escaped
    assert "evil \\<script>alert(1)\\</script> \\<img src=x" in text
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    assert "<script" not in rendered and "<img" not in rendered
    assert "evil &lt;script&gt;alert(1)&lt;/script&gt; &lt;img" in rendered
    assert "&amp;amp; a &lt; b" in rendered  # shown as typed, not as an entity


def test_rerun_commands_are_shell_quoted(hostile_report):
    report, study = hostile_report
    text = (report / "index.md").read_text()
    commands = [line for line in text.splitlines() if line.startswith("precision ")]
    assert len(commands) == 2
    run_line, reproduce_line = (shlex.split(line) for line in commands)
    assert run_line[-2:] == ["--out", str(study)]
    assert reproduce_line == ["precision", "reproduce", str(study)]
