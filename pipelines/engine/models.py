"""Several model families on one device: one engine per family behind the one engine
interface, each job going to the family its request names.

Because the set is itself an engine (load → warm up → run → close, `info`, `loras`), every
transport carries it unchanged: a worker thread, a child process per device, a Ray
replica, a group of processes forming one engine. A transport never needs to know how
many models its engine serves.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from pipelines.contract import EditRequest, EditResult, EngineInfo, RunControl
from pipelines.errors import InvalidInput

log = logging.getLogger(__name__)


class ModelSetEngine:
    """One engine per model family, by family name, on one device. Its info is the first
    family's with every family's in `models`; its LoRA catalog is the one family's that
    switches LoRAs (Kontext's)."""

    def __init__(self, engines: dict[str, object], device_bytes: int | None = None) -> None:
        if not engines:
            raise InvalidInput("models: no model family to serve")
        self.engines = dict(engines)
        # Every family's weights stay resident: on CUDA the set is refused here, with the
        # numbers, when they cannot share the device (before any weight is read).
        plans = {name: getattr(engine, "memory", None) for name, engine in engines.items()}
        self.memory_report = None
        if all(plan is not None for plan in plans.values()):
            from pipelines.memory.models import check_model_set
            from pipelines.memory.plan import device_total_bytes

            self.memory_report = check_model_set(plans, device_bytes or device_total_bytes())
        #: The LoRA folder of the family that switches LoRAs (Kontext), if any.
        self.loras = next((engine.loras for engine in self.engines.values()
                           if getattr(engine, "loras", None) is not None), None)
        self.info = self._describe()

    def _describe(self) -> EngineInfo:
        parts = tuple(engine.info for engine in self.engines.values())
        first = parts[0]
        extra = dict(first.extra)
        if self.memory_report:
            extra["memory_plan"] = self.memory_report
        return replace(first, model=" + ".join(part.model for part in parts), extra=extra,
                       models=parts)

    def engine_for(self, name: str):
        """The engine of family `name`; InvalidInput naming the families served."""
        try:
            return self.engines[name]
        except KeyError:
            served = ", ".join(self.engines)
            raise InvalidInput(f"model {name!r} is not served by this engine (it serves "
                               f"{served})") from None

    def load(self) -> None:
        """Load every family's weights onto the device, in order."""
        for engine in self.engines.values():
            engine.load()
        self.info = self._describe()

    def warmup(self) -> None:
        """Warm up every family (each compiles and calibrates its own)."""
        for engine in self.engines.values():
            engine.warmup()
        self.info = self._describe()

    def run(self, request: EditRequest, control: RunControl) -> EditResult:
        """Run the request on its family's engine."""
        return self.engine_for(request.model).run(request, control)

    def steady_step_seconds(self) -> float | None:
        """The slowest family's steady step time (the server's estimates stay on the safe
        side when jobs of several families share the queue)."""
        known = [value for engine in self.engines.values()
                 if (value := engine.steady_step_seconds()) is not None]
        return max(known) if known else None

    def close(self) -> None:
        """Release every family's device memory."""
        for engine in self.engines.values():
            engine.close()
