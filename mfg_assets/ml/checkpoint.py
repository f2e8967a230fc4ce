"""Resumable training: epoch checkpoints that a retried run of the SAME work resumes from.

Training on spot / preemptible machines is the cost lever; a preempted run is retried by
Dagster (``run_retries`` in ``dagster.yaml``, strategy FROM_FAILURE) and must not start over.

How it fits together (plain Python, no Dagster):

- :func:`resume_key` hashes what makes two runs the same work: the asset key, the
  partition, the Delta versions of the training inputs and the run's params (config, code
  version). A retry has another run id but the same key; new data, params or code never
  find the old checkpoints.
- :func:`mlflow_scope` (or :func:`scope` over any store) makes a key current for the code
  inside it, so family code needs no new arguments: the Dagster asset opens the scope, the
  family's ``train()`` opens :func:`resumable` per training loop (a unit: its params, seed,
  sub-model) and calls ``restore`` before its epochs and ``epoch_done`` after each.
  Without a scope, :func:`resumable` does nothing (tests, notebooks, the search outside
  Dagster).
- A checkpoint holds the model, optimizer, epoch, torch's global RNG and the loop's own
  generators, and where a loop has them its learning-rate scheduler and its own state
  (``loop``: early stopping's best epoch and weights, whether it stopped): a resumed loop
  continues the same random stream and schedule, so it ends with the same weights as an
  uninterrupted one (bit-identical on CPU). A loop that stops early says so
  (``final=True``): that epoch is saved at once, and a retry finds the loop finished.

Where checkpoints live: in MLflow, as artifacts of one run per resume key (experiment
``mfg-checkpoints``, tag ``mfg.resume_key``), not in a local folder. A spot retry usually
lands on another machine, whose disk never saw the checkpoint; the MLflow artifact store
(S3 in production, a folder in the embedded default) is already shared by every worker and
the runs say which asset and data each one belongs to. The run stays open (RUNNING after a
``kill -9``, FAILED after an error) until the work succeeds; then it is deleted (``mlflow
gc`` reclaims the artifacts), so a later re-materialization of the same inputs trains anew.
:class:`DirectoryStore` is the same contract on a folder (unit tests, single-box use).

Each unit writes two slots alternately: a save cut off by a ``kill -9`` tears at most one,
and the reader takes the newest slot that loads. Saves are throttled so that they cost at
most about ``1 / OVERHEAD`` of the training time (tiny epochs would otherwise spend more
time uploading than learning); the last epoch and a SIGTERM always save.

SIGTERM (what a spot VM or a Kubernetes node drain sends, with a grace period) saves the
newest epoch snapshot at once and raises :class:`Preempted`, an ordinary error: the step
and run fail cleanly (MLflow runs closed as FAILED) and the run retry picks the work up.
Under Dagster's multiprocess executor the pod's SIGTERM reaches the run worker, which
interrupts each step process with SIGINT: that also saves first, then raises what the
interrupted handler raises (Dagster's step interrupt; KeyboardInterrupt elsewhere).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT = "mfg-checkpoints"
RESUME_KEY_TAG = "mfg.resume_key"
ARTIFACTS = "checkpoints"
SLOTS = 2
OVERHEAD = 10.0  # save when the time since the last save is >= OVERHEAD x its cost
_KEY_VERSION = 1  # bump when the checkpoint layout changes: old ones are then not found


class Preempted(RuntimeError):
    """SIGTERM during training: the newest epoch was saved; a retry resumes from it."""


def resume_key(asset: str, partition: str | None, data_versions: Mapping[str, int | None],
               params: Mapping[str, Any]) -> str:
    """The same for a retry of the same work, different for any other (hex sha256)."""
    return _digest({"v": _KEY_VERSION, "asset": asset, "partition": partition,
                    "data": dict(data_versions), "params": dict(params)})


def _digest(doc: Any, size: int = 32) -> str:
    text = json.dumps(doc, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[: 2 * size]


# -- stores ------------------------------------------------------------------------------------


class CheckpointStore(Protocol):
    def read(self, name: str) -> list[bytes]: ...  # every slot written so far
    def write(self, name: str, slot: int, data: bytes, epoch: int) -> None: ...


class DirectoryStore:
    """Checkpoints as files ``<root>/<name>/slot<i>.pt``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, name: str) -> list[bytes]:
        folder = self.root / name
        return [p.read_bytes() for p in sorted(folder.glob("slot*.pt"))] if folder.is_dir() else []

    def write(self, name: str, slot: int, data: bytes, epoch: int) -> None:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"slot{slot}.pt").write_bytes(data)


