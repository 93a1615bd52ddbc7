"""What the study driver spends per run on planning and the store, outside training.

For each of 200 runs of a study of the chapter notebook's model, the driver's own work:
validate and resolve the run's recipe (`Study.plan`), insert it (`add_runs`),
mark it started, read it back twice (retry bookkeeping and the progress line),
and record a 10-epoch result with its per-epoch history (`record_result`), all
against a real `study.db` on disk that grows as it goes. Target: < 50 ms per run.

Run: `.venv/bin/python benchmarks/study_store_overhead.py [--runs 200]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from tricklab.recipe.study import load_study
from tricklab.study.store import RunRecord, StudyStore

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "chapter11" / "leaky_relu_he.yaml"
EPOCHS = 10


def result(seed: int) -> dict:
    history = {key: [0.5 + 0.01 * epoch + seed * 1e-4 for epoch in range(EPOCHS)]
               for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "time_s")}
    metrics = {f"{split}_{name}": 0.8 for split in ("train", "val", "test")
               for name in ("loss", "accuracy")}
    return {"status": "completed", "metrics": metrics, "history": history,
            "epochs_run": EPOCHS, "wall_time_s": 20.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "overhead.yaml"
        path.write_text(yaml.safe_dump({"name": "overhead", "base": str(RECIPE),
                                        "seeds": args.runs, "variants": {"sgd": {}}}))
        study = load_study(path)
        store = StudyStore.create(Path(folder) / "study.db", study.spec, study.fingerprint)
        seconds = []
        for seed in study.spec["seeds"]:
            start = time.perf_counter()
            run = study.plan("sgd", seed)
            store.add_runs([RunRecord(run.run_id, run.variant, run.seed, run.phase,
                                      run.run_dir, run.recipe)])
            store.mark_started(run.run_id)
            store.run(run.run_id)
            store.record_result(run.run_id, result(seed))
            store.run(run.run_id)
            seconds.append(time.perf_counter() - start)
        store.close()
    print(f"{args.runs} runs, {EPOCHS}-epoch histories, a store on disk")
    print(f"per run: median {1000 * statistics.median(seconds):.1f} ms, "
          f"mean {1000 * statistics.mean(seconds):.1f} ms, max {1000 * max(seconds):.1f} ms"
          "  (target < 50 ms)")


if __name__ == "__main__":
    main()
