"""The job runner every widget uses: progress, result, errors, cancel."""

from magicgui.widgets import Label, PushButton

from napari_domaingen._widgets._jobs import JobRunner, button_busy, label_status
from napari_domaingen.progress import Cancelled


def _runner(results):
    run, cancel, status = PushButton(text="Run"), PushButton(text="Cancel"), Label()
    runner = JobRunner(label_status(status), button_busy(run, cancel), results.append)
    runner.run_button, runner.cancel_button = run, cancel
    return runner, status


def test_result_error_and_cancel(make_napari_viewer, qtbot):
    make_napari_viewer()  # a running Qt app with napari's activity dock
    results = []
    runner, status = _runner(results)

    def ok(cancel):
        yield {"stage": "work", "fraction": 0.5, "message": "half"}
        return 42

    runner.start(ok, "ok job")
    qtbot.waitUntil(lambda: not runner.is_running and runner.outcome is not None, timeout=10000)
    assert results == [42] and runner.run_button.enabled and not runner.cancel_button.enabled

    def broken(cancel):
        yield {"stage": "work", "fraction": 0.1, "message": "starting"}
        raise RuntimeError("weights missing: put anatomix.pth at /somewhere")

    runner.start(broken, "broken job")
    qtbot.waitUntil(lambda: not runner.is_running and runner.outcome is not None, timeout=10000)
    assert "put anatomix.pth at /somewhere" in status.value and results == [42]
    assert runner.run_button.enabled

    def stopped(cancel):
        yield {"stage": "work", "fraction": 0.1, "message": "starting"}
        raise Cancelled("stop")

    runner.start(stopped, "cancelled job")
    qtbot.waitUntil(lambda: not runner.is_running and runner.outcome is not None, timeout=10000)
    assert status.value == "cancelled" and results == [42]


def test_progress_bar_reentrancy_does_not_overwrite_the_result(make_napari_viewer):
    """napari's progress bar processes pending events when updated: the result (and the end of the worker) can
    arrive inside the progress handler; the final status must win and the closed bar must not be touched."""
    make_napari_viewer()
    runner, status = _runner([])

    class ReentrantBar:
        n = 0

        def set_description(self, text):
            pass

        def update(self, step):
            status.value = "final result"
            runner.outcome = object()
            runner._on_finished()  # closes the bar

        def close(self):
            pass

    runner._pbar = ReentrantBar()
    runner._on_yielded({"stage": "done", "fraction": 1.0, "message": "done"})
    assert status.value == "final result" and runner._pbar is None
    runner._on_yielded({"stage": "done", "fraction": 1.0, "message": "late"})  # after the result: ignored
    assert status.value == "final result"
