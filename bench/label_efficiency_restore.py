"""Write a committed one-seed study's rows back into a runs folder as its job files.

The study runs one seed per stop on 2 cores, and a stop's machine may not keep the last one's
runs folder. Its committed JSON holds every field the summary reads for a one-seed row (the mean
is that seed's value), so those rows can stand as the seed's job files beside the next seed's,
and ``bench/label_efficiency.py --summarise-only`` pools them. What it cannot bring back: G's
samples (fidelity and diversity are then the other seeds' alone) and the reference's weights.

    python bench/label_efficiency_restore.py bench/results/NAME.json RUNS
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.label_efficiency_arms import job_name  # noqa: E402


def job_rows(committed: dict[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Job name -> the job file's fields, for every row of a one-seed study's JSON."""
    jobs = {}
    for row in committed["rows"]:
        if len(row["seeds"]) != 1:
            raise ValueError(
                f"{source}: row {row['arm']} at {row['labels']:g} pools seeds {row['seeds']}; "
                "only a one-seed row is that seed's job"
            )
        seed = row["seeds"][0]
        job = {
            "arm": row["arm"],
            "labels": row["labels"],
            "seed": seed,
            "labelled": row["labelled"],
            "steps": row["steps"],
            "planned_steps": row["steps"],
            "scale": 1.0,
            "truncated": row["truncated"],
            "seconds": row["seconds"],
            "test_images": committed["test_images"],
            "fine": row["fine_mean"],
            "coarse": row["coarse_mean"],
            "acc_group": row["group_mean"],
            "restored_from": source,
        }
        if row.get("val_curve"):
            job["val_curve"] = row["val_curve"]
        if row.get("pretrain_steps"):
            job["pretrain_steps"] = row["pretrain_steps"]
        if "merged_fine_mean" in row:
            job |= {"merged_fine": row["merged_fine_mean"], "merge_weight": row["merge_weights"][0]}
        jobs[job_name(row["arm"], row["labels"], seed)] = job
    return jobs


def main() -> None:
    """Write the job files; refuse to overwrite a job that ran in the folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("committed", type=Path, help="a one-seed study's results JSON")
    parser.add_argument("runs", type=Path, help="the runs folder to write the job files into")
    args = parser.parse_args()
    jobs = job_rows(json.loads(args.committed.read_text()), str(args.committed))
    args.runs.mkdir(parents=True, exist_ok=True)
    for name, job in jobs.items():
        path = args.runs / f"{name}.json"
        if path.exists():
            raise SystemExit(f"{path} exists: a job that ran here is not overwritten")
        path.write_text(json.dumps(job, indent=1))
        print(f"{name}: fine {job['fine']}")


if __name__ == "__main__":
    main()
