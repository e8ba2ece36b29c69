"""``study dashboard``: optuna-dashboard over the Optuna storage that every study writes beside its
database (``study.tracking``). It reads the journal file, never the DuckDB file, so it answers while a
study runs and holds the database's lock; and it imports no torch, timm, transformers or ray."""
from __future__ import annotations

import errno
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from study.errors import StudyError
from study.tracking import optuna_storage, optuna_storage_path


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # one line per request would bury the address line
        pass


def dashboard_app(db: Path):
    """The optuna-dashboard WSGI app for the studies of ``db``."""
    path = optuna_storage_path(db)
    if not path.exists():
        if not Path(db).exists():
            raise StudyError(f"database '{db}' not found; run a study first or pass --db FILE")
        raise StudyError(f"'{db}' has no Optuna storage ({path.name} beside it); run a study with this engine "
                         f"version to write it: study run SPEC --db {db}")
    import optuna_dashboard

    return optuna_dashboard.wsgi(optuna_storage(path))


def serve(db: Path, port: int, host: str = "127.0.0.1", say=print) -> None:
    """Serve until interrupted (Ctrl-C)."""
    app = dashboard_app(db)
    try:
        server = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise StudyError(f"port {port} is in use; choose another with --port") from None
        raise StudyError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another with "
                         "--port") from None
    say(f"optuna-dashboard for {db}: http://{host}:{port}/  (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
