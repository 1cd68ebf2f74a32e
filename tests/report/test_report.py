"""The review report: progress logging, thumbnails, and the page itself opened in headless Chromium.

The report is generated once from a copy of the pipeline lake of ``conftest.py`` (ingest, extract,
calibrate, build_index, dedup, match), then checked as HTML, as files, as recorded runs, and as rendered by a
real browser: the screenshot is not blank and every ``<img>`` loaded (``naturalWidth > 0``, which the page's
own script writes onto ``<body>`` once loaded and ``--dump-dom`` reads back).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from facelink.config import Config
from facelink.errors import InputError
from facelink.lake.tables import read_table
from facelink.progress import Progress, track
from facelink.registry import recogniser
from facelink.report.publish import publish_folder
from facelink.report.thumbs import check_side, thumbnail_jpeg
from jobs import report
from jobs.match import MatchResult
from tests.conftest import PipelineLake
from tests.paths import LFW_DIR

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync")
THUMB_SIDE = 120


# ------------------------------------------------------------------------------------------ no Spark


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_logs_at_a_steady_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    logger = logging.getLogger("test.progress")
    with caplog.at_level(logging.INFO, logger="test.progress"), \
            Progress("thumbs", total=100, every_s=5, logger=logger, clock=clock) as prog:
        for _ in range(100):
            clock.now += 0.5
            prog.advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "started thumbs of 100 rows"
    assert len([m for m in lines if m.startswith("progress thumbs:")]) == 10  # 50 s at one line per 5 s
    assert lines[-1].startswith("finished thumbs: 100/100 rows (100%), 2.0 rows/s")
    assert prog.rate == pytest.approx(2.0)


def test_progress_track_and_bad_arguments(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="facelink.progress"):
        assert list(track(range(3), "rows")) == [0, 1, 2]
    assert caplog.records[-1].getMessage().startswith("finished rows: 3 rows")
    with pytest.raises(ValueError, match="every_s"):
        Progress("x", every_s=0)
    with pytest.raises(ValueError, match="total"):
        Progress("x", total=-1)


def test_thumbnail_is_small_and_bad_bytes_raise() -> None:
    photo = next(LFW_DIR.rglob("*.jpg")).read_bytes()
    jpeg, width, height = thumbnail_jpeg(photo, THUMB_SIDE)
    thumb = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert thumb is not None and max(thumb.shape[:2]) == THUMB_SIDE
    assert (width, height) == (250, 250)  # lfw_dev photos
    with pytest.raises(ValueError):
        thumbnail_jpeg(b"not a photo", THUMB_SIDE)
    with pytest.raises(ValueError, match="between 16 and 320"):
        check_side(1024)


def test_publish_replaces_the_previous_folder(tmp_path: Path) -> None:
    for text in ("first", "second"):
        staging = tmp_path / f"staging-{text}"
        staging.mkdir()
        (staging / "index.html").write_text(text)
        published = publish_folder(None, staging, str(tmp_path / "lake" / "reports" / "r1"))
    assert Path(published, "index.html").read_text() == "second"
    assert sorted(p.name for p in (tmp_path / "lake" / "reports").iterdir()) == ["r1"]


# ------------------------------------------------------------------------------------ generated report


@dataclass(frozen=True)
class Generated:
    cfg: Config
    result: report.ReportResult
    html: str
    folder: Path


@pytest.fixture(scope="module")
def generated(spark: SparkSession, pipeline_lake: PipelineLake, tmp_path_factory: pytest.TempPathFactory
              ) -> Generated:
    root = tmp_path_factory.mktemp("report_lake") / "lake"
    shutil.copytree(pipeline_lake.cfg.lake_root, root)
    cfg = pipeline_lake.cfg.with_overrides([f"lake.root={root}"])
    opts = report.ReportOptions(thumb_side=THUMB_SIDE, progress_every_s=1.0)
    result = report.run(spark, cfg, run_id="t-report", options=opts)
    folder = Path(result.path).parent
    return Generated(cfg, result, Path(result.path).read_text(encoding="utf-8"), folder)


def test_report_reports_the_latest_runs_with_their_accountability(generated: Generated,
                                                                  pipeline_lake: PipelineLake) -> None:
    res, html = generated.result, generated.html
    assert res.path == str(Path(generated.cfg.lake_root) / "reports" / "t-report" / "index.html")
    assert res.match_run_id == "t-match" and res.dedup_run_id == "t-dedup"
    assert "CANDIDATES FOR TRAINED HUMAN REVIEW — NOT IDENTIFICATIONS" in html
    assert html.index("NOT IDENTIFICATIONS") < html.index("<h2>")  # before anything else
    match = pipeline_lake.results["match"]
    assert isinstance(match, MatchResult)
    index_version = match.index_version
    for text in ("test-operator", "TEST-1", "application_screening", "duplicate_enrolment_check", index_version,
                 f"{recogniser(generated.cfg).name}@", "band thresholds"):
        assert text in html
    assert re.search(r"<th>calibration version</th><td>[0-9a-f]{8,}</td>", html)


def test_report_shows_every_strong_candidate_and_cluster(spark: SparkSession, generated: Generated) -> None:
    cfg, res, html = generated.cfg, generated.result, generated.html
    strong = read_table(spark, cfg, "matches").filter((F.col("run_id") == "t-match") & (F.col("band") == "strong"))
    clusters = read_table(spark, cfg, "duplicate_clusters").filter(F.col("run_id") == "t-dedup")
    n_strong, n_clusters = strong.count(), clusters.select("cluster_id").distinct().count()
    assert n_strong > 0 and n_clusters > 0, "the pipeline lake should hold strong candidates and clusters"
    assert (res.strong_total, res.strong_shown) == (n_strong, n_strong)
    assert (res.clusters_total, res.clusters_shown) == (n_clusters, n_clusters)
    assert html.count('data-subject-type="match"') == n_strong
    assert html.count("<section class=\"cluster\"") == n_clusters
    assert res.thumbnails > 0 and res.thumbnail_errors == 0
    assert html.count("est. FPIR") == html.count('<article class="pair"')
    assert html.count("est. FMR") == html.count('data-subject-type="pair"')  # matches carry no per-comparison FMR


def test_report_shows_only_the_precision_its_calibration_supports(spark: SparkSession, generated: Generated) -> None:
    cfg, html = generated.cfg, generated.html
    detail = {}
    for run_id in ("t-match", "t-dedup"):
        row = read_table(spark, cfg, "audit").filter(F.col("run_id") == run_id).first()
        detail[run_id] = json.loads(row["detail"])
    fmr_floor, fpir_floor = detail["t-dedup"]["fmr_floor"], detail["t-dedup"]["fpir_floor"]
    assert detail["t-match"]["fpir_floor"] == fpir_floor and 1e-4 < fpir_floor < 0.05
    shown = re.findall(r"est\. (FMR|FPIR) (below [^,<]+, beyond the measured range|[^ <]+)", html)
    assert shown
    beyond = 0
    for kind, text in shown:
        floor = fmr_floor if kind == "FMR" else fpir_floor
        if text.startswith("below "):
            assert float(text.split()[1].rstrip(",")) == pytest.approx(floor, rel=0.06), text
            beyond += 1
        else:
            value = float(text)
            assert value >= floor and f"{value:.2g}" == text, text  # above the floor, two significant digits
    # Planted duplicates score far above every non-mate pair measured: their FMR is beyond the measured range.
    assert beyond > 0
    assert not re.search(r"\d\.\de-(0[6-9]|[1-9]\d)", html), "a rate finer than any calibration here measures"
    assert "FPIR measured from" in html and "galleries of" in html  # the run's measured range, in words


def test_report_folder_holds_only_thumbnails_and_charts(generated: Generated) -> None:
    files = sorted(p.relative_to(generated.folder).as_posix() for p in generated.folder.rglob("*") if p.is_file())
    thumbs = [f for f in files if f.startswith("thumbs/")]
    assert files == ["charts/dedup_scores.png", "charts/match_scores.png", "index.html", *thumbs]
    assert len(thumbs) == generated.result.thumbnails
    for name in thumbs:
        image = cv2.imread(str(generated.folder / name))
        assert image is not None and max(image.shape[:2]) <= THUMB_SIDE


def test_report_infers_no_personal_attributes(generated: Generated) -> None:
    text = re.sub(r"<[^>]+>", " ", generated.html).lower()
    assert not re.search(r"\b(emotion|gender|sex|age|race|ethnicity|ethnic)\b", text)


def test_report_run_is_recorded(spark: SparkSession, generated: Generated) -> None:
    runs = read_table(spark, generated.cfg, "runs").filter(F.col("run_id") == "t-report").collect()
    assert [(r["job"], r["status"]) for r in runs] == [("report", "succeeded")]
    assert runs[0]["counts"]["strong_total"] == generated.result.strong_total
    audit = read_table(spark, generated.cfg, "audit").filter(F.col("run_id") == "t-report").first()
    assert audit is not None and "t-match" in audit["detail"] and audit["operator"] == "test-operator"


def test_unknown_match_run_is_refused(spark: SparkSession, generated: Generated) -> None:
    with pytest.raises(InputError, match="no succeeded match run"):
        report.run(spark, generated.cfg, run_id="t-report-bad", match_run_id="no-such-run")


# ------------------------------------------------------------------------------------------ browser


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("no headless Chromium found (looked for chromium, chromium-browser, google-chrome): "
                "run `make setup`, which installs Debian's chromium package")


def browse(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)
    cmd = [find_browser(), *CHROME_FLAGS, f"--user-data-dir={profile}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def test_report_renders_in_headless_chromium(generated: Generated, tmp_path: Path) -> None:
    url = (generated.folder / "index.html").as_uri()
    shot = tmp_path / "report.png"
    done = browse(url, tmp_path, f"--screenshot={shot}", "--window-size=1280,2000")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2000, 1280)
    not_white = (image < 235).any(axis=2).mean()
    assert not_white > 0.05, f"screenshot looks blank ({not_white:.1%} of pixels not white)"
    banner_red = ((image[:, :, 2] > 150) & (image[:, :, 1] < 60) & (image[:, :, 0] < 80)).sum()
    assert banner_red > 500, "the red review banner is not on screen"

    dom = browse(url, tmp_path, "--dump-dom", "--virtual-time-budget=10000")
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, "no <body> in the dumped DOM"
    attrs = dict(re.findall(r'(data-img-[a-z]+)="([^"]*)"', body.group(0)))
    assert "data-img-widths" in attrs, "the page's load script did not run"
    widths = [int(w) for w in attrs["data-img-widths"].split(",") if w]
    expected = 2 * generated.html.count('<article class="pair"') + 2  # two photos a card, two charts
    assert len(widths) == int(attrs["data-img-count"]) == expected
    assert all(w > 0 for w in widths), f"images that did not load: {widths.count(0)} of {len(widths)}"
    assert widths.count(800) == 2 and max(widths) == 800  # the charts; thumbnails are smaller
