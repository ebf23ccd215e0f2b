"""Runs examples/aws/duckdb.sql (athena.sql's view, translated) over the access logs matching
GLOB and writes the view's rows to stdout in its order, one JSON object a line, with the keys
`decode --json` gives them: sender and sequence (when the message has them), time, message.

    duckdb_decode.py SQL_FILE GLOB
"""
import json
import sys

import duckdb

sql_file, logs = sys.argv[1:]
connection = duckdb.connect()
connection.execute("SET VARIABLE logs = $logs", {"logs": logs})
connection.execute(open(sql_file, encoding="utf-8").read())
# No ORDER BY here: the view's own order is under test.
query = "SELECT sender, sequence, time, message FROM drifter_messages"
for sender, sequence, time, message in connection.execute(query).fetchall():
    row = {"time": time, "message": message}
    if sender is not None:
        row["sender"] = sender
        row["sequence"] = int(sequence)
    print(json.dumps(row, ensure_ascii=False))
