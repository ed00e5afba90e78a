"""``browse``: look through the journal in a terminal UI (Textual, the ``tui`` extra)."""

from typing import Annotated, Optional

import typer

from ..options import complete_users
from ..state import CliState


def browse(
    ctx: typer.Context,
    user: Annotated[
        Optional[str], typer.Argument(help="Open this user's conversations at start.", metavar="[USER]", show_default=False, autocompletion=complete_users)
    ] = None,
) -> None:
    """Browse users, conversations and transcripts in a terminal UI (read-only).

    Needs the tui extra: pip install 'dialogctl[tui]'. Read-only: archive,
    restore and rm stay on the command line. Message text is shown with control
    and bidi characters escaped, as everywhere else, and never as markup.

    Keys:

    \b
      Enter   open a user or conversation; fold or unfold a long message
      Tab     next pane          u  filter users as you type   o  sort users
      /       search every user  s  search the selected user   n / N  next / previous hit
      f       follow the selected user live (f again stops)
      e       export the open conversation (asks for FILE; its extension names the format)
      y       copy the highlighted message    q / Ctrl-C  quit (exit 0)

    Examples:

    \b
      dialogctl browse
      dialogctl browse alice
      dialogctl --root /srv/journal browse
    """
    import sys

    from ...disk.layout import validate_user_id
    from ...errors import InvalidInput

    state: CliState = ctx.obj
    try:
        import textual  # noqa: F401
    except ImportError:
        raise InvalidInput("browse needs Textual, which is not installed", hint="pip install 'dialogctl[tui]'") from None
    if not (sys.stdin.isatty() and sys.stderr.isatty()):  # Textual draws on stderr; stdout may be redirected
        raise InvalidInput("browse is interactive: run it on a terminal (stdin and stderr)")
    if user is not None:
        validate_user_id(user)
    journal = state.journal()
    from ..tui.app import BrowseApp

    BrowseApp(journal, user).run()
    # What could not be read was shown while browsing; quitting is exit 0.
    journal.damage.clear()
    journal.unreadable.clear()
