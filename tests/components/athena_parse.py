"""Parses examples/aws/athena.sql as Athena SQL with sqlglot, statement by statement. Fails on a
syntax error, or when a statement is only kept as an opaque command (what sqlglot does with
syntax it does not understand). The table statement and the --sign-key line (which DuckDB
cannot run: it has no HMAC) get only this check; the view's rows are compared with decode's
through its DuckDB translation (athena_to_duckdb.py).

    athena_parse.py SQL_FILE
"""
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from athena_to_duckdb import parse_athena  # noqa: E402

MAC_LINE = "      -- AND mac = lower(to_hex(substr(hmac_sha256("

(sql_file,) = sys.argv[1:]
text = open(sql_file, encoding="utf-8").read()
parse_athena(text)
assert text.count(MAC_LINE) == 1, "the commented --sign-key line"
_table, view = parse_athena(text.replace(MAC_LINE, MAC_LINE.replace("-- ", "", 1)))
assert "hmac_sha256" in view.sql(dialect="athena").lower(), "the MAC check is parsed"
print("parsed, with and without the --sign-key check")
