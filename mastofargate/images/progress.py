"""Progress for builds, pulls and pushes: live bars on a terminal, one plain line per event in CI.

The engine's event streams are translated into three calls (`note`, `step`, `layer`) so the pipeline
never knows which display it talks to. With `--json` everything goes to stderr and stdout carries only
the JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# Layer states worth one line each in CI (the end of a layer's transfer).
FINAL_LAYER_STATES = ("Pushed", "Layer already exists", "Mounted from", "Pull complete", "Already exists")


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class PlainDisplay:
    """One line per build step and per finished layer: readable in CI logs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._seen: set[tuple[str, str, str]] = set()

    def __enter__(self) -> PlainDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def note(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def step(self, image: str, n: int, total: int, text: str) -> None:
        line = " ".join(text.split())
        self.note(f"{image}: step {n}/{total}: {line if len(line) <= 150 else line[:147] + '...'}")

    def layer(self, image: str, action: str, layer: str, status: str, current: int, total: int) -> None:
        if not status.startswith(FINAL_LAYER_STATES) or (image, action, layer) in self._seen:
            return
        self._seen.add((image, action, layer))
        size = f" ({human_bytes(current)})" if current and status == "Pushed" else ""
        self.note(f"{image}: {action} layer {layer}: {status}{size}")

    def done(self, image: str) -> None:
        return None


class LiveDisplay:
    """Rich progress: a bar of build steps per image and a bar per layer being pulled or pushed."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[detail]}", markup=False),
            console=console,
            transient=True,
        )
        self._tasks: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> LiveDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def _task(self, key: tuple[str, str], description: str, total: int | None) -> Any:
        if key not in self._tasks:
            self._tasks[key] = self.progress.add_task(description, total=total, detail="")
        return self._tasks[key]

    def step(self, image: str, n: int, total: int, text: str) -> None:
        task = self._task((image, "build"), image, total)
        line = " ".join(text.split())
        short = line if len(line) <= 60 else line[:57] + "..."
        self.progress.update(task, total=total, completed=n - 1, description=f"{image}: {short}", detail=f"{n}/{total}")

    def layer(self, image: str, action: str, layer: str, status: str, current: int, total: int) -> None:
        task = self._task((image, f"{action}:{layer}"), f"{image} {action} {layer}", total or None)
        if status.startswith(FINAL_LAYER_STATES):
            self.progress.update(task, total=total or 1, completed=total or 1, detail=status)
        else:
            detail = f"{human_bytes(current)} / {human_bytes(total)}" if total else status
            self.progress.update(task, total=total or None, completed=current, detail=detail)

    def done(self, image: str) -> None:
        for key in [k for k in self._tasks if k[0] == image]:
            self.progress.remove_task(self._tasks.pop(key))


def make_display(*, to_stderr: bool) -> PlainDisplay | LiveDisplay:
    from mastofargate.ui import console, err_console, is_ci

    out = err_console() if to_stderr else console()
    return PlainDisplay(out) if is_ci() or not out.is_terminal else LiveDisplay(out)
