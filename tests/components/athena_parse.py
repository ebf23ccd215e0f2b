"""Parses examples/aws/athena.sql as Athena SQL with sqlglot: the one check the Athena text
gets on machines that reach no Athena. Fails on a syntax error, or when a statement is only
kept as an opaque command (what sqlglot does with syntax it does not understand).

    athena_parse.py SQL_FILE
"""
import sys

import sqlglot
from sqlglot import exp

(sql_file,) = sys.argv[1:]
text = open(sql_file, encoding="utf-8").read()
statements = [
    s
    for s in sqlglot.parse(text, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
    if not isinstance(s, exp.Semicolon)
]
kinds = [(s.args.get("kind"), type(s.expression).__name__) for s in statements]
assert kinds == [("TABLE", "NoneType"), ("VIEW", "Select")], kinds
assert not any(isinstance(s, exp.Command) for s in statements), statements
print("parsed:", kinds)
