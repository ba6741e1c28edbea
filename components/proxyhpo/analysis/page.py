"""The report as one self-contained HTML page, for the Kubeflow UI's visualisations.

Every plot is inlined as a base64 PNG with its file name as caption, then the Markdown in ``<pre>``: the
page needs nothing beside it.

Example:
    >>> html_page("Study s", "# Study `s`\\n", {}).startswith("<html><head><meta charset='utf-8'><title>Study s</title>")
    True
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping

__all__ = ["html_page"]


def html_page(title: str, markdown: str, images: Mapping[str, bytes]) -> str:
    """A self-contained page: every PNG inlined as base64 (in the given order), the Markdown in ``<pre>``.

    Args:
        title: the page's title.
        markdown: the report's Markdown, shown as it is (escaped).
        images: plot name -> its PNG bytes; each captioned ``<name>.png``.
    """
    figures = "".join(
        f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{base64.b64encode(data).decode()}'/>"
        f"<figcaption>{html.escape(name)}.png</figcaption></figure>"
        for name, data in images.items()
    )
    return f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>{figures}<pre>{html.escape(markdown)}</pre></body></html>"
