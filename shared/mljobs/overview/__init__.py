"""The store overview: every model, its versions, aliases and their history, and the recent job
runs, as plain HTML with inline SVG (no script, no external asset, so it works offline). The serve
image answers it at GET /ui (serve/protocols/ui.py); `models report --all` writes it as files."""
