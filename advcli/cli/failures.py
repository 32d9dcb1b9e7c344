"""Exit codes and the error handling every command shares: our own errors become one line naming the
command's flags, and exit 2; Ctrl-C becomes exit 130. Running out of memory, and file errors the
library did not foresee, are one line and exit 2 as well: never a traceback."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import typer

from ..errors import AdvcliError
from .flags import _FLAGS, flag_names
from .render import fail

__all__ = ["EXIT_THRESHOLD", "EXIT_USAGE", "EXIT_INTERRUPTED", "flag_names", "handles_errors"]

EXIT_THRESHOLD = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _command_flags(context: typer.Context) -> dict[str, str]:
    flags: dict[str, str] = {}
    for param in context.command.params:
        opts = [opt for opt in getattr(param, "opts", []) if opt.startswith("--")]
        if not opts or getattr(param, "hidden", False):
            continue
        for name in [param.name, *(opt.lstrip("-").replace("-", "_") for opt in opts)]:
            flags.setdefault(str(name), opts[0])
    return flags


def handles_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our own exceptions into a one-line message naming the command's flags and exit code 2;
    Ctrl-C into 130. The wrapper takes Typer's context (to know the flags) before the command's own
    parameters (and hands it on to a command whose first parameter is ``ctx``)."""
    signature = inspect.signature(command)
    wants_context = next(iter(signature.parameters), None) == "ctx"
    own = [parameter for name, parameter in signature.parameters.items() if not (wants_context and name == "ctx")]

    @functools.wraps(command)
    def wrapper(_context: typer.Context, *args: Any, **kwargs: Any) -> Any:
        _FLAGS.clear()
        _FLAGS.update(_command_flags(_context))
        try:
            return command(_context, *args, **kwargs) if wants_context else command(*args, **kwargs)
        except AdvcliError as error:
            fail(error.render(flag_names()), EXIT_USAGE)
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except MemoryError:
            fail("out of memory: this input needs more memory than the machine has free", EXIT_USAGE)
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}", EXIT_USAGE)

    context = inspect.Parameter("_context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
    wrapper.__signature__ = signature.replace(parameters=[context, *own])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {**{k: v for k, v in command.__annotations__.items() if k != "ctx"},
                               "_context": typer.Context}
    return wrapper
