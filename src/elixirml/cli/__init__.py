"""The ``elixirml`` command line.

Exit codes: 0 success, 1 a provider or runtime failure, 2 a usage error (bad program
reference, bad data, bad option). Errors print one line without a traceback unless
``--debug`` is given.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec

import typer

from .. import errors
from ..settings import configure

__all__ = ["app", "main"]

app = typer.Typer(
    name="elixirml",
    help="Declarative LM programs: run, evaluate, optimize, and inspect them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: a flag reads as a flag (the rich help shows `--debug <bool>`)
)
runs_app = typer.Typer(help="Optimization runs in the store.", no_args_is_help=True, rich_markup_mode=None)
programs_app = typer.Typer(
    help="Programs and their versions in the store.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(runs_app, name="runs")
app.add_typer(programs_app, name="programs")
config_app = typer.Typer(
    help="The layered configuration (defaults, file, environment, code).", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(config_app, name="config")

METRICS = ("exact_match", "f1", "contains", "numeric_match")
P = ParamSpec("P")

OPTIMIZERS = ("labeled", "bootstrap", "random", "mipro", "variable")


class _State:
    debug = False


def _fail(exc: BaseException) -> None:
    if _State.debug:
        raise exc
    code = 2 if isinstance(exc, (errors.UserError, FileNotFoundError, ValueError)) else 1
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(code)


def _reports_errors(command: Callable[P, None]) -> Callable[P, None]:
    """Run a command so that an error prints one line (and its exit code) instead of a traceback.

    ``--debug`` shows the traceback instead; ``typer.Exit`` passes through.
    """

    @functools.wraps(command)
    def run_command(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except typer.Exit:
            raise
        except BrokenPipeError:  # the reader stopped early (`elixirml inspect` piped into head): stop quietly
            _silence_stdout()
            raise typer.Exit(141) from None  # 128 + SIGPIPE, the shell's code for a writer whose reader left
        except Exception as exc:
            _fail(exc)

    return run_command


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail once more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (a test runner's capture): nothing to flush
        pass
    finally:
        os.close(devnull)


@app.callback()
@_reports_errors
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    lm: Annotated[
        str | None,
        typer.Option(
            "--lm",
            help="LM to use: 'local', 'openai/<model>', ... or 'pkg.module:factory' "
            "(default: the configured lm, else local).",
        ),
    ] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store URL (default: $ELIXIRML_STORE or a local file).")
    ] = None,
) -> None:
    """ElixirML command line."""
    _State.debug = debug
    if lm is not None:
        configure(lm=_lm_from_option(lm))
    if store is not None:
        configure(store=store)


def _lm_from_option(spec: str) -> Any:
    """The LM ``--lm`` names: ``pkg.module:factory`` calls that function (as the job workers do), else ``LM(spec)``."""
    module, sep, attribute = spec.partition(":")
    if sep and "/" not in module and module.replace(".", "").replace("_", "").isalnum():
        here = os.getcwd()
        if here not in sys.path:  # the folder the command runs in, as uvicorn's module:attribute does
            sys.path.insert(0, here)
        try:
            factory = getattr(importlib.import_module(module), attribute, None)
        except ImportError as exc:
            raise errors.ConfigurationError(
                f"--lm {spec!r}: cannot import {module!r} ({exc}); run the command in its folder, "
                "put that folder on PYTHONPATH, or name a model"
            ) from exc
        if not callable(factory):
            raise errors.ConfigurationError(
                f"--lm {spec!r}: {module} has no callable {attribute!r}; name a function that returns an LM"
            )
        made = factory()
        if made is None:  # configure(lm=None) would fall back to the default LM without a word
            raise errors.ConfigurationError(
                f"--lm {spec!r}: {module}.{attribute}() returned None; make it return an LM (an em.LM, or a "
                "model name such as 'openai/<model>')"
            )
        return made
    from ..lm import LM

    return LM(spec)


def _ensure_lm() -> None:
    from ..settings import current

    if current().lm is None:
        from ..lm import LM

        configure(lm=LM("local"))


def load_program(reference: str) -> Any:
    """A program from ``path.py:Name`` (a class, built without arguments, or an instance) or a stored name."""
    path, sep, name = reference.rpartition(":")
    if sep and path.endswith(".py"):
        from ..program import import_source_file

        module = import_source_file(path)  # its `if __name__ == "__main__":` block does not run
        target = getattr(module, name, None)
        if target is None:
            raise errors.LoadError(f"{path} has no {name!r}")
        return target() if isinstance(target, type) else target
    from ..program import Store

    return Store().load(reference)


def load_data(reference: str, inputs: str | None, limit: int | None) -> list[Any]:
    """Examples from a .jsonl/.csv/.tsv file or a bundled set (``sst2``, ``gsm8k``, ``gsm8k:test``)."""
    from ..data import load_examples

    return load_examples(reference, inputs, limit)


def make_metric(name: str, field: str | None, pred_field: str | None) -> Any:
    """A built-in metric by name, comparing ``field`` (and ``pred_field`` in the prediction)."""
    from ..evaluation import metric_by_name

    return metric_by_name(name, field, pred_field)


def _parse_pairs(pairs: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise errors.ConfigurationError(f"{what} must look like key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command()
@_reports_errors
def run(
    program: Annotated[str, typer.Argument(help="path.py:Name or a stored program name")],
    input: Annotated[
        list[str], typer.Option("--input", "-i", metavar="KEY=VALUE", help="An input as key=value (repeatable).")
    ] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as one JSON object.")] = False,
) -> None:
    """Run a program once and print its outputs (`field: value` lines; --json: JSON); the trace goes to the store.

    A file's `if __name__ == "__main__":` block does not run: only the program does.
    """
    _ensure_lm()
    target = load_program(program)
    inputs = _parse_pairs(input, "--input")
    store = _open_store()
    with store.recording(program, inputs) as rec:
        result = target(**inputs)
        outputs = rec.outputs = result.to_dict() if hasattr(result, "to_dict") else {"output": result}
    store.close()
    if as_json:
        typer.echo(json.dumps(outputs, default=str, ensure_ascii=False))
    else:
        for key, value in outputs.items():
            text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
            typer.echo(f"{key}: {text}")


@app.command("eval")
@_reports_errors
def eval_command(
    program: Annotated[str, typer.Argument(help="path.py:Name or a stored program name")],
    data: Annotated[str, typer.Argument(help="a .jsonl/.csv/.tsv file, or sst2, gsm8k, gsm8k:test")],
    metric: Annotated[str, typer.Option(help=f"One of {', '.join(METRICS)}.")] = "exact_match",
    field: Annotated[str | None, typer.Option(help="The example field to compare.")] = None,
    pred_field: Annotated[str | None, typer.Option(help="The prediction field, if named differently.")] = None,
    inputs: Annotated[str | None, typer.Option(help="Input fields, comma-separated.")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N examples.")] = None,
    concurrency: Annotated[int, typer.Option(help="Examples in flight at once.")] = 8,
) -> None:
    """Evaluate a program on a dataset and print the summary."""
    _ensure_lm()
    from ..evaluation import evaluate

    target = load_program(program)
    examples = load_data(data, inputs, limit)
    result = evaluate(target, examples, make_metric(metric, field, pred_field), concurrency=concurrency)
    typer.echo(result.table(limit=10))


@app.command()
@_reports_errors
def optimize(
    program: Annotated[str, typer.Argument(help="path.py:Name or a stored program name")],
    data: Annotated[str, typer.Argument(help="training data (file or bundled set)")],
    optimizer: Annotated[str, typer.Option(help=f"One of {', '.join(OPTIMIZERS)}.")] = "mipro",
    metric: Annotated[str, typer.Option(help=f"One of {', '.join(METRICS)}.")] = "exact_match",
    field: Annotated[str | None, typer.Option(help="The example field to compare.")] = None,
    pred_field: Annotated[str | None, typer.Option(help="The prediction field, if named differently.")] = None,
    inputs: Annotated[str | None, typer.Option(help="Input fields, comma-separated.")] = None,
    valset: Annotated[str | None, typer.Option(help="Validation data (default: the training data).")] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N examples of each set.")] = None,
    budget: Annotated[list[str], typer.Option(help="max_lm_calls=N, max_cost=X, max_trials=N, timeout=S.")] = [],  # noqa: B006
    save: Annotated[str | None, typer.Option(help="Store name for the result (default: the class name).")] = None,
    auto: Annotated[str, typer.Option(help="MIPRO preset: light, medium or heavy.")] = "light",
) -> None:
    """Optimize a program; the result is saved in the store as a new version."""
    _ensure_lm()
    target = load_program(program)
    train = load_data(data, inputs, limit)
    val = load_data(valset, inputs, limit) if valset else None
    scorer = make_metric(metric, field, pred_field)
    from ..optimizers import optimizer_by_name

    chosen: Any = optimizer_by_name(optimizer, scorer, **({"auto": auto} if optimizer == "mipro" else {}))
    limits = _parse_pairs(budget, "--budget")
    configure(store=_store_setting())
    name = save or program.rpartition(":")[2]
    chosen.compile(target, trainset=train, valset=val, save_as=name, **limits)
    result = chosen.last_result
    typer.echo(result.summary())
    if result.save_error is not None:
        typer.echo(f"run id: {result.run_id}")
        raise errors.StoreError(
            f"the optimized program was not saved as {name!r} (run {result.run_id}): {result.save_error}"
        ) from result.save_error
    if result.version is not None:
        typer.echo(f"saved as {name} v{result.version['number']}: `elixirml run {name}` runs it")
    typer.echo(f"run id: {result.run_id}")


def _store_setting() -> str:
    from ..store import store_url

    return store_url()


def _open_store() -> Any:
    from ..program import Store

    return Store()


@runs_app.command("list")
@_reports_errors
def runs_list(
    program: Annotated[str | None, typer.Option(help="Only runs of this program.")] = None,
) -> None:
    """List optimization runs, newest first."""
    store = _open_store()
    rows = store.runs(program=program)
    if not rows:
        typer.echo(
            "no optimization runs (`elixirml optimize ...` records one; `elixirml inspect --list` lists program runs)"
        )
    for r in rows:
        best = f"{r['best_score']:.1f}%" if r["best_score"] is not None else "-"
        typer.echo(
            f"{r['id']}  {r['optimizer']:<18} {r['status']:<9} best {best:<7} trials {r['trials']:<4} "
            f"calls {r['lm_calls']:<6} {r['program'] or ''}"
        )


@runs_app.command("show")
@_reports_errors
def runs_show(run_id: Annotated[str, typer.Argument(help="The run id.")]) -> None:
    """Show one run with its trials."""
    info = _open_store().run(run_id)
    typer.echo(f"run {info['id']}: {info['optimizer']} on {info['program']} ({info['status']})")
    typer.echo(f"best {info['best_score']}; {info['lm_calls']} LM calls, {info['tokens']} tokens, ${info['cost']:.4f}")
    for t in info["trial_list"]:
        typer.echo(
            f"  #{t['number']:<3} {t['score']:6.1f}%  {'full' if t['full'] else 'mini'}  calls {t['lm_calls']:<5} "
            f"{t['status']}"
        )


@programs_app.command("list")
@_reports_errors
def programs_list() -> None:
    """List stored programs."""
    rows = _open_store().programs()
    if not rows:
        typer.echo("no programs")
    for p in rows:
        count = f"{p['versions']} version{'' if p['versions'] == 1 else 's'}"
        typer.echo(f"{p['name']:<24} v{p['latest']:<4} ({count})  {p['signature']}")


@programs_app.command("show")
@_reports_errors
def programs_show(
    name: Annotated[str, typer.Argument(help="The program name.")],
    version: Annotated[str, typer.Option(help="latest, a number, or #id")] = "latest",
) -> None:
    """Show a stored version: configuration and predictors."""
    info = _open_store().get_version(name, version)
    parent = "no parent" if info["parent"] is None else f"parent v{info['parent']}"
    typer.echo(f"{info['name']} v{info['number']} ({parent}) {info['created_at']} tags {info['tags']}")
    typer.echo(f"class {info['class_path']}" + (f" from {info['class_file']}" if info.get("class_file") else ""))
    typer.echo(
        json.dumps(
            {
                "configuration": {k: v for k, v in info["configuration"].items() if not k.endswith("demos")},
                "state": info["state"],
            },
            indent=2,
            default=str,
        )[:4000]
    )


@programs_app.command("diff")
@_reports_errors
def programs_diff(
    name: Annotated[str, typer.Argument(help="The program name.")],
    a: Annotated[str, typer.Argument(help="The first version.")],
    b: Annotated[str, typer.Argument(help="The second version.")],
) -> None:
    """What changed between two versions."""
    changes = _open_store().diff(name, a, b)
    if not changes["class"] and not changes["configuration"] and not changes["predictors"]:
        typer.echo("no differences")
    if changes["class"]:
        typer.echo(f"class: {changes['class']['from']} -> {changes['class']['to']}")
    for key, change in changes["configuration"].items():
        typer.echo(f"{key}: {change['from']!r} -> {change['to']!r}")
    for predictor, entry in changes["predictors"].items():
        for what, change in entry.items():
            typer.echo(f"{predictor}.{what}: {change['from']!r} -> {change['to']!r}")


@app.command()
@_reports_errors
def inspect(
    number: Annotated[
        int | None,
        typer.Argument(help="The traced run's number, as `elixirml inspect --list` shows it (default: the last)."),
    ] = None,
    list_runs: Annotated[
        bool, typer.Option("--list", help="List the traced runs, newest first, with their numbers.")
    ] = False,
    limit: Annotated[int, typer.Option(help="With --list: how many to show.")] = 20,
) -> None:
    """Show the trace of a program run (`elixirml run`, the console's "try it"): the last, or number N."""
    store = _open_store()
    if list_runs:
        rows = store.executions(limit=limit)
        if not rows:
            typer.echo("no traced runs yet; `elixirml run ...` records one")
        for row in rows:
            failed = f"  error: {row['error']}" if row["error"] else ""
            typer.echo(
                f"#{row['id']:<5} {row['created_at'] or '':<26} {row['program']}  {row['steps']} step(s)  "
                f"inputs {row['inputs']}{failed}"
            )
        if rows:
            typer.echo("`elixirml inspect N` shows run #N")
        return
    try:
        last = store.last_execution() if number is None else store.execution(number)
    except errors.LoadError:
        raise errors.LoadError(
            f"No traced run #{number} in this store: `elixirml inspect --list` lists the runs recorded there"
        ) from None
    if last is None:
        typer.echo("no traced runs yet; `elixirml run ...` records one")
        return
    typer.echo(f"run #{last['id']} of {last['program']}: inputs {last['inputs']} -> {last['outputs']}")
    for i, step in enumerate(last["trace"], 1):
        typer.echo(f"=== step {i}: {step['predictor']}({step['signature']})")
        typer.echo(f"  inputs:  {step['inputs']}")
        typer.echo(f"  outputs: {step['outputs']}")
        for message in step["messages"]:
            typer.echo(f"  --- {message.get('role')}: {str(message.get('content'))[:500]}")


@app.command()
@_reports_errors
def console(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    store_url: Annotated[
        str | None, typer.Option("--store", help="Store URL (default: the global --store or $ELIXIRML_STORE).")
    ] = None,
    token: Annotated[
        list[str], typer.Option("--token", help="A login token (repeatable; or $ELIXIRML_SERVE_TOKENS).")
    ] = [],  # noqa: B006
    allowed_host: Annotated[
        list[str],
        typer.Option("--allowed-host", help="A name the Host header may carry besides loopback names (repeatable)."),
    ] = [],  # noqa: B006
) -> None:
    """Open the web console over the store (programs, runs, evaluations, traces, "try it")."""
    from .._http import is_loopback
    from ..console import create_console_app
    from ..settings import current

    try:
        import uvicorn
    except ImportError:
        raise errors.MissingDependencyError("uvicorn", "serve", "elixirml console") from None
    lm: Any = None
    if current().lm is None:
        from ..lm import LM

        lm = lambda: LM("local")  # noqa: E731  built at the first "try it", not at start
    app_ = create_console_app(
        store_url or _store_setting(), lm=lm, tokens=token or None, allowed_hosts=[*allowed_host, host]
    )
    if not is_loopback(host) and not app_.state.console_tokens:
        raise errors.ConfigurationError(
            f"The console on {host} (not a loopback address) needs a login: pass --token or set "
            "ELIXIRML_SERVE_TOKENS (comma-separated), or bind to 127.0.0.1."
        )
    typer.echo(f"ElixirML console on http://{host}:{port}/ (Ctrl+C stops it)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
@_reports_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the plot.")] = Path("."),
    quick: Annotated[bool, typer.Option(help="A smaller run (fewer examples and trials).")] = False,
) -> None:
    """The main job: optimize an SST-2 sentiment program on the embedded model."""
    from ..demo import run_demo

    run_demo(out=out, quick=quick)


@app.command("extensions")
@_reports_errors
def extensions_command(
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind: lms, adapters, metrics, ...")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the installed extensions with their versions and capabilities; broken ones with the reason."""
    from .. import extensions

    infos = extensions.list(kind)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(i) for i in infos], indent=2))
        return
    for info in infos:
        if info.ok:
            caps = ", ".join(info.capabilities) or "-"
            typer.echo(f"{info.kind:<11} {info.name:<16} {info.version:<10} {info.origin:<24} {caps}")
    broken = [i for i in infos if not i.ok]
    if broken:
        typer.echo("\nskipped (broken):")
        for info in broken:
            typer.echo(f"{info.kind:<11} {info.name:<16} {info.origin}: {info.error}")


