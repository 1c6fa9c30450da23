"""Plans, states, jobs and apply results as text and Markdown. Pure: returns strings.

``text`` renders plans for terminals, ``markdown`` for pull-request comments, ``state`` the
recorded state and jobs; ``common`` holds what they share.
"""

from reconciler.render.common import Style, is_refresh_only, plain, sections, short, summary_line, symbol
from reconciler.render.markdown import MARKDOWN_MAX_CHARS, plan_markdown
from reconciler.render.state import apply_summary, jobs_text, state_list, state_show
from reconciler.render.text import plan_text

__all__ = [
    "MARKDOWN_MAX_CHARS",
    "Style",
    "apply_summary",
    "is_refresh_only",
    "jobs_text",
    "plain",
    "plan_markdown",
    "plan_text",
    "sections",
    "short",
    "state_list",
    "state_show",
    "summary_line",
    "symbol",
]
