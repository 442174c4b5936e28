"""The ``strax-decl`` command line: run, plan, verify, ls, info, graph, rm.

::

    strax-decl run   --plugins examples/demo_plugins.py demo_000            # compute + store
    strax-decl plan  --plugins examples/demo_plugins.py demo_000 events     # load or compute, why
    strax-decl verify --plugins examples/demo_plugins.py demo_000 peaks     # recompute, compare
    strax-decl ls                                                            # stored data sets
    strax-decl info  demo_000 peaks                                          # one data set
    strax-decl graph --plugins examples/demo_plugins.py --format mermaid     # the plugin DAG
    strax-decl rm    --failed                                                # clean up

Plugins come from a module name (``strax_decl.testing``) or a ``.py`` file; the module's
``PLUGINS`` list is used if it has one, else every plugin class defined in it.

Exit status: 0 success, 1 the work failed (a plugin raised, data not found, ...), 2 the
command line is wrong (unknown command, target, option or run id), 130 interrupted (Ctrl-C),
143 terminated (SIGTERM, as batch systems send: handled like Ctrl-C, so the pipeline stops,
unfinished data sets are discarded and claims released before exiting). Errors are one line
on stderr, naming the plugin, run and chunk a failure came from; ``--debug`` shows the
traceback too.

The package: ``common`` (usage errors, plugins, config, targets), ``formatting``,
``commands_compute`` (run, plan, graph), ``commands_check`` (verify), ``commands_store`` (ls,
info, rm), ``parser``.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType

from strax_decl.cli.common import (
    PROG,
    UsageError,
    default_targets,
    load_plugins,
    parse_config,
)
from strax_decl.cli.formatting import format_bytes
from strax_decl.cli.parser import build_parser

__all__ = [
    "UsageError",
    "build_parser",
    "default_targets",
    "format_bytes",
    "load_plugins",
    "main",
    "parse_config",
]


_TERMINATED: list[int] = []
"""The signal that made the running command stop (SIGTERM), if any."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    # A KeyboardInterrupt, so the run stops exactly as on Ctrl-C (the engine re-raises it).
    _TERMINATED.append(signum)
    raise KeyboardInterrupt(f"terminated by signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While the command runs (in the main thread), SIGTERM raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _TERMINATED.clear()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _usage_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean a wrong command line (exit 2); imported only once one happened,
    so the command line starts without importing the framework (see ``parser``)."""
    from strax_decl.config import InvalidOption

    return (UsageError, InvalidOption)


def _ours() -> tuple[type[BaseException], ...]:
    from strax_decl.plugin import PluginDeclarationError
    from strax_decl.registry import RegistrationError

    return (*_usage_errors(), RegistrationError, PluginDeclarationError, OSError, LookupError)


def _one_line(exc: BaseException) -> tuple[str, bool]:
    """The error as one line, and whether it is one of ours (no type name, no hint needed)."""
    from strax_decl.engine.stopping import failure_note

    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(part.strip() for part in text.strip().splitlines() if part.strip())
    ours = isinstance(exc, _ours())
    ours = ours or type(exc).__module__.split(".")[0] in ("strax_storage", "strax_decl")
    if not text:
        text = type(exc).__name__
    elif not ours:
        text = f"{type(exc).__name__}: {text}"
    where = failure_note(exc)  # "plugin HitFinder failed on run r1, chunk [t0, t1)"
    return (f"{where}: {text}" if where else text), ours


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``strax-decl`` and ``python -m strax_decl``; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    try:
        with _sigterm_as_interrupt():
            args = build_parser().parse_args(args_list)
            debug = bool(getattr(args, "debug", False))
            status: int = args.func(args)
            return status
    except KeyboardInterrupt:
        if _TERMINATED:
            _TERMINATED.clear()
            print(f"{PROG}: terminated (SIGTERM); unfinished data sets discarded", file=sys.stderr)
            return 143
        print(f"{PROG}: interrupted; unfinished data sets discarded", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `strax-decl ls | head`
        sys.stderr.close()
        return 0
    except Exception as e:
        if debug:
            traceback.print_exc()
        usage = isinstance(e, _usage_errors())
        text, ours = _one_line(e)
        hint = "" if ours or debug else " (--debug shows the traceback)"
        print(f"{PROG}: error: {text}{hint}", file=sys.stderr)
        return 2 if usage else 1