class MlflowStore:
    """Checkpoints as artifacts ``checkpoints/<name>/slot<i>.pt`` of the key's MLflow run."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    @classmethod
    def open(cls, client: MlflowClient, key: str, tags: Mapping[str, str] | None = None,
             artifact_location: str | None = None) -> tuple[MlflowStore, bool]:
        """The store of ``key``: its unfinished run if one exists (True), else a new run.
        ``artifact_location``: where a new checkpoint experiment keeps its artifacts (the
        registry's artifact root; None: the tracking server's default, which for a bare
        sqlite store is ``./mlruns`` in the working directory)."""
        found = client.get_experiment_by_name(EXPERIMENT)
        experiment = (found.experiment_id if found else
                      client.create_experiment(EXPERIMENT, artifact_location=artifact_location))
        runs = client.search_runs([experiment], f"tags.`{RESUME_KEY_TAG}` = '{key}'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            run_id = runs[0].info.run_id
            client.update_run(run_id, status="RUNNING")
            return cls(client, run_id), True
        run = client.create_run(experiment, run_name=f"checkpoints-{key[:12]}",
                                tags={RESUME_KEY_TAG: key, **(tags or {})})
        return cls(client, run.info.run_id), False

    def read(self, name: str) -> list[bytes]:
        path = f"{ARTIFACTS}/{name}"
        found = [a.path for a in self.client.list_artifacts(self.run_id, path) if not a.is_dir]
        out = []
        with tempfile.TemporaryDirectory(prefix="mfg-ckpt-") as tmp:
            for artifact in sorted(found):
                local = self.client.download_artifacts(self.run_id, artifact, tmp)
                out.append(Path(local).read_bytes())
        return out

    def write(self, name: str, slot: int, data: bytes, epoch: int) -> None:
        with tempfile.TemporaryDirectory(prefix="mfg-ckpt-") as tmp:
            local = Path(tmp) / f"slot{slot}.pt"
            local.write_bytes(data)
            self.client.log_artifact(self.run_id, str(local), f"{ARTIFACTS}/{name}")
        self.client.set_tag(self.run_id, f"mfg.checkpoint.{name}", str(epoch))

    def finish(self, succeeded: bool) -> None:
        """Done: delete the run (its work is in the model); failed: keep it for the retry."""
        self.client.set_terminated(self.run_id, "FINISHED" if succeeded else "FAILED")
        if succeeded:
            self.client.delete_run(self.run_id)


# -- scope -------------------------------------------------------------------------------------


class Scope:
    """The checkpoints of one piece of work; records which units resumed where."""

    def __init__(self, store: CheckpointStore, key: str, min_interval_s: float = 0.0) -> None:
        self.store = store
        self.key = key
        self.min_interval_s = min_interval_s
        self.resumed: dict[str, int] = {}  # unit name -> epoch it resumed at (> 0 only)
        self.saved: dict[str, int] = {}  # unit name -> newest epoch saved


_CURRENT: ContextVar[Scope | None] = ContextVar("mfg_checkpoint_scope", default=None)


@contextmanager
def scope(store: CheckpointStore, key: str, min_interval_s: float = 0.0) -> Iterator[Scope]:
    """Make ``key``'s checkpoints current for the training code inside."""
    current = Scope(store, key, min_interval_s)
    token = _CURRENT.set(current)
    try:
        yield current
    finally:
        _CURRENT.reset(token)


@contextmanager
def mlflow_scope(client: MlflowClient, key: str, tags: Mapping[str, str] | None = None,
                 min_interval_s: float = 0.0, artifact_location: str | None = None
                 ) -> Iterator[Scope]:
    """:func:`scope` on the MLflow run of ``key`` (found again by a retry of the same work)."""
    store, found = MlflowStore.open(client, key, tags, artifact_location)
    if found:
        log.info("resuming from checkpoints of MLflow run %s (key %s)", store.run_id, key[:12])
    try:
        with scope(store, key, min_interval_s) as current:
            yield current
    except BaseException:
        store.finish(succeeded=False)
        raise
    store.finish(succeeded=True)


def current() -> Scope | None:
    return _CURRENT.get()


# -- one training loop -------------------------------------------------------------------------


