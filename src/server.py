"""uWSGI entry point: `module = server:app` (see server.ini.example).

Run as a script, it serves the same app, built the same way from the CO2_*
environment variables, with Flask's development server, for debugging only:

    cd src && ../.venv/bin/python server.py [--port 8080] [--host 127.0.0.1]

Under uWSGI `__name__` is not "__main__", so only `app` below is used there.
"""

from __future__ import annotations

import argparse
import sys

WARNING = (
    "server.py: Flask's development server on http://{host}:{port}/ -- for debugging only, "
    "NOT for the internet or the units in the field; run the real server with "
    'scripts/start-server.sh (uWSGI) behind nginx (README, "Deploy")'
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="server.py",
        description="Run the CO2 unit server with Flask's development server, for debugging only. "
                    "Settings come from the CO2_* environment variables, as under uWSGI (README, "
                    '"Configure"). The real server is scripts/start-server.sh (uWSGI) behind nginx.',
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: %(default)s)")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port (1-65535)")
    return args


def require_packages() -> None:
    """Exit with what to do, instead of a traceback, when run by a python without the venv's packages."""
    try:
        import co2server  # noqa: F401  (imports Flask and Flask-RESTful)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "co2server":
            raise  # our own code is broken or missing: show the traceback
        sys.exit(
            f"server.py: error: {sys.executable} lacks the Python package {exc.name!r}; this is not the project's venv.\n"
            "  Create the venv with scripts/setup-venv.sh (run from the checkout), then start this file\n"
            "  with the venv's python: cd src && ../.venv/bin/python server.py"
        )


if __name__ == "__main__":
    ARGS = parse_args()
    require_packages()
    # First, before the app logs anything: what this is.
    url_host = f"[{ARGS.host}]" if ":" in ARGS.host else ARGS.host
    print(WARNING.format(host=url_host, port=ARGS.port), file=sys.stderr, flush=True)

from co2server import create_app  # noqa: E402

app = create_app()

if __name__ == "__main__":
    app.run(host=ARGS.host, port=ARGS.port, threaded=True, use_reloader=False)
