"""uWSGI entry point: `module = server:app` (see server.ini.example)."""

from co2server import create_app

app = create_app()
