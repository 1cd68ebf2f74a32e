"""Build a demo archive from lfw_dev with a fixed seed: gallery and probe manifests plus the ground truth.

The archive has one record per person; some records hold a second photo (a renewal); a known set of
people are enrolled twice under different record ids (planted duplicate enrolments); the probe batch
holds new applications, some by people already enrolled (mated probes, under new record ids) and some
by people who are not (unmated probes). ``truth.csv`` says which is which.

Run: ``python -m facelink.sample --out sample [--size small|full] [--seed 7]``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from facelink.config import load_config

log = logging.getLogger(__name__)

REGIONS = ("north", "south", "east", "west")


@dataclass(frozen=True)
class SampleSizes:
    """How many people play each part. ``singles`` = -1 uses every remaining one-photo person."""

    duplicates: int
    mated_probes: int
    renewals: int
    unmated_probes: int
    singles: int


SIZES = {
    "small": SampleSizes(duplicates=40, mated_probes=30, renewals=20, unmated_probes=30, singles=300),
    # The lfw_dev 1:N protocol: about 3,600 gallery records, 300 planted duplicates, 250 + 250 probes.
    "full": SampleSizes(duplicates=300, mated_probes=250, renewals=150, unmated_probes=250, singles=-1),
}


def _photos_by_identity(lfw_dir: Path) -> dict[str, list[str]]:
    by_id: dict[str, list[str]] = defaultdict(list)
    with (lfw_dir / "manifest.csv").open() as fh:
        for row in csv.DictReader(fh):
            by_id[row["identity"]].append(row["path"])
    return {k: sorted(v) for k, v in sorted(by_id.items())}


def build_sample(lfw_dir: Path, out_dir: Path, sizes: SampleSizes, seed: int = 7) -> dict[str, int]:
    """Write ``gallery.csv``, ``probes.csv``, ``truth.csv`` and ``sample.json`` under ``out_dir``.

    Returns the counts written. The same ``lfw_dir``, sizes and seed give byte-identical files.
    """
    rng = random.Random(seed)
    photos = _photos_by_identity(lfw_dir)
    multi = [p for p, v in photos.items() if len(v) >= 2]
    single = [p for p, v in photos.items() if len(v) == 1]
    rng.shuffle(multi)
    rng.shuffle(single)
    need_multi = sizes.duplicates + sizes.mated_probes + sizes.renewals
    if need_multi > len(multi) or sizes.unmated_probes + max(sizes.singles, 0) > len(single):
        raise ValueError(f"lfw_dev has {len(multi)} multi-photo and {len(single)} one-photo people: too few")
    dups = multi[: sizes.duplicates]
    mated = multi[sizes.duplicates : sizes.duplicates + sizes.mated_probes]
    renew = multi[sizes.duplicates + sizes.mated_probes : need_multi]
    unmated = single[: sizes.unmated_probes]
    rest = single[sizes.unmated_probes :]
    # In the full protocol every remaining person is enrolled once, multi-photo people included.
    singles = rest + multi[need_multi:] if sizes.singles < 0 else rest[: sizes.singles]

    ids = rng.sample(range(1_000_000, 9_999_999), 2 * (len(photos) + 10))
    next_id = iter(ids)
    gallery: list[dict[str, str]] = []
    probes: list[dict[str, str]] = []
    truth: list[dict[str, str]] = []

    def record(role: str, person: str, kind: str) -> str:
        rid = f"{'P' if role == 'probe' else 'R'}{next(next_id)}"
        truth.append({"record_id": rid, "role": role, "identity": person, "kind": kind})
        return rid

    def add(rows: list[dict[str, str]], rid: str, rel: str, day: int) -> None:
        region = REGIONS[int(rid[1:]) % len(REGIONS)]
        captured = (dt.date(2015, 1, 1) + dt.timedelta(days=day)).isoformat()
        rows.append({"record_id": rid, "path": str(lfw_dir / rel), "captured_at": captured, "region": region})

    for person in dups:
        a, b = photos[person][:2]
        add(gallery, record("gallery", person, "planted_duplicate"), a, rng.randrange(3000))
        add(gallery, record("gallery", person, "planted_duplicate"), b, rng.randrange(3000))
    for person in mated:
        a, b = photos[person][:2]
        add(gallery, record("gallery", person, "enrolled"), a, rng.randrange(3000))
        add(probes, record("probe", person, "mated_probe"), b, 3650 + rng.randrange(30))
    for person in renew:
        a, b = photos[person][:2]
        rid = record("gallery", person, "renewal")
        add(gallery, rid, a, rng.randrange(1500))
        add(gallery, rid, b, 1500 + rng.randrange(1500))
    for person in singles:
        add(gallery, record("gallery", person, "enrolled"), photos[person][0], rng.randrange(3000))
    for person in unmated:
        add(probes, record("probe", person, "unmated_probe"), photos[person][0], 3650 + rng.randrange(30))

    rng.shuffle(gallery)
    rng.shuffle(probes)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "gallery.csv", gallery, ["record_id", "path", "captured_at", "region"])
    _write_csv(out_dir / "probes.csv", probes, ["record_id", "path", "captured_at", "region"])
    _write_csv(out_dir / "truth.csv", sorted(truth, key=lambda r: r["record_id"]),
               ["record_id", "role", "identity", "kind"])
    counts = {
        "gallery_photos": len(gallery),
        "gallery_records": sum(1 for t in truth if t["role"] == "gallery"),
        "planted_duplicate_pairs": len(dups),
        "renewals": len(renew),
        "probes": len(probes),
        "mated_probes": len(mated),
        "unmated_probes": len(unmated),
    }
    meta = {"seed": seed, "sizes": asdict(sizes), "source": str(lfw_dir), "counts": counts}
    (out_dir / "sample.json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info("sample archive in %s: %s", out_dir, counts)
    return counts


def _write_csv(path: Path, rows: list[dict[str, str]], fields: Sequence[str]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facelink.sample", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--out", default="sample")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--env", default="local")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.env)
    lfw = Path(cfg.resolve(cfg.paths.data_dir)) / "lfw_dev"
    counts = build_sample(lfw, Path(args.out), SIZES[args.size], args.seed)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