class Checkpoint:
    """Checkpoints of one training loop (a unit) in the current scope; inert without one."""

    def __init__(self, scope_: Scope | None, name: str, epochs: int) -> None:
        self.scope = scope_
        self.name = name
        self.epochs = epochs
        self._snapshot: tuple[int, bytes] | None = None  # newest epoch, not yet saved
        self._writes = 0
        self._last_save = time.monotonic()
        self._save_cost = 0.0
        self._saving = False
        self._stop = False
        self._signal: int | None = None  # the signal that stopped the loop
        self._chained: dict[int, Any] = {}  # signal -> the handler it goes on to after saving
        self.loop: dict[str, Any] = {}  # the loop's own state, as restored (empty: fresh)

    @property
    def active(self) -> bool:
        return self.scope is not None

    def restore(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                generators: Sequence[torch.Generator] = (),
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> int:
        """Load the newest readable checkpoint into the objects (the loop's own state into
        :attr:`loop`); the number of epochs already done, where the loop starts."""
        if self.scope is None:
            return 0
        import torch

        best: dict[str, Any] | None = None
        for data in self.scope.store.read(self.name):
            try:
                state = torch.load(io.BytesIO(data), weights_only=True)
            except Exception as exc:  # a torn slot (kill -9 during its write): use the other
                log.warning("checkpoint %s: unreadable slot skipped (%s)", self.name, exc)
                continue
            if best is None or state["epoch"] > best["epoch"]:
                best = state
        if best is None:
            return 0
        model.load_state_dict(best["model"])
        optimizer.load_state_dict(best["optimizer"])
        if scheduler is not None and best.get("scheduler") is not None:
            scheduler.load_state_dict(best["scheduler"])
        self.loop = dict(best.get("loop") or {})
        torch.set_rng_state(best["torch_rng"])
        for generator, saved in zip(generators, best["generators"], strict=True):
            generator.set_state(saved)
        self._writes = int(best["writes"])
        epoch = int(best["epoch"])
        if epoch > 0:
            self.scope.resumed[self.name] = epoch
        log.info("checkpoint %s: resuming at epoch %d of %d", self.name, epoch, self.epochs)
        return epoch

    def epoch_done(self, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   generators: Sequence[torch.Generator] = (),
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                   loop: Mapping[str, Any] | None = None, final: bool = False) -> None:
        """``epoch`` epochs are complete: snapshot them, save when due (always at the end:
        the last epoch, or ``final`` when the loop stops early). ``loop``: the loop's own
        state (tensors, numbers, strings, lists and dicts of them), given back by
        :meth:`restore` as :attr:`loop`."""
        if self.scope is None:
            return
        import torch

        buffer = io.BytesIO()
        torch.save({"epoch": epoch, "writes": self._writes + 1, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                    "generators": [g.get_state() for g in generators],
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "loop": dict(loop or {})}, buffer)
        self._snapshot = (epoch, buffer.getvalue())
        since = time.monotonic() - self._last_save
        due = since >= max(self.scope.min_interval_s, OVERHEAD * self._save_cost)
        if due or final or epoch >= self.epochs or self._stop:
            self.save()
        if self._stop:
            self._stop_now()

    def save(self) -> None:
        """Write the newest snapshot (if not written yet) to the next slot."""
        if self.scope is None or self._snapshot is None:
            return
        epoch, data = self._snapshot
        self._saving = True
        started = time.monotonic()
        try:
            self.scope.store.write(self.name, self._writes % SLOTS, data, epoch)
        finally:
            self._saving = False
        self._writes += 1
        self._snapshot = None
        self._last_save = time.monotonic()
        self._save_cost = self._last_save - started
        self.scope.saved[self.name] = epoch

    def _preempted(self) -> Preempted:
        epoch = self.scope.saved.get(self.name, 0) if self.scope else 0
        cause = signal.Signals(self._signal).name if self._signal else "stopped"
        return Preempted(f"training preempted ({cause}): {self.name} saved at epoch {epoch} "
                         f"of {self.epochs}; a retry of the same run resumes there")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True
        self._signal = signum
        if self._saving:
            return  # the save in progress finishes, then epoch_done stops
        self.save()
        self._stop_now()

    def _stop_now(self) -> None:
        """After the save: SIGTERM raises :class:`Preempted`; SIGINT goes on to the handler
        it interrupted (Dagster's step interrupt, or KeyboardInterrupt)."""
        interrupted = self._chained.get(self._signal) if self._signal else None
        if callable(interrupted):
            interrupted(self._signal, None)
        raise self._preempted()  # the handler only took note: stop training all the same


def _interrupt_handler(current: Any) -> Any:
    """What SIGINT should go on to after the save (None: SIGINT is ignored, leave it)."""
    if current == signal.SIG_IGN:
        return None
    return current if callable(current) else signal.default_int_handler


@contextmanager
def resumable(unit: Mapping[str, Any], epochs: int) -> Iterator[Checkpoint]:
    """A :class:`Checkpoint` for the training loop ``unit`` describes (its family, params,
    seed, sub-model: whatever makes it distinct within the work), with signal handlers while
    the loop runs (main thread only): SIGTERM saves and raises :class:`Preempted`; SIGINT
    saves, then goes on to the handler it replaced. The second matters under Dagster's
    multiprocess executor: Kubernetes sends SIGTERM to the run worker (the pod's process),
    which interrupts each step process with SIGINT (Dagster's step interrupt)."""
    active = current()
    checkpoint = Checkpoint(active, _digest(dict(unit), 8), epochs)
    if active is None or threading.current_thread() is not threading.main_thread():
        yield checkpoint
        return
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, checkpoint._on_signal)}
    interrupt = _interrupt_handler(signal.getsignal(signal.SIGINT))
    if interrupt is not None:
        checkpoint._chained[signal.SIGINT] = interrupt
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, checkpoint._on_signal)
    try:
        yield checkpoint
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
