"""co2db: the researchers' pipeline that imports the CO2 units' data into SQLite.

Run it through database/Makefile, or `python -m co2db <subcommand>`; see
database/README.md.
"""
