"""What every overview page shares: escaping, the page frame and its style, and the links between
pages, which differ between the server (/ui/...) and the static files (relative paths)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import quote

STYLE = """body{font-family:system-ui,sans-serif;max-width:76rem;margin:1.5rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.6rem 0 1.4rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;
font-size:.9rem;vertical-align:top}th{background:#f4f6f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.unverified td{background:#fff4f2}.bad{color:#b42318;font-weight:bold}.ok{color:#1a7f37}.muted{color:#666}
.better{color:#1a7f37}.worse{color:#b42318}code{font-size:.85rem}section{margin-bottom:2.5rem}
.alias{display:inline-block;border-radius:.6rem;padding:0 .45rem;margin-right:.2rem;background:#eef2f7;font-size:.85rem}
svg.chart{max-width:100%;height:auto;border:1px solid #eee}"""


def text(value: Any) -> str:
    """Any value as escaped HTML text; None as an empty cell."""
    return "" if value is None else escape(str(value))


def mapping(value: Any) -> dict[str, Any]:
    """A record's field that should be an object, or {} when it is not (records are read as found)."""
    return value if isinstance(value, dict) else {}


def number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else text(value)


def frame(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
            f"<style>{STYLE}</style></head>"
            f"<body>{body}</body></html>\n")


@dataclass(frozen=True)
class Links:
    """Where the overview and each version's pages live: on the server or in a folder of files."""

    home: str  # the overview, from a version's page
    models: str  # the folder of versions' pages, from the overview

    def version(self, name: str, version: str, file: str = "index.html") -> str:
        return f"{self.models}{quote(name, safe='')}/{quote(version, safe='')}/{quote(file, safe='')}"


SERVER_LINKS = Links(home="/ui", models="/ui/models/")
FILE_LINKS = Links(home="../../../index.html", models="models/")
