"""Experiment tracking and the model registry on MLflow (plain Python, no Dagster).

One hyper-parameter search is one MLflow parent run; each trial is a child run with its
params and validation metrics. The best trial (by the family's primary metric on the
validation split) is saved with the family's own ``save()``, logged as the parent run's
``model/`` artifact folder, evaluated again from those saved bytes on the hold-out split,
and registered as a new version of the family's registered model with the alias
``challenger``. Tags on the run and the version record the Delta versions it trained on,
so the model can be rebuilt as of then.

The generic artifact approach (``save()`` folder -> ``log_artifacts``) keeps the four
families uniform whatever their library (PyTorch, Prophet, scikit-learn): loading goes
through the family's ``load()``, never through an MLflow flavor.

Promotion policy lives in :mod:`mfg_assets.ml.gate`; this module only gives it what it needs:
the champion re-evaluated on the SAME hold-out rows as the challenger from its saved model
(:meth:`ModelRegistry.holdout_metrics_of`), and a place to record the verdict
(:meth:`ModelRegistry.record_gate`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from mfg_assets.ml.base import SplitRefused
from mfg_assets.settings import get_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from mfg_assets.ml.base import ModelFamily, Trained
    from mfg_assets.ml.gate import Decision

# Downloads of a few kilobytes do not need a progress bar in every log.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CHALLENGER = "challenger"
CHAMPION = "champion"
GATE_TAG = "mfg.gate"  # "passed" / "refused" on a model version, set by the promotion gate
GATE_REASON_TAG = "mfg.gate_reason"  # ...and why
DATA_TAG_PREFIX = "mfg.data."  # mfg.data.<layer.table> = Delta version trained on
MODEL_ARTIFACT = "model"
FIGURE_ARTIFACTS = "figures"


class FamilyModule(Protocol):
    """What :func:`run_search` needs of a model family module (``mfg_assets.ml.<family>``)."""

    FAMILY: ModelFamily

    def search_space(self, budget: int, seed: int) -> list[dict]: ...
    def train(self, features: pl.DataFrame, params: dict, seed: int = 0) -> Trained: ...
    def evaluate(self, model: Any, features: pl.DataFrame, info: dict) -> dict[str, float]: ...
    def save(self, trained: Trained, path: Path) -> None: ...
    def load(self, path: Path) -> tuple[Any, dict]: ...


@dataclass(frozen=True)
class Trial:
    run_id: str
    params: dict[str, Any]
    metrics: dict[str, float]  # validation
    error: str | None = None


@dataclass(frozen=True)
class SearchResult:
    family: str
    model_name: str  # registered model name
    version: str  # registered model version (alias "challenger")
    parent_run_id: str
    best_run_id: str
    params: dict[str, Any]
    metrics: dict[str, float]  # validation metrics of the best trial
    holdout_metrics: dict[str, float]  # from the saved model, via family.evaluate
    figures: dict[str, bytes]
    data_versions: dict[str, int | None]
    trials: list[Trial] = field(default_factory=list)
    artifact_uri: str = ""  # where the model/ folder lives
    info: dict[str, Any] = field(default_factory=dict)  # the saved model's info (split...)


def registered_name(family: ModelFamily | str) -> str:
    """The registered model's name in MLflow: ``mfg-<family>``."""
    name = family if isinstance(family, str) else family.name
    return f"mfg-{name}"


# -- MLflow ----------------------------------------------------------------------------


