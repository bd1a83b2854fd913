"""The ceiling for bench/bench_server.py: a bare Flask-RESTful app, nothing else.

One Resource answering GET / with a short text, served by uWSGI with the very
settings of server.ini.example (bench_server.py overrides only chdir/module),
so the figure it gives is what Flask-RESTful under our uWSGI settings can do
at best on this machine: every real endpoint is measured against it.
"""

from flask import Flask, Response
from flask_restful import Api, Resource

BODY = "bare Flask-RESTful app for the benchmark ceiling\n"


class Hello(Resource):
    def get(self):
        return Response(BODY, mimetype="text/plain")


app = Flask(__name__)
api = Api(app)
api.add_resource(Hello, "/")
