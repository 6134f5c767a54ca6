"""`novitai`, the command line client of novitai's API: an HTTP client that never imports
Django (`novitai.cli.main`), with progress for long operations (`novitai.cli.progress`)."""

from novitai.cli.main import main

__all__ = ["main"]
