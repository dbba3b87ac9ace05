"""The web console: server-rendered pages over the store, and "try it" streaming a program's answer."""

from collections.abc import AsyncIterator, Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._http import BODY_KEY, SESSION_COOKIE, Guard, GuardPolicy, TokenSet, check_output, json_line, parse_json_body
from .._secrets import redact_text, redact_url, server_secrets
from ..errors import ConfigurationError, ElixirMLError, LoadError, MissingDependencyError, UserError
from ..store import ResourceStore
from . import _views as views

if TYPE_CHECKING:
    from fastapi import FastAPI

PAGE_SIZE = 200


def _require_framework() -> None:
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "fastapi", "serve", "The web console") from None


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("elixirml.console", "templates"),
        autoescape=True,  # every value from the store or a request is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = views.pretty
    env.filters["num"] = lambda v, digits=2: "-" if v is None else f"{float(v):,.{digits}f}"
    env.filters["ms"] = lambda v: "-" if v is None else f"{float(v) * 1000:,.1f} ms"
    env.filters["when"] = lambda v: (v or "")[:19].replace("T", " ")
    env.filters["short"] = lambda v, n=80: v if len(str(v)) <= n else f"{str(v)[: n - 1]}…"
    return env


def create_console_app(
    store: ResourceStore | str | None = None,
    *,
    lm: Any = None,
    title: str = "ElixirML console",
    tokens: Sequence[str] | None = (),
    allowed_hosts: Sequence[str] = (),
    guard: bool = True,
) -> "FastAPI":
    """The web console as an ASGI app (FastAPI), to run with uvicorn or mount in another app.

    Pages: programs and their versions (with a diff of two versions), optimization runs (trial
    scores, the running best, the Pareto front of multi-objective runs), evaluations (score with
    its confidence interval, per-example results, two side by side), traced runs (span tree,
    messages, raw answers), and "try it": a form built from a program's input schema that runs
    the program and streams its answer. Each run made from the console is recorded as a trace.
    Everything is served from the package: no CDN, no build step.

    Args:
        store: an ``em.Store``/``ResourceStore`` or a store URL (default: the configured store).
        lm: the LM "try it" runs programs on: an LM, or a function returning one (called at the
            first run); default: the LM configured with ``em.configure(lm=...)``.
        title: the name in the page header.
        tokens: the login: accepted tokens (at least 8 characters each); None reads
            ``$ELIXIRML_SERVE_TOKENS``; empty: no login. With tokens every page and action needs
            the login (a cookie set at ``/login``, or ``Authorization: Bearer <token>``).
        allowed_hosts: names the ``Host`` header may carry besides loopback names and IP addresses.
        guard: check each request's Host, Origin, login and JSON body (False when an app that
            mounts the console checks them itself, as ``elixirml serve`` does).

    Example::

        app = em.console.create_console_app("sqlite:///catalog.db")
        uvicorn.run(app, host="127.0.0.1", port=8700)

    Raises:
        MissingDependencyError: FastAPI or Jinja2 is missing (the ``serve`` extra).
        ConfigurationError: a token shorter than 8 characters.
    """
    _require_framework()
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from fastapi.staticfiles import StaticFiles

    from ..program import Store

    opened = store if isinstance(store, Store) else Store(store.url if isinstance(store, ResourceStore) else store)
    env = _environment()
    lm_holder: dict[str, Any] = {}

    def current_lm() -> Any:
        from ..lm import LM
        from ..settings import current

        if lm is None:
            return current().lm
        if "lm" not in lm_holder:
            lm_holder["lm"] = lm if isinstance(lm, LM) or not callable(lm) else lm()
        return lm_holder["lm"]

    token_set = TokenSet.from_sources(tokens)
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console_tokens = token_set
    if guard:
        policy = GuardPolicy(
            tokens=token_set,
            allowed_hosts=frozenset(allowed_hosts),
            login_path="/login" if token_set else None,
            public_paths=("/login", "/static/"),
        )
        app.add_middleware(Guard, policy=policy)
    static = resources.files("elixirml.console") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="console-static")

    def render(request: Any, template: str, status: int = 200, **context: Any) -> Any:
        root = request.scope.get("root_path", "").rstrip("/")
        html = env.get_template(template).render(
            root=root,
            title=title,
            store_url=redact_url(opened.engine.url.render_as_string(hide_password=True)),
            path=request.url.path,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    @app.exception_handler(LoadError)
    def not_found(request: Any, exc: LoadError) -> Any:
        return render(request, "error.html", 404, heading="Not found", message=str(exc))

    @app.exception_handler(UserError)
    def refused(request: Any, exc: UserError) -> Any:
        return render(request, "error.html", 400, heading="Cannot show this", message=str(exc))

    @app.exception_handler(ElixirMLError)
    def failed(request: Any, exc: ElixirMLError) -> Any:
        return render(request, "error.html", 500, heading="The store failed", message=str(exc))

    # ------------------------------------------------------------------ login
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request) -> Any:
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(env.get_template("login.html").render(root=root, title=title))

    @app.post("/login")
    async def login(request: Request) -> Any:
        body = request.scope.get(BODY_KEY)
        token = body.get("token") if isinstance(body, dict) else None
        session = token_set.session(token) if isinstance(token, str) and token_set else None
        if session is None:
            return JSONResponse({"detail": "That token is not accepted."}, status_code=401)
        answer = Response(status_code=204)
        root = request.scope.get("root_path", "").rstrip("/") or "/"
        secure = request.url.scheme == "https"
        answer.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path=root, secure=secure)
        return answer

    @app.post("/logout")
    def logout(request: Request) -> Any:
        answer = Response(status_code=204)
        answer.delete_cookie(SESSION_COOKIE, path=request.scope.get("root_path", "").rstrip("/") or "/")
        return answer

    # ------------------------------------------------------------------ overview and programs
    @app.get("/", response_class=HTMLResponse)
    def overview(request: Request) -> Any:
        return render(
            request,
            "overview.html",
            programs=opened.programs(),
            runs=opened.runs()[:10],
            evaluations=opened.evaluations()[:10],
            executions=opened.executions(limit=10),
        )

    @app.get("/catalog", response_class=HTMLResponse)
    def programs(request: Request) -> Any:
        return render(request, "programs.html", programs=opened.programs())

    @app.get("/catalog/{name}", response_class=HTMLResponse)
    def program(request: Request, name: str) -> Any:
        versions = opened.versions(name)
        return render(
            request,
            "program.html",
            name=name,
            versions=list(reversed(versions)),
            runs=opened.runs(program=name),
            evaluations=opened.evaluations(program=name),
            executions=opened.executions(program=name, limit=20),
        )

    @app.get("/catalog/{name}/versions/{number}", response_class=HTMLResponse)
    def version(request: Request, name: str, number: int) -> Any:
        info = opened.get_version(name, number)
        predictors = [
            {
                "name": key,
                "kind": str(p.get("type", "")),
                "fields": views.fields_text(p),
                "instructions": (p.get("signature") or {}).get("instructions") or "",
                "demos": [views.demo_text(d) for d in p.get("demos") or []],
            }
            for key, p in views.predictors_of(info["state"]).items()
        ]
        return render(
            request,
            "version.html",
            name=name,
            info=info,
            variables=views.configuration_values(info["configuration"]),
            predictors=predictors,
            versions=opened.versions(name),
        )

    @app.get("/catalog/{name}/diff", response_class=HTMLResponse)
    def diff(request: Request, name: str, a: int, b: int) -> Any:
        left, right = opened.get_version(name, a), opened.get_version(name, b)
        changes = opened.diff(name, a, b)
        return render(
            request,
            "diff.html",
            name=name,
            left=left,
            right=right,
            diff=views.version_diff(left, right, changes),
            versions=opened.versions(name),
        )

    # ------------------------------------------------------------------ runs
    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request) -> Any:
        return render(request, "runs.html", runs=opened.runs())

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(request: Request, run_id: str) -> Any:
        info = opened.run(run_id)
        return render(request, "run.html", run=info, view=views.run_view(info))

    # ------------------------------------------------------------------ evaluations
    @app.get("/evaluations", response_class=HTMLResponse)
    def evaluations(request: Request) -> Any:
        items = opened.evaluations()
        for item in items:
            item["interval"] = views.interval(item["summary"], item["score"])
        return render(request, "evaluations.html", evaluations=items)

    @app.get("/evaluations/compare", response_class=HTMLResponse)
    def compare(request: Request, a: int, b: int) -> Any:
        left, right = opened.evaluation(a), opened.evaluation(b)
        return render(request, "compare.html", a=left, b=right, view=views.comparison(left, right))

    @app.get("/evaluations/{evaluation_id}", response_class=HTMLResponse)
    def evaluation(request: Request, evaluation_id: int, show: str = "all") -> Any:
        if show not in ("all", "errors", "wrong"):
            raise ConfigurationError(f"show must be all, errors or wrong, got {show!r}")
        info = opened.evaluation(evaluation_id)
        rows = views.evaluation_rows(info)
        shown = views.filter_rows(rows, show)
        return render(
            request,
            "evaluation.html",
            evaluation=info,
            interval=views.interval(info["summary"], info["score"]),
            rows=shown[:PAGE_SIZE],
            total=len(rows),
            matching=len(shown),
            counts={k: len(views.filter_rows(rows, k)) for k in ("all", "errors", "wrong")},
            show=show,
            others=[e for e in opened.evaluations() if e["id"] != evaluation_id],
            page_size=PAGE_SIZE,
        )

    # ------------------------------------------------------------------ traces
    @app.get("/traces", response_class=HTMLResponse)
    def traces(request: Request) -> Any:
        return render(request, "traces.html", executions=opened.executions(limit=PAGE_SIZE))

    @app.get("/traces/{execution_id}", response_class=HTMLResponse)
    def trace(request: Request, execution_id: int) -> Any:
        info = opened.execution(execution_id)
        return render(
            request,
            "trace.html",
            execution=info,
            spans=views.span_rows(info["spans"], info["latency"]),
        )

    # ------------------------------------------------------------------ try it
    @app.get("/catalog/{name}/try", response_class=HTMLResponse)
    def try_form(request: Request, name: str) -> Any:
        built = opened.load(name)
        info = opened.get_version(name)
        return render(
            request,
            "try.html",
            name=name,
            version=info["number"],
            fields=views.input_fields(built),
            lm_ready=lm is not None or current_lm() is not None,
        )

    @app.post("/catalog/{name}/try")
    async def try_run(request: Request, name: str) -> Any:
        if BODY_KEY in request.scope:
            body = request.scope[BODY_KEY]
        else:
            try:
                body = parse_json_body(await request.body())
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
        submitted = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(submitted, dict):
            raise ConfigurationError('The request body must be a JSON object {"inputs": {...}}')
        return StreamingResponse(
            _stream(opened, name, submitted, current_lm),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json_line(data)}\n\n"


