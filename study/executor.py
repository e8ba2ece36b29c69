"""How a study's trials run: one small interface, one module per executor.

``kind: ray`` (``study.ray_executor``) runs trials in Ray Tune (OptunaSearch with a seeded TPE sampler,
ASHA or FIFO) on a local Ray instance, or on an existing cluster with ``address``; recipes and matched
baselines share one pool of workers. ``kind: local`` (``study.local_executor``) runs the same trials in
this process with plain Optuna, one at a time, for debugging. Either way every trial event goes through
the driver's ``Recorder``, which alone writes the database, one transaction per finished trial.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, ClassVar

from study.spec import StudySpec

if TYPE_CHECKING:
    from study.baselines import BaselineQueue
    from study.recorder import Recorder


class Executor(ABC):
    """``session()`` is held for the whole study (Ray is started once, beside the preparation);
    ``run`` trains the sampled recipes and the queued baselines; ``run_baselines`` the baselines that a
    finished sweep still lacks."""

    kind: ClassVar[str]
    # recipes and baselines finish interleaved: a recipe's gains can be refreshed as soon as it and its
    # baseline have finished (one trial at a time, the baselines run first: the gains come at the end)
    gains_while_running: ClassVar[bool] = False
    # the session takes seconds to start (Ray): the preparation runs in a thread beside it
    slow_session: ClassVar[bool] = False

    def __init__(self, spec: StudySpec, base, cache_dir: str, address: str | None = None):
        self.spec, self.base, self.cache_dir, self.address = spec, base, cache_dir, address

    @abstractmethod
    def slots(self) -> int:
        """How many trials run at once: the denominator of slot utilisation."""

    def node_slots(self) -> int:
        """How many of them run at once on this machine: what the memory check multiplies."""
        return self.slots()

    def session(self) -> AbstractContextManager:
        return nullcontext()

    def preload(self) -> None:
        """Import what ``run`` needs, in the thread that prepares the data while the session starts (so
        that those imports hide behind the session's start rather than follow it)."""

    @abstractmethod
    def run(self, rec: Recorder, finished: dict, baselines: BaselineQueue | None) -> None:
        """The study's recipes (``finished``: recipe number -> stored outcome of a resumed study) and the
        baselines in ``baselines``, as the executor schedules them."""

    @abstractmethod
    def run_baselines(self, rec: Recorder, configs: list) -> None:
        """These matched baselines (none of them stored)."""
