"""One training host: a child process (``main(<kwargs.json>)``, see local_trainer._train) that reads
only its own channel directories and trains as one rank of XGBoost's collective, as the built-in
container does on each instance. It writes ``result_path`` (metrics, or the error) and exits.

Kept apart from local_trainer so a child imports xgboost and pyarrow and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from pathlib import Path
from typing import Any

MODEL_FILE = "xgboost-model"  # what the built-in container writes to /opt/ml/model


def _matrix(channel_dir: Path) -> Any:
    import numpy as np
    import pyarrow.parquet as pq
    import xgboost as xgb

    files = sorted(p for p in channel_dir.rglob("*") if p.is_file())
    table = np.concatenate([pq.read_table(f).to_pandas().to_numpy(dtype=np.float64) for f in files])
    return xgb.DMatrix(table[:, 1:], label=table[:, 0])  # label in column 0, names ignored


def run(
    *,
    rank: int,
    host_dir: str,
    channels: list[str],
    params: dict[str, Any],
    num_round: int,
    early_stopping_rounds: int | None,
    tracker_args: dict[str, Any],
    result_path: str,
) -> None:
    result: dict[str, Any]
    try:
        import xgboost as xgb
        from xgboost import collective

        base = Path(host_dir)
        data = {c: _matrix(base / "input" / "data" / c) for c in channels}
        evals = [(data[c], c) for c in channels]  # train first, validation last: early stopping watches it
        history: dict[str, dict[str, list[float]]] = {}
        with collective.CommunicatorContext(**tracker_args, dmlc_task_id=str(rank)):
            booster = xgb.train(
                params,
                data["train"],
                num_boost_round=num_round,
                evals=evals,
                evals_result=history,
                early_stopping_rounds=early_stopping_rounds if len(channels) > 1 else None,
                verbose_eval=False,
            )
        raw = bytes(booster.save_raw("ubj"))
        model_dir = base / "model"
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / MODEL_FILE).write_bytes(raw)
        result = {
            "ok": True,
            "rounds": booster.num_boosted_rounds(),
            "metrics": {
                f"{name}:{metric}": values[-1]
                for name, ms in history.items()
                for metric, values in ms.items()
            },
            "model_sha256": hashlib.sha256(raw).hexdigest(),
        }
    except Exception as exc:  # noqa: BLE001 - the parent reports the host's error by name
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    Path(result_path).write_text(json.dumps(result))
    if not result["ok"]:
        raise SystemExit(1)


def main(kwargs_path: str) -> None:
    run(**json.loads(Path(kwargs_path).read_text()))