async def _stream(
    store: Any, name: str, submitted: dict[str, Any], current_lm: Callable[[], Any]
) -> AsyncIterator[str]:
    """Server-Sent Events of one run: ``status``, ``chunk`` (field text as it comes), then ``result`` or ``error``."""
    import asyncio

    from pydantic_core import to_jsonable_python

    from ..program import FieldChunk, StatusEvent, streamify
    from ..settings import context

    rec = None
    try:
        program = await asyncio.to_thread(store.load, name)
        inputs = views.coerce_inputs(views.input_fields(program), submitted)
        model = await asyncio.to_thread(current_lm)
        if model is None:
            raise ConfigurationError(
                "No LM is configured for the console: start it with `elixirml --lm MODEL console ...` "
                "or pass create_console_app(store, lm=...)."
            )
        yield _event("status", {"kind": "start", "program": name, "inputs": inputs})
        with context(lm=model), store.recording(name, inputs) as rec:
            async for item in streamify(program)(**inputs):
                if isinstance(item, FieldChunk):
                    yield _event("chunk", {"predictor": item.predictor, "field": item.field, "text": item.text})
                elif isinstance(item, StatusEvent):
                    yield _event("status", {"kind": item.kind, **item.data})
                else:
                    outputs = item.to_dict() if hasattr(item, "to_dict") else {"output": item}
                    check_output(to_jsonable_python(outputs, fallback=str))
                    rec.outputs = outputs
        yield _event("result", {"outputs": rec.outputs, "execution_id": rec.execution_id})
    except Exception as exc:  # the stream reports it; the trace (when started) keeps it too
        trace_id = rec.execution_id if rec is not None else None
        message = redact_text(f"{type(exc).__name__}: {exc}", server_secrets())
        yield _event("error", {"message": message, "execution_id": trace_id})
