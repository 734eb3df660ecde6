"""The `evar` command and the plumbing of every entry script.

    evar linear CONFIG TASK [--flags]     frozen-embedding evaluation with the linear probe or logreg (lineareval.py)
    evar knn CONFIG TASK [--k 10]         weighted kNN over the same cached embeddings
    evar finetune CONFIG TASK             fine-tune the model and a head on the task (finetune.py)
    evar embed CONFIG TASK                only fill the embedding cache (EVAR's 2pass_1_precompute_only)
    evar sed CONFIG TASK                  frame-level sound event detection (evar.modes.sed)
    evar summarize [FILTER]               models x tasks table of results/scores.csv (summarize.py)
    evar compare MODEL_A MODEL_B          paired comparison on shared tasks (summarize.py --compare)
    evar check CONFIG                     the encoder checker (python -m evar.check)
    evar metadata TASK DATASET_ROOT       build a task's metadata CSV (python -m evar.metadata)
    evar prepare SRC DST RATE             convert a dataset to one sample rate (prepare_wav.py)

Command-line values follow EVAR's scripts (python-fire style): positional arguments in order, `--name value` or
`--name=value`, a bare `--flag` for True and `--noflag` for False, values read as Python literals ('(512,)', 42,
1e-3, True) or else as text. Unlike fire, every flag is checked against the command's parameters and types before
anything runs: an unknown flag names the closest valid one.

One error style everywhere: bad input prints one `Error: ...` line to stderr and exits 1, with no traceback.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import sys
import typing
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Optional

from .errors import EvarError, did_you_mean


@dataclass(frozen=True)
class Command:
    """A subcommand: `target` is 'module:function'; `argv_style` functions take the raw argument list (they parse
    it themselves and return an exit status), the others are called with parsed arguments."""
    target: str
    summary: str
    argv_style: bool = False
    defaults: tuple = ()  # (parameter, value) pairs that differ from the function's own defaults

    def function(self) -> Callable:
        """The target function (its module imported now)."""
        module, _, name = self.target.partition(':')
        return getattr(importlib.import_module(module), name)


COMMANDS = MappingProxyType({
    'linear': Command('evar.modes.linear:linear_command', 'linear probe / logreg on frozen embeddings (lineareval.py)'),
    'knn': Command('evar.modes.linear:knn_command', 'weighted kNN (X-ARES protocol) on frozen embeddings'),
    'finetune': Command('evar.modes.finetune:finetune_command', 'fine-tune the model with a head on a task (finetune.py)'),
    'embed': Command('evar.modes.linear:embed_command', 'only fill the embedding cache'),
    'zeroshot': Command('evar.modes.zeroshot:zeroshot_command', 'zero-shot classification by captions (zeroshot.py)'),
    'retrieval': Command('evar.modes.retrieval:retrieval_command', 'audio<->text retrieval (retr_a2t_t2a.py)'),
    'sed': Command('evar.modes.sed:sed_command', 'frame-level sound event detection (frame head, sed_eval)'),
    'bench': Command('evar.bench:bench_command', 'many models x tasks x heads, parallel and resumable (local or SLURM)'),
    'summarize': Command('evar.report:summarize_command', 'models x tasks table of results/scores.csv'),
    'compare': Command('evar.summarize:compare_command', 'paired bootstrap / McNemar of two models on shared tasks'),
    'report': Command('evar.report:main', 'HTML report with plots (and JSON of its numbers) of results/scores.csv'),
    'check': Command('evar.check:main', 'sanity checks of a model wrapper', argv_style=True),
    'metadata': Command('evar.metadata:main', "build a task's metadata CSV from its dataset", argv_style=True),
    'prepare': Command('evar.prepare_wav:main', 'convert a dataset folder to one sample rate'),
    'download': Command('evar.download:main', "fetch, verify and unpack a task's dataset; write its metadata", argv_style=True),
})


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the commands that parse their own arguments (metadata, check), with evar's error style: a usage
    mistake raises EvarError (one `Error:` line, exit status 1) instead of printing usage and exiting 2."""

    def error(self, message: str):
        """Raises EvarError naming the program and the mistake."""
        raise EvarError(f'{self.prog}: {message} (see {self.prog} --help).')


def module_main(main: Callable[[Optional[list]], Optional[int]]) -> None:
    """The `if __name__ == '__main__'` body of a `python -m evar.<module>`: runs `main(sys.argv[1:])` with evar's
    error handling and exits with its status."""
    sys.exit(_guarded(lambda: main(sys.argv[1:])))