class ModelRegistry:
    """MLflow tracking + model registry behind the four operations the pipeline needs.

    Uses an explicit ``MlflowClient`` (no fluent global state): concurrent Dagster steps in
    one process and tests on different ``tmp_path`` stores never share an "active run".
    """

    def __init__(self, tracking_uri: str | None = None, artifact_root: str | None = None):
        from mlflow import MlflowClient  # mlflow is heavy to import: only when used

        settings = get_settings()
        self.tracking_uri = tracking_uri or settings.mlflow_tracking_uri
        root = settings.mlflow_artifact_root if artifact_root is None else artifact_root
        self.artifact_root = root.rstrip("/")
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(
                parents=True, exist_ok=True
            )
        self.client: MlflowClient = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)

    # -- runs --------------------------------------------------------------------------

    def experiment_id(self, family: str) -> str:
        name = f"mfg-{family}"
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=self.artifact_location(name))

    def artifact_location(self, experiment: str) -> str | None:
        """Where an experiment's artifacts go: under the configured artifact root (the
        embedded default is data/mlflow/artifacts), else MLflow's own default."""
        return f"{self.artifact_root}/{experiment}" if self.artifact_root else None

    @contextmanager
    def run(
        self, experiment_id: str, name: str, tags: dict[str, str], parent_id: str | None = None
    ) -> Iterator[str]:
        """An MLflow run that is always terminated: FINISHED, FAILED or KILLED."""
        tags = dict(tags)
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        status = "FAILED"
        try:
            yield run_id
            status = "FINISHED"
        except (KeyboardInterrupt, GeneratorExit):
            status = "KILLED"
            raise
        finally:
            self.client.set_terminated(run_id, status)

    def _log(self, run_id: str, params: dict[str, Any] | None = None,
             metrics: dict[str, float] | None = None, prefix: str = "") -> None:
        from mlflow.entities import Metric, Param

        params_ = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
        metrics_ = [
            Metric(f"{prefix}{k}", float(v), _now_ms(), 0)
            for k, v in (metrics or {}).items()
            if v is not None and math.isfinite(float(v))
        ]
        if params_ or metrics_:
            self.client.log_batch(run_id, metrics=metrics_, params=params_)

    # -- search ------------------------------------------------------------------------

    def run_search(
        self,
        module: FamilyModule,
        features: pl.DataFrame,
        budget: int,
        seed: int,
        data_versions: dict[str, int | None],
        extra_tags: dict[str, str] | None = None,
    ) -> SearchResult:
        """Train every candidate of the family's search space, register the best one."""
        family = module.FAMILY
        candidates = module.search_space(budget, seed)
        if not candidates:
            raise ValueError(f"{family.name}: empty search space for budget {budget}")
        experiment = self.experiment_id(family.name)
        tags = {
            "mfg.family": family.name,
            "mfg.kind": "search",
            "mfg.seed": str(seed),
            "mfg.budget": str(budget),
            "mfg.feature_rows": str(features.height),
            **_data_tags(data_versions),
            **(extra_tags or {}),
        }
        with self.run(experiment, f"{family.name}-search", tags) as parent:
            trials, best = self._trials(module, features, candidates, seed, experiment, parent)
            best_trial, trained = best
            self._log(parent, best_trial.params, trained.metrics, prefix="val_")
            self.client.set_tag(parent, "mfg.best_trial_run_id", best_trial.run_id)
            with tempfile.TemporaryDirectory(prefix=f"mfg-{family.name}-") as tmp:
                model_dir = Path(tmp) / MODEL_ARTIFACT
                model_dir.mkdir()
                module.save(trained, model_dir)
                # Judge the bytes we ship: reload the saved model, evaluate on the hold-out.
                model, info = module.load(model_dir)
                holdout = _floats(module.evaluate(model, features, info))
                self._log(parent, metrics=holdout, prefix="holdout_")
                if "split" in info:  # how the rows were split, rows and classes per part
                    self.client.set_tag(parent, "mfg.split",
                                        json.dumps(info["split"], default=str)[:5000])
                self.client.log_artifacts(parent, str(model_dir), MODEL_ARTIFACT)
                figures_dir = Path(tmp) / FIGURE_ARTIFACTS
                figures_dir.mkdir()
                for name, png in trained.figures.items():
                    (figures_dir / f"{name.removesuffix('.png')}.png").write_bytes(png)
                if trained.figures:
                    self.client.log_artifacts(parent, str(figures_dir), FIGURE_ARTIFACTS)
            artifact_uri = f"{self.client.get_run(parent).info.artifact_uri}/{MODEL_ARTIFACT}"
            version = self._register(family, parent, artifact_uri, data_versions, holdout)
            self.client.set_tag(parent, "mfg.model_version", version)
        return SearchResult(
            family=family.name,
            model_name=registered_name(family),
            version=version,
            parent_run_id=parent,
            best_run_id=best_trial.run_id,
            params=best_trial.params,
            metrics=_floats(trained.metrics),
            holdout_metrics=holdout,
            figures=dict(trained.figures),
            data_versions=dict(data_versions),
            trials=trials,
            artifact_uri=artifact_uri,
            info=dict(info),
        )

    def _trials(
        self,
        module: FamilyModule,
        features: pl.DataFrame,
        candidates: Sequence[dict],
        seed: int,
        experiment: str,
        parent: str,
    ) -> tuple[list[Trial], tuple[Trial, Trained]]:
        family = module.FAMILY
        trials: list[Trial] = []
        best: tuple[Trial, Trained] | None = None
        for index, params in enumerate(candidates):
            tags = {"mfg.family": family.name, "mfg.kind": "trial", "mfg.trial": str(index)}
            run: str | None = None
            try:
                with self.run(experiment, f"{family.name}-trial-{index}", tags, parent) as run:
                    self._log(run, params)
                    trained = module.train(features, params, seed=seed)
                    self._log(run, metrics=trained.metrics)
            except Exception as exc:  # one bad candidate must not sink the search...
                if run is None or isinstance(exc, SplitRefused):  # ...nor hide bad data
                    raise  # (MLflow itself failing, or a table no candidate can split)
                trials.append(Trial(run, dict(params), {}, f"{type(exc).__name__}: {exc}"))
                continue
            trial = Trial(run, dict(params), _floats(trained.metrics))
            trials.append(trial)
            if best is None or _better(family, trial.metrics, best[0].metrics):
                best = (trial, trained)  # keep only the best model in memory
        if best is None:
            errors = "; ".join(t.error or "" for t in trials[:3])
            raise RuntimeError(f"{family.name}: every trial failed ({errors})")
        return trials, best

    def _register(
        self,
        family: ModelFamily,
        run_id: str,
        source: str,
        data_versions: dict[str, int | None],
        holdout: dict[str, float],
    ) -> str:
        from mlflow.exceptions import MlflowException

        name = registered_name(family)
        try:
            self.client.create_registered_model(
                name, description=f"mfg_assets {family.name} model ({family.flavor}); "
                f"load with mfg_assets.ml.{family.name}.load on the model/ folder."
            )
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        tags = {
            **_data_tags(data_versions),
            "mfg.flavor": family.flavor,
            **{f"mfg.holdout.{k}": f"{v:.6g}" for k, v in holdout.items()},
        }
        version = self.client.create_model_version(name, source, run_id=run_id, tags=tags)
        self.client.set_registered_model_alias(name, CHALLENGER, version.version)
        return str(version.version)

    # -- registry ----------------------------------------------------------------------

    def version_by_alias(self, name: str, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if exc.error_code in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"):
                return None
            raise

    def champion(self, name: str) -> ModelVersion | None:
        return self.version_by_alias(name, CHAMPION)

    def set_champion(self, name: str, version: str | int) -> None:
        self.client.set_registered_model_alias(name, CHAMPION, str(version))

    def record_gate(self, name: str, version: str | int, decision: Decision) -> None:
        """Write the gate's verdict on the version: the champion step only promotes 'passed'."""
        self.client.set_model_version_tag(
            name, str(version), GATE_TAG, "passed" if decision.passed else "refused"
        )
        self.client.set_model_version_tag(name, str(version), GATE_REASON_TAG,
                                          decision.reason[:5000])

    def load(self, module: FamilyModule, version: ModelVersion, dst: Path) -> tuple[Any, dict]:
        """Download a version's ``model/`` folder into ``dst`` and load it with the family."""
        from mlflow.artifacts import download_artifacts

        local = download_artifacts(
            artifact_uri=version.source, dst_path=str(dst), tracking_uri=self.tracking_uri
        )
        return module.load(Path(local))

    def holdout_metrics_of(
        self, module: FamilyModule, alias: str, features: pl.DataFrame
    ) -> tuple[str, dict[str, float]] | None:
        """(version, metrics) of the aliased version re-evaluated on ``features``' hold-out.

        None when nothing carries the alias yet.
        """
        version = self.version_by_alias(registered_name(module.FAMILY), alias)
        if version is None:
            return None
        with tempfile.TemporaryDirectory(prefix="mfg-eval-") as tmp:
            model, info = self.load(module, version, Path(tmp))
            return str(version.version), _floats(module.evaluate(model, features, info))

    def running_runs(self, family: str) -> list[str]:
        """Run ids still marked RUNNING (there should be none after a search)."""
        from mlflow.entities import ViewType

        runs = self.client.search_runs(
            [self.experiment_id(family)],
            filter_string="attributes.status = 'RUNNING'",
            run_view_type=ViewType.ALL,
        )
        return [run.info.run_id for run in runs]


def _better(family: ModelFamily, metrics: dict[str, float], than: dict[str, float]) -> bool:
    primary = family.primary_metric
    if primary not in metrics:
        raise KeyError(f"{family.name}: train() reported no {primary!r} (got {sorted(metrics)})")
    value, best = metrics[primary], than.get(primary, math.nan)
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return value > best if family.higher_is_better else value < best


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {str(k): float(v) for k, v in metrics.items() if v is not None}


def _data_tags(data_versions: dict[str, int | None]) -> dict[str, str]:
    return {f"{DATA_TAG_PREFIX}{name}": str(v) for name, v in sorted(data_versions.items())}


def _param_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]  # MLflow's limit on a param value


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


MLFLOW_UI = "http://127.0.0.1:5000"  # `make mlflow`: the MLflow UI on the embedded store


def mlflow_ui_url() -> str:
    """Where a person opens MLflow: the tracking server itself when there is one, else the
    `make mlflow` UI over the embedded sqlite store."""
    from mfg_assets.settings import get_settings

    uri = get_settings().mlflow_tracking_uri
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else MLFLOW_UI