@config_app.command("show")
@_reports_errors
def config_show(
    profile: Annotated[
        str | None, typer.Option("--profile", help="Show this profile (default $ELIXIRML_PROFILE).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print each effective setting and the layer it came from (secrets masked)."""
    from .. import settings

    settings.reload_config(profile=profile)  # what the file and environment say now
    path, chosen = settings.config_file()
    rows = settings.describe()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "file": path,
                    "profile": chosen,
                    "settings": [{"name": name, "value": value, "layer": layer} for name, value, layer in rows],
                },
                indent=2,
            )
        )
        return
    typer.echo(f"# file: {path or '(none)'}  profile: {chosen}")
    for name, value, layer in rows:
        typer.echo(f"{name} = {value}    [{layer}]")


@app.command("serve")
@_reports_errors
def serve_command(
    program: Annotated[
        list[str], typer.Option("--program", "-p", help="Serve only name or name@version (repeatable).")
    ] = [],  # noqa: B006
    host: Annotated[str, typer.Option(help="Address to bind; non-loopback needs tokens.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    token: Annotated[
        list[str], typer.Option("--token", help="An accepted bearer token (repeatable; or $ELIXIRML_SERVE_TOKENS).")
    ] = [],  # noqa: B006
    allow_module: Annotated[
        list[str], typer.Option("--allow-module", help="Module prefix whose code may be imported (repeatable).")
    ] = [],  # noqa: B006
    allow_path: Annotated[
        list[str],
        typer.Option("--allow-path", help="A .py file or folder whose code may be imported (repeatable)."),
    ] = [],  # noqa: B006
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body accepted.")] = 1_048_576,
    max_concurrency: Annotated[int, typer.Option(help="Requests in flight per token (429 above).")] = 64,
    max_batch: Annotated[int, typer.Option(help="Most inputs per /batch request.")] = 64,
    drain_timeout: Annotated[float, typer.Option(help="Seconds SIGTERM waits for requests in flight.")] = 30.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds a request body may take to arrive (408).")] = 30.0,
    allowed_host: Annotated[
        list[str],
        typer.Option("--allowed-host", help="A name the Host header may carry besides loopback names (repeatable)."),
    ] = [],  # noqa: B006
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(help="Comma-separated proxy addresses whose X-Forwarded-For names the client (default: none)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    console: Annotated[
        bool | None,
        typer.Option("--console/--no-console", help="Mount the web console at / (default: when no tokens are set)."),
    ] = None,
    jobs_lm: Annotated[
        str | None, typer.Option(help="LM of optimization jobs' workers: a model name or pkg.module:factory.")
    ] = None,
    job_lm: Annotated[
        list[str],
        typer.Option("--job-lm", help='NAME=MODEL: an LM a job may name ("proposer_lm": "NAME"); repeatable.'),
    ] = [],  # noqa: B006
) -> None:
    """Serve stored programs over HTTP (run, stream, batch, OpenAI chat completions, deploy, jobs, console)."""
    from .. import serve
    from ..serve import ServeSettings
    from ..settings import current

    job_lms = {}
    for item in job_lm:
        name, sep, model = item.partition("=")
        if not sep or not name or not model:
            raise errors.ConfigurationError(f"--job-lm takes NAME=MODEL (e.g. proposer=openai/gpt-4o), got {item!r}")
        job_lms[name] = model
    sock = serve.listen(host, port)  # a port in use is said at once, before the app is built or a model loads
    try:
        app = serve.create_app(
            programs=program or None,
            lm=current().lm,
            tokens=token or None,
            allow_modules=allow_module,
            allow_paths=allow_path,
            settings=ServeSettings(
                max_body_bytes=max_body_bytes,
                max_concurrency=max_concurrency,
                max_batch=max_batch,
                drain_timeout=drain_timeout,
                read_timeout=read_timeout,
                allowed_hosts=tuple(allowed_host),
            ),
            console=console,
            jobs_lm=jobs_lm,
            job_lms=job_lms,
        )
        serve.run(app, host=host, port=port, log_level=log_level, forwarded_allow_ips=forwarded_allow_ips, sock=sock)
    finally:
        sock.close()


@app.command("deploy")
@_reports_errors
def deploy_command(
    reference: Annotated[str, typer.Argument(help="name@version (name alone: the latest)")],
    server: Annotated[str, typer.Option("--server", help="The server's base URL, e.g. http://127.0.0.1:8000")],
    traffic: Annotated[float | None, typer.Option(help="Deploy as a canary with this share of requests.")] = None,
    reload: Annotated[bool, typer.Option("--reload", help="Re-import the program's code first.")] = False,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Roll back instead (end the canary, or go back).")
    ] = False,
) -> None:
    """Deploy a stored version on a running server (token from $ELIXIRML_SERVE_TOKEN)."""
    from .. import serve

    name, _, version = reference.partition("@")
    if version and not version.isdigit():
        raise errors.ConfigurationError(f"The version in {reference!r} must be a number")
    if rollback:
        answer = serve.rollback(server, name)
    else:
        answer = serve.deploy(server, name, int(version) if version else None, traffic=traffic, reload=reload)
    typer.echo(f"{name}: {answer['message']}")


def main() -> None:
    """Entry point of the ``elixirml`` command."""
    app()
