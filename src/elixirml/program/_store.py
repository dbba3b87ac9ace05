"""``em.Store``: save programs as versions and load them back, on top of the resource store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import LoadError
from ..store import ResourceStore
from ._code import class_origin, resolve_class
from ._module import Module
from ._persist import build_program
from ._serialize import configuration_to_json


def space_json(program: Module) -> dict[str, Any]:
    """The program's variable space as stored rules (name -> encoding)."""
    return program.variable_space().encoding()


class Store(ResourceStore):
    """The ElixirML store: programs and their versions, optimization runs, evaluations, traces.

    ``store = em.Store()`` opens the configured store (``em.configure(store=...)``,
    ``$ELIXIRML_STORE``, or a SQLite file in the user's data directory); ``em.Store(url)``
    any SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://...``).

    Two things carry the name: ``em.Store`` (this class, defined in ``elixirml.program``) is
    the one users open, and it saves and loads *programs* (Modules, rebuilt as their class).
    It extends :class:`elixirml.store.ResourceStore`, the database layer (the package
    ``elixirml.store``: tables, Alembic migrations, versions, runs, trials, evaluations, spans
    and jobs as JSON records), which sits below the program layer and knows nothing of Modules.

    Example::

        store = em.Store("sqlite:///programs.db")
        v1 = store.save(program, "qa", tags=["baseline"])
        program = store.load("qa")            # latest, or version=1, or version="#<id>"
    """

    def save(
        self,
        program: Module,
        name: str,
        *,
        tags: list[str] | None = None,
        message: str = "",
        parent: int | str | None = "latest",
    ) -> dict[str, Any]:
        """Save ``program`` as the next version of ``name``; returns the version's description.

        The version chains to ``parent`` (the latest version by default), and its configuration
        is validated against the program's variable space. It records the program's class and
        where it came from (its module, or its source file for a class of a script or of a
        file given to the CLI), so :meth:`load` finds it in a new process.

        Raises:
            ConfigurationError: no other process could find the program's class (defined inside a
                function or in an interactive session); the message names the class and the fix.
        """
        cls_path, cls_file = class_origin(type(program))
        summary = "; ".join(f"{n}: {p.signature.signature}" for n, p in program.named_predictors())
        info = self.add_version(
            name,
            program.dump_state(),
            configuration=configuration_to_json(program.configuration()),
            space=space_json(program),
            class_path=cls_path,
            class_file=cls_file,
            signature_summary=summary,
            tags=tags,
            message=message,
            parent=parent,
        )
        program.__dict__["_elixirml_stored"] = (info["name"], info["number"])  # named so in telemetry
        return info

    def load(
        self, name: str, version: int | str = "latest", *, cls: type[Module] | None = None, import_code: bool = True
    ) -> Module:
        """Build a stored version as the class it was saved from.

        The state is JSON and is never executed. The class is found as it was recorded at save
        time: already imported, else its module is imported (or, for a class of a script or of a
        file given to the CLI, that source file, with its ``__main__`` block not run).

        Args:
            name: the program name.
            version: ``"latest"``, a version number, or ``"#<id>"``.
            cls: build this class instead of the recorded one.
            import_code: False: import nothing; the recorded class must already be imported.

        Raises:
            LoadError: no such version, the class cannot be found (the message says why), or the
                state does not fit it.
        """
        info = self.get_version(name, version)
        if cls is None:
            found = resolve_class(info["class_path"], info.get("class_file"), may_import=lambda: import_code)
            if found is not None and not (isinstance(found, type) and issubclass(found, Module)):
                raise LoadError(f"{info['class_path']!r} names {found!r}, which is not an ElixirML Module")
            cls = found
        program = build_program({"class": info["class_path"], "state": info["state"]}, cls)
        program.__dict__["_elixirml_stored"] = (info["name"], info["number"])  # named so in telemetry
        return program

    def recording(self, program_name: str, inputs: dict[str, Any]) -> contextlib.AbstractContextManager[RunRecording]:
        """Record the run made inside the ``with`` block as a trace (see :func:`recording`).

        Example::

            with store.recording("qa", {"question": q}) as rec:
                rec.outputs = program(question=q).to_dict()
            store.execution(rec.execution_id)   # inputs, outputs, predictor calls, span tree
        """
        return recording(self, program_name, inputs)


def configured_store() -> Store | None:
    """The store set with ``em.configure(store=...)`` or ``$ELIXIRML_STORE``; None when neither is set."""
    import os

    from ..settings import current

    setting = current().store
    if isinstance(setting, Store):
        return setting
    if setting is None and not os.environ.get("ELIXIRML_STORE"):
        return None
    return Store(setting)


def trace_entry_json(entry: Any) -> dict[str, Any]:
    """One trace entry as the store keeps it: inputs, outputs, rendered messages, raw completion, timing."""
    import json

    sig = getattr(entry.predictor, "signature", None)
    data: dict[str, Any] = json.loads(
        json.dumps(
            {
                "predictor": type(entry.predictor).__name__,
                "signature": sig.signature if sig is not None else "",
                "inputs": entry.inputs,
                "outputs": entry.prediction.to_dict() if entry.prediction is not None else None,
                "messages": entry.messages,
                "completion": entry.completion,
                "error": f"{type(entry.error).__name__}: {entry.error}" if entry.error is not None else "",
                "cached": entry.cached,
                "usage": entry.usage,
                "latency": entry.latency,
                "assertions": entry.assertions,
            },
            default=str,
        )
    )
    return data


class RunRecording:
    """What :func:`recording` collects while a run is in progress; set :attr:`outputs` before the block ends.

    Attributes:
        outputs: the run's output values (a dict).
        execution_id: the stored execution's id, once the block has ended.
    """

    def __init__(self) -> None:
        self.outputs: dict[str, Any] = {}
        self.execution_id: int | None = None


@contextlib.contextmanager
def recording(store: ResourceStore, program_name: str, inputs: dict[str, Any]) -> Iterator[RunRecording]:
    """Record the run inside the block as a stored execution: trace entries, span tree, usage, latency.

    Works for sync and async calls, streamed ones included (the trace, the span recorder and
    the usage tracker follow the tasks started inside). A run that raises is stored with its
    error, and the error propagates.

    Example::

        with recording(store, "qa", {"question": q}) as rec:
            rec.outputs = program(question=q).to_dict()
        store.execution(rec.execution_id)
    """
    import json
    import time

    from ..lm import track_usage
    from ..runtime import SpanRecorder
    from ..settings import context, current
    from ._trace import trace

    record = RunRecording()
    recorder = SpanRecorder()
    start = time.perf_counter()
    error = ""
    with trace() as entries, track_usage() as usage, context(callbacks=[*current().callbacks, recorder]):
        try:
            yield record
        except Exception as exc:
            # a lone surrogate (an LM's answer can carry one) becomes its escape: UTF-8 cannot hold it
            error = f"{type(exc).__name__}: {exc}".encode("utf-8", "backslashreplace").decode("utf-8")
            raise
        finally:
            record.execution_id = store.add_execution(
                program_name=program_name,
                inputs=json.loads(json.dumps(inputs, default=str)),
                outputs=json.loads(json.dumps(record.outputs, default=str)),
                trace=[trace_entry_json(e) for e in entries],
                spans=recorder.spans,
                error=error,
                latency=time.perf_counter() - start,
                tokens=usage.total_tokens,
            )