def _literal(text: str) -> Any:
    """A Python literal ('42', '1e-3', '(512,)', 'True', 'None') or, when it is none, the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _coerce(value: Any, annotation: Any, flag: str) -> Any:
    """`value` converted to `annotation` where that is lossless; else EvarError naming `flag`."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, flag)
            except EvarError as e:
                errors.append(str(e))
        raise EvarError(errors[0] if len(errors) == 1 else
                        f'{flag} expects one of {[getattr(o, "__name__", str(o)) for o in options]}, got {value!r}.')
    base = origin or annotation
    if base is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ('true', 'false', 'yes', 'no'):
            return value.lower() in ('true', 'yes')
        raise EvarError(f'{flag} expects True or False, got {value!r}.')
    if base is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise EvarError(f'{flag} expects an integer, got {value!r}.')
    if base is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise EvarError(f'{flag} expects a number, got {value!r}.')
    if base is str:
        return value if isinstance(value, str) else str(value)
    if base in (tuple, list):
        if isinstance(value, (tuple, list)):
            return base(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return base((value,))
        raise EvarError(f'{flag} expects a tuple such as (512,), got {value!r}.')
    return value


def parse_arguments(fn: Callable, argv: list, prog: str, defaults: tuple = ()) -> dict:
    """Keyword arguments for `fn` from command-line words, checked against its signature and annotations.

    Raises:
        EvarError: an unknown flag (with the closest valid one), a missing or surplus positional argument, or a value
            of the wrong type.
    """
    params = inspect.signature(fn).parameters
    hints = typing.get_type_hints(fn)
    names = list(params)
    values: dict = dict(defaults)
    positional: list = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith('--') and len(word) > 2:
            key, has_value, text = word[2:].partition('=')
            key = key.replace('-', '_')
            negated = not has_value and key.startswith('no') and key not in params and key[2:] in params
            if negated:
                key = key[2:]
            if key not in params:
                hint = did_you_mean(key, names, '--')
                flags = [n for n in names if params[n].default is not inspect.Parameter.empty]
                required = [n.upper() for n in names if params[n].default is inspect.Parameter.empty]
                after = f' (positional: {" ".join(required)})' if required else ''
                raise EvarError(f'{prog}: unknown flag --{key}.{hint} Valid flags: '
                                f'{", ".join("--" + n for n in flags)}{after}.')
            if negated:
                value = False
            elif has_value:
                value = _literal(text)
            elif i + 1 < len(argv) and not (argv[i + 1].startswith('--') and len(argv[i + 1]) > 2):
                i += 1
                value = _literal(argv[i])
            else:
                value = True
            values[key] = value
        else:
            positional.append(_literal(word))
        i += 1
    free = [n for n in names if n not in values]
    if len(positional) > len(free):
        raise EvarError(f'{prog}: too many positional arguments {positional[len(free):]!r}.')
    values.update(zip(free, positional))
    missing = [n for n in names if n not in values and params[n].default is inspect.Parameter.empty]
    if missing:
        raise EvarError(f'{prog}: missing argument(s) {", ".join(m.upper() for m in missing)}. '
                        f'Usage: {prog} {" ".join(m.upper() for m in missing)} [--flags]; see {prog} --help.')
    return {k: _coerce(v, hints.get(k, inspect.Parameter.empty), f'--{k}') for k, v in values.items()}


def _help(fn: Callable, prog: str) -> str:
    signature = ' '.join(n.upper() if p.default is inspect.Parameter.empty else f'[--{n} {p.default!r}]'
                         for n, p in inspect.signature(fn).parameters.items())
    return f'usage: {prog} {signature}\n\n{inspect.getdoc(fn) or ""}'


def _guarded(call: Callable[[], Optional[int]]) -> int:
    """Runs `call`; bad input -> one Error: line and status 1; Ctrl-C -> 130; a closed stdout pipe -> quiet exit."""
    import os

    try:
        status = call()
        sys.stdout.flush()
        return int(status or 0)
    except EvarError as e:
        print(f'Error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('Interrupted: results and caches are unchanged (writes are atomic).', file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `summarize.py | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def run_function(fn: Callable, argv: Optional[list] = None, prog: Optional[str] = None, defaults: tuple = ()) -> int:
    """Parses `argv` (default sys.argv[1:]) for `fn`, calls it, and returns the exit status (see `_guarded`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or fn.__name__
    if any(a in ('-h', '--help') for a in argv):
        return _guarded(lambda: print(_help(fn, prog)))
    return _guarded(lambda: fn(**parse_arguments(fn, argv, prog, defaults)))


def run_command(name: str, argv: Optional[list] = None, prog: Optional[str] = None) -> int:
    """Runs the subcommand `name` of COMMANDS with `argv`; returns the exit status."""
    command = COMMANDS[name]
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or f'evar {name}'
    if command.argv_style:
        return _guarded(lambda: command.function()(argv))
    return run_function(command.function(), argv, prog, command.defaults)


def script(name: str) -> None:
    """The body of an entry script (lineareval.py, summarize.py, ...): runs subcommand `name` on sys.argv and exits."""
    sys.exit(run_command(name, prog=sys.argv[0]))


def usage() -> str:
    """The list of subcommands."""
    width = max(map(len, COMMANDS))
    lines = [f'  {n.ljust(width)}  {c.summary}' for n, c in COMMANDS.items()]
    return 'usage: evar COMMAND [ARGS] [--flags]   (evar COMMAND --help for its flags)\n\ncommands:\n' + '\n'.join(lines)


def main(argv: Optional[list] = None) -> int:
    """`evar COMMAND ...`: dispatches to a subcommand; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        return _guarded(lambda: print(usage()))
    if argv[0] not in COMMANDS:
        print(f'Error: unknown command {argv[0]!r}.{did_you_mean(argv[0], COMMANDS)}\n{usage()}',
              file=sys.stderr)
        return 1
    return run_command(argv[0], argv[1:])


def entry() -> None:
    """The console script `evar`."""
    sys.exit(main())
