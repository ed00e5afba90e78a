"""Names vulture cannot see used: ``vulture dialogctl tools/vulture_whitelist.py --min-confidence 60`` finds nothing.

Only what a framework or protocol calls by name belongs here; anything else
vulture reports is dead code to delete (tests/test_architecture.py runs it).
"""

# ruff: noqa: B018, F821
# mypy: ignore-errors

# Typer commands and options: Typer calls them and reads their parameters by name.
export
follow
doctor
demo
browse
import_
rm
cleanup
list_
main_options
set_
version
complete_var  # the parameter of Click's _main_shell_completion override
signum  # a signal handler's argument
always  # --color / layout enum members, chosen on the command line
never
sharded
_.list_commands  # Click's group protocol
_.resolve_command
_.format_commands  # the Commands section of --help (overridden)
_.shell_complete  # completing a command name (overridden)
_._main_shell_completion  # Click's completion entry point (overridden)
source_template  # Click's ShellComplete subclass protocol
_.source_vars

# Python and library protocols.
__getattr__  # dialogctl/__init__.py: the lazy __all__ (PEP 562)
errors  # cli.ClosedStdout: the file protocol's attribute
_.readinto  # io.RawIOBase
_.__cause__  # exception chaining of a worker's error
_.Constructor  # ruamel.yaml's YAML object: attributes it reads
_.max_depth

# Records whose every field is kept (read from /proc/self/mountinfo) though not all are shown.
device

# Public API used by tests and pytest's header (which YAML loader a run uses).
yaml_loader

# Textual's protocol for `dialogctl browse` (dialogctl/cli/tui/app.py): class settings, compose,
# message handlers (on_*) and key actions (action_*) that Textual calls by name, widget attributes it reads.
BINDINGS
DEFAULT_CSS
CSS
TITLE
ENABLE_COMMAND_PALETTE
_.compose
_.on_mount
_.on_input_changed
_.on_input_submitted
_.on_data_table_row_highlighted
_.on_data_table_row_selected
_.on_option_list_option_selected
_.action_cancel
_.action_filter
_.action_sort
_.action_leave
_.action_search
_.action_follow
_.action_export
_.action_copy
_.action_quit
_.border_title
_.placeholder
# pyarrow.parquet.ParquetWriter reads it in __del__ (formats/parquet.py abandons a failed writer through it).
_.is_open
# rich.console.Console calls it on a BrokenPipeError (cli/render.py's console makes that exit 141).
_.on_broken_pipe
