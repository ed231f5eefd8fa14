"""Engine factories for engines that run in child processes (--device-workers process) or
Ray Serve replicas: module-level, so they pickle by reference.

`crashing_tiny_engine` is the real tiny engine, except that a job whose prompt contains
CRASH kills its process on the spot (as a CUDA fault or the OOM killer would): the way to
prove that only that job fails and that the device comes back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipelines.contract import EditRequest, EditResult, EngineEvent, RunControl
from server.engine_build import build_engine
from server.settings import Settings

CRASH = "crash this device"


class CrashOnPrompt:
    """Wraps an engine; exits its process mid-job when the prompt says CRASH."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        if CRASH in request.prompt:
            outer = control

            def crash(event: EngineEvent) -> None:
                outer.send(event)
                if event.kind == "step":
                    os._exit(9)  # after its first step: the job was really running

            control = RunControl(cancel=outer.cancel, emit=crash)
        return self.engine.run(request, control)


def crashing_tiny_engine(settings: Settings, device: str | None):
    """The settings' (demo) engine on `device`, wrapped in CrashOnPrompt."""
    return CrashOnPrompt(build_engine(settings, device))


class GatedEngine:
    """Wraps an engine; while `<gate>/hold` exists, a job waits after its first step, and
    says so (and where) with a file `<gate>/held-<pid>-<seed>`: how tests hold jobs in
    other processes (Ray replicas) and learn which process runs them."""

    def __init__(self, engine, gate: Path) -> None:
        self.engine = engine
        self.gate = gate

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        hold = self.gate / "hold"

        def gate(event: EngineEvent) -> None:
            control.send(event)
            if event.kind == "step" and event.step == 1 and hold.exists():
                (self.gate / f"held-{os.getpid()}-{request.seed}").write_text("")
                while hold.exists() and not control.cancelled:
                    time.sleep(0.01)  # another process holds the gate: a file is all we share

        return self.engine.run(request, RunControl(cancel=control.cancel, emit=gate))


def gated_tiny_engine(settings: Settings, gate: str, device: str | None):
    """The settings' (demo) engine on `device`, wrapped in GatedEngine."""
    return GatedEngine(build_engine(settings, device), Path(gate))


def crashing_gated_tiny_engine(settings: Settings, gate: str, device: str | None):
    """The settings' (demo) engine on `device`, crashing on CRASH, held at `gate`."""
    return CrashOnPrompt(GatedEngine(build_engine(settings, device), Path(gate)))


def group_rank_engine(settings: Settings, gate: str, device: str, rank: int,
                      init_method: str):
    """Rank `rank` of a context-parallel group under the settings: rank 0 held at `gate`
    (it speaks for the group), rank 1 crashing on CRASH (a rank of the group dies, not the
    one the server talks to)."""
    from server.engine_build import build_rank_engine

    engine = build_rank_engine(settings, device, rank, init_method)
    if rank == 0:
        return GatedEngine(engine, Path(gate))
    return CrashOnPrompt(engine) if rank == 1 else engine


class NoRecompileAfterWarmup:
    """Wraps an engine; once warmed up, any recompile in its process is an error."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def warmup(self) -> None:
        import torch

        self.engine.warmup()
        torch._dynamo.config.error_on_recompile = True


def compiled_rank_engine(tiny_dir: str, backend: str, device: str, rank: int,
                         init_method: str):
    """Rank `rank` of a CPU group on the tiny checkpoint, its blocks compiled with
    `backend` (dynamic shapes, as the GPU tiers), erring on any recompile after warm-up."""
    import dataclasses

    from pipelines.engine.kontext import KontextEngine
    from pipelines.engine.options import EngineOptions
    from pipelines.levers.plan import CompileSpec, plan_engine
    from pipelines.parallel.options import ContextParallel
    from pipelines.weights.source import resolve_weights

    plan = dataclasses.replace(plan_engine("exact", "full", "cpu", None),
                               compile=CompileSpec(backend=backend))
    return NoRecompileAfterWarmup(KontextEngine(resolve_weights(tiny_dir), EngineOptions(
        device=device, demo=True, plan=plan, warmup_steps=1, warmup_size=(512, 512),
        context_parallel=ContextParallel(2, "ulysses", rank, init_method))))
