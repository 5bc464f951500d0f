"""`backhaul sandbox`: serve the vendor emulators on loopback until Ctrl-C."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer


def sandbox_command(
    vendors: Annotated[
        list[str] | None,
        typer.Argument(help="Emulators to start (default: every available one)."),
    ] = None,
    port_base: Annotated[
        int,
        typer.Option(
            "--port-base",
            min=0,
            max=65535,
            help="First port; the next emulators take the following ones (default: free ports).",
        ),
    ] = 0,
    duration: Annotated[
        float | None,
        typer.Option(min=0, help="Stop after this many seconds (default: run until Ctrl-C)."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Start, print the details and stop at once.")
    ] = False,
) -> None:
    """Serve vendor API emulators on 127.0.0.1 for developing syncs offline."""
    from backhaul.errors import BackhaulError
    from backhaul.testing.sandbox import Sandbox
    from backhaul.testing.sandbox import describe

    sandbox = Sandbox(list(vendors or []), port_base)
    try:
        sandbox.start()
    except BackhaulError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(exc.exit_code) from None
    try:
        for vendor, reason in sorted(sandbox.unavailable.items()):
            typer.echo(f"skipped {vendor}: the emulator cannot be loaded ({reason})", err=True)
        if not sandbox.entries:
            typer.echo("error: no emulator is available", err=True)
            raise typer.Exit(1)
        for entry in sandbox.entries:
            typer.echo(describe(entry))
        if once:
            typer.echo("sandbox started and stopped (--once)")
            return
        until = f"for {duration:g}s" if duration is not None else "until Ctrl-C"
        typer.echo(f"sandbox running {until}")
        sys.stdout.flush()
        _wait(duration)
        typer.echo("sandbox stopped")
    finally:
        sandbox.stop()


def _wait(duration: float | None) -> None:
    """Block until ``duration`` passes, Ctrl-C, or SIGTERM."""
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        done.wait(duration)
    except KeyboardInterrupt:
        pass  # Ctrl-C is the normal way to stop the sandbox
    finally:
        signal.signal(signal.SIGTERM, previous)
