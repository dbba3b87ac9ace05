"""em.runtime.Supervisor: restarts, strategies, intensity, backoff, stopping (issue 18, supervised jobs)."""

from __future__ import annotations

import asyncio
import itertools
import sys
import time

import pytest

import elixirml as em
from elixirml.runtime import Supervisor


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def flaky(fail_times: int, starts: list[float], result="ok", delay=0.0):
    async def work():
        starts.append(time.monotonic())
        await asyncio.sleep(delay)
        if len(starts) <= fail_times:
            raise RuntimeError(f"boom {len(starts)}")
        return result

    return work


def test_one_for_one_restarts_only_the_failed_child():
    async def main():
        crashy, steady = [], []
        sup = Supervisor("one_for_one", max_restarts=5, window=10, backoff=0.0)

        async def forever():
            steady.append(1)
            await asyncio.Event().wait()

        sup.start_task("crashy", flaky(2, crashy), restart="transient")
        sup.start_task("steady", forever)
        status = await sup.wait("crashy")
        assert status.state == "succeeded" and status.result == "ok" and status.restarts == 2
        assert len(crashy) == 3
        assert sup.status("steady").state == "running" and steady == [1]  # never restarted
        await sup.stop()
        assert sup.status("steady").state == "stopped"

    run(main())


def test_one_for_all_restarts_every_running_child():
    async def main():
        crashy, sibling = [], []
        sup = Supervisor("one_for_all", max_restarts=5, window=10, backoff=0.0)

        async def forever():
            sibling.append(1)
            await asyncio.Event().wait()

        sup.start_task("sibling", forever)
        await asyncio.sleep(0)
        sup.start_task("crashy", flaky(2, crashy, delay=0.02), restart="transient")
        status = await sup.wait("crashy")
        assert status.state == "succeeded" and status.restarts == 2
        await asyncio.sleep(0.05)
        assert len(sibling) == 3  # started once, then restarted with each failure of its sibling
        assert sup.status("sibling").state == "running"
        await sup.stop()

    run(main())


def test_restart_intensity_exceeded_fails_the_child_with_the_reason():
    async def main():
        starts = []
        sup = Supervisor(max_restarts=2, window=10, backoff=0.0)
        sup.start_task("bad", flaky(100, starts), restart="transient")
        status = await sup.wait("bad")
        assert status.state == "failed" and status.restarts == 2 and len(starts) == 3
        assert "restart intensity exceeded" in status.error and "max_restarts=2" in status.error
        assert "RuntimeError: boom 3" in status.error  # the last failure is named
        assert sup.failure is None  # per-child intensity: the supervisor itself carries on
        sup.start_task("next", flaky(0, []), restart="transient")
        assert (await sup.wait("next")).state == "succeeded"
        await sup.stop()

    run(main())


def test_supervisor_intensity_fails_the_supervisor_and_stops_every_child():
    async def main():
        sup = Supervisor(max_restarts=1, window=10, backoff=0.0, intensity="supervisor")

        async def forever():
            await asyncio.Event().wait()

        sup.start_task("steady", forever)
        sup.start_task("bad", flaky(100, []), restart="transient")
        assert (await sup.wait("bad")).state == "failed"
        assert (await sup.wait("steady")).state == "stopped"
        assert "restart intensity exceeded" in sup.failure and "'bad'" in sup.failure
        with pytest.raises(em.errors.SupervisorError, match="has failed"):
            sup.start_task("more", forever)

    run(main())


def test_restarts_outside_the_window_do_not_count():
    async def main():
        starts = []
        sup = Supervisor(max_restarts=1, window=0.05, backoff=0.06, max_backoff=0.06)
        sup.start_task("slow-flaky", flaky(3, starts), restart="transient")
        status = await sup.wait("slow-flaky")
        # each restart waits 0.06 s, longer than the window: one restart in the window at a time
        assert status.state == "succeeded" and status.restarts == 3

    run(main())


def test_backoff_doubles_between_restarts_up_to_the_maximum():
    async def main():
        starts = []
        sup = Supervisor(max_restarts=10, window=60, backoff=0.05, max_backoff=0.2)
        sup.start_task("flaky", flaky(4, starts), restart="transient")
        await sup.wait("flaky")
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        expected = [0.05, 0.1, 0.2, 0.2]
        assert len(gaps) == 4
        for gap, want in zip(gaps, expected):
            assert want <= gap < want + 0.5, (gaps, expected)

    run(main())


