"""Runs examples/aws/duckdb.sql over the access logs matching GLOB and writes the messages to
stdout as decode does: the bytes of each, then a line feed.

    duckdb_decode.py SQL_FILE GLOB
"""
import sys

import duckdb

sql_file, logs = sys.argv[1:]
connection = duckdb.connect()
connection.execute("SET VARIABLE logs = $logs", {"logs": logs})
connection.execute(open(sql_file, encoding="utf-8").read())
out = sys.stdout.buffer
query = "SELECT message FROM drifter_messages ORDER BY arrival"
for (message,) in connection.execute(query).fetchall():
    out.write(bytes(message) + b"\n")