def test_status_shows_the_backoff_while_restarting():
    async def main():
        sup = Supervisor(max_restarts=3, window=60, backoff=5.0, max_backoff=5.0)
        sup.start_task("flaky", flaky(1, []), restart="transient")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if sup.status("flaky").state == "restarting":
                break
        status = sup.status("flaky")
        assert status.state == "restarting" and 0 < status.next_restart_in <= 5.0
        assert status.error == "RuntimeError: boom 1"
        stopped = await sup.terminate_child("flaky")  # stopping cuts the backoff short
        assert stopped.state == "stopped" and stopped.restarts == 0

    run(main())


def test_permanent_restarts_after_success_transient_and_temporary_do_not():
    async def main():
        sup = Supervisor(max_restarts=2, window=10, backoff=0.0)
        perm, trans, temp = [], [], []
        sup.start_task("perm", flaky(0, perm), restart="permanent")
        sup.start_task("trans", flaky(0, trans), restart="transient")
        sup.start_task("temp", flaky(5, temp), restart="temporary")
        assert (await sup.wait("trans")).state == "succeeded" and len(trans) == 1
        temp_status = await sup.wait("temp")
        assert temp_status.state == "failed" and len(temp) == 1 and "boom 1" in temp_status.error
        perm_status = await sup.wait("perm")
        assert perm_status.state == "failed" and len(perm) == 3  # ran, restarted twice, then gave up
        assert "exited normally" in perm_status.error

    run(main())


def test_terminate_cancels_a_task_and_runs_its_cleanup():
    async def main():
        cleaned = []

        async def worker():
            try:
                await asyncio.Event().wait()
            finally:
                cleaned.append(True)

        async with Supervisor() as sup:
            sup.start_task("w", worker)
            await asyncio.sleep(0.01)
            status = await sup.terminate_child("w")
            assert status.state == "stopped" and status.restarts == 0 and cleaned == [True]
            sup.start_task("w", worker)  # a finished id may be reused
            await asyncio.sleep(0.01)
        assert sup.status("w").state == "stopped" and cleaned == [True, True]

    run(main())


def test_subprocess_child_restarts_after_a_crash_and_reports_stderr(tmp_path):
    marker = tmp_path / "count"
    script = (
        "import sys, pathlib\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        "if n < 2:\n"
        "    print(f'crash {n}', file=sys.stderr); sys.exit(3)\n"
    )

    async def main():
        sup = Supervisor(max_restarts=3, window=30, backoff=0.0)
        sup.start_process("proc", [sys.executable, "-c", script], restart="transient")
        status = await sup.wait("proc")
        assert status.state == "succeeded" and status.restarts == 2 and status.exit_code == 0
        assert marker.read_text() == "3"

        unlucky = "import sys; print('no luck', file=sys.stderr); sys.exit(4)"
        sup.start_process("always", [sys.executable, "-c", unlucky])
        failed = await sup.wait("always")
        assert failed.state == "failed" and "exited with code 4" in failed.error and "no luck" in failed.error

    run(main())


def test_stopping_a_subprocess_child_terminates_it():
    async def main():
        sup = Supervisor()
        sup.start_process("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        for _ in range(200):
            await asyncio.sleep(0.01)
            if sup.status("sleeper").pid is not None:
                break
        pid = sup.status("sleeper").pid
        assert pid is not None
        started = time.monotonic()
        await sup.stop()
        assert time.monotonic() - started < 5
        assert sup.status("sleeper").state == "stopped" and sup.status("sleeper").pid is None
        import os

        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

    run(main())


def test_bad_arguments_are_refused():
    with pytest.raises(em.errors.ConfigurationError, match="strategy"):
        Supervisor("rest_for_one")
    with pytest.raises(em.errors.ConfigurationError, match="max_restarts"):
        Supervisor(max_restarts=-1)

    async def main():
        sup = Supervisor()
        with pytest.raises(em.errors.ConfigurationError, match="restart must be"):
            sup.start_task("x", flaky(0, []), restart="sometimes")
        with pytest.raises(em.errors.ConfigurationError, match="list of strings"):
            sup.start_process("x", "python -c pass")
        with pytest.raises(em.errors.ConfigurationError, match="no child"):
            sup.status("missing")

        async def forever():
            await asyncio.Event().wait()

        sup.start_task("dup", forever)
        with pytest.raises(em.errors.ConfigurationError, match="already runs"):
            sup.start_task("dup", forever)
        await sup.stop()
        with pytest.raises(em.errors.SupervisorError, match="stopping"):
            sup.start_task("late", forever)

    run(main())
