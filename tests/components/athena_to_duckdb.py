"""examples/aws/duckdb.sql is generated: athena.sql's view translated by sqlglot (read="athena",
write="duckdb"), after trino_in_duckdb.sql (the Athena table over local files, and macros for
the Trino functions DuckDB has under the same name but with other behaviour).

    athena_to_duckdb.py --write    regenerate examples/aws/duckdb.sql
    athena_to_duckdb.py --check    fail unless examples/aws/duckdb.sql is what --write writes,
                                   or a macro disagrees with Trino's documented examples

Fails when athena.sql calls a function nobody checked the translation of (FAITHFUL, MACROS).
"""
import difflib
import pathlib
import sys

import sqlglot
from sqlglot import exp

ROOT = pathlib.Path(__file__).resolve().parents[2]
ATHENA_SQL = ROOT / "examples/aws/athena.sql"
DUCKDB_SQL = ROOT / "examples/aws/duckdb.sql"
PRELUDE_SQL = ROOT / "tests/components/trino_in_duckdb.sql"

# What sqlglot writes for these behaves in DuckDB as in Trino, for the arguments athena.sql
# gives them (checked by the row-for-row test): regexp_like is a search in both, strpos and
# substr count from 1, array_join and array_to_string skip NULLs, TRY of a conversion error is
# NULL in both, ascending order puts NULLs last in both.
FAITHFUL = {
    exp.And, exp.ArrayAgg, exp.ArrayToString, exp.Case, exp.Coalesce, exp.Count, exp.If,
    exp.Max, exp.Min, exp.RegexpLike, exp.Replace, exp.RowNumber, exp.StartsWith,
    exp.StrPosition, exp.Substring, exp.Try, exp.TryCast,
}
# DuckDB has these under the same name but with other behaviour: calls go to the macros.
MACROS = {
    exp.RegexpExtract: ("trino_regexp_extract", ["this", "expression", "group"]),
    exp.RegexpReplace: ("trino_regexp_replace", ["this", "expression", "replacement"]),
}
ANONYMOUS_MACROS = {"url_decode": "trino_url_decode"}

HEADER = """\
-- GENERATED from athena.sql beside it by tests/components/athena_to_duckdb.py: sqlglot's
-- translation (read="athena", write="duckdb") of its view, after the Athena table over local
-- files and macros for Trino's functions. Do not edit: edit athena.sql (or
-- tests/components/trino_in_duckdb.sql), then run: python3 tests/components/athena_to_duckdb.py --write
-- DuckDB has no HMAC function: athena.sql's --sign-key check has no translation here.
"""


def statements(text):
    """The statements of `text`, each as its own text: Athena's dialect picks Hive or Trino by
    statement (Hive reads backslashes in strings as escapes, Trino does not), so each is parsed
    on its own."""
    tokens = sqlglot.Dialect.get_or_raise("trino").tokenize(text)
    start = 0
    for token in tokens:
        if token.token_type == sqlglot.TokenType.SEMICOLON:
            yield text[start : token.end + 1]
            start = token.end + 1
    if text[start:].strip():
        yield text[start:]


def parse_athena(text):
    """(table, view): athena.sql's two statements, parsed as Athena SQL."""
    parsed = []
    for statement in statements(text):
        trees = [
            tree
            for tree in sqlglot.parse(statement, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
            if tree is not None and not isinstance(tree, exp.Semicolon)
        ]
        parsed.extend(trees)
    assert not any(isinstance(tree, exp.Command) for tree in parsed), parsed
    kinds = [(tree.args.get("kind"), type(tree.expression).__name__) for tree in parsed]
    assert kinds == [("TABLE", "NoneType"), ("VIEW", "Select")], kinds
    return parsed


def to_macros(node):
    if type(node) in MACROS:
        name, keys = MACROS[type(node)]
        args = [node.args[key] for key in keys if node.args.get(key) is not None]
        return exp.Anonymous(this=name, expressions=args)
    if isinstance(node, exp.Anonymous) and node.name.lower() in ANONYMOUS_MACROS:
        return exp.Anonymous(this=ANONYMOUS_MACROS[node.name.lower()], expressions=node.expressions)
    return node


def translate(view):
    unchecked = {
        type(f).__name__ if not isinstance(f, exp.Anonymous) else f.name
        for f in view.find_all(exp.Func)
        if type(f) not in FAITHFUL
        and type(f) not in MACROS
        and not (isinstance(f, exp.Anonymous) and f.name.lower() in ANONYMOUS_MACROS)
    }
    assert not unchecked, f"check how DuckDB runs these, then list them: {sorted(unchecked)}"
    return view.transform(to_macros).sql(dialect="duckdb", pretty=True) + ";\n"


def generated():
    _table, view = parse_athena(ATHENA_SQL.read_text(encoding="utf-8"))
    return HEADER + PRELUDE_SQL.read_text(encoding="utf-8") + "\n" + translate(view)


def check_macros():
    """The macros on Trino's documentation examples, and url_decode on bytes that are not
    UTF-8 against Python's decoder, which substitutes maximal ill-formed subsequences too."""
    import duckdb

    connection = duckdb.connect()
    # The macros only: the first statement, the table, needs files.
    connection.execute(PRELUDE_SQL.read_text(encoding="utf-8").split(";", 1)[1])

    def one(sql, *params):
        return connection.execute(sql, list(params)).fetchone()[0]

    # https://trino.io/docs/current/functions/regexp.html
    assert one(r"SELECT trino_regexp_extract('1a 2b 14m', '\d+')") == "1"
    assert one(r"SELECT trino_regexp_extract('1a 2b 14m', '(\d+)([a-z]+)', 2)") == "a"
    assert one(r"SELECT trino_regexp_extract('1a 2b 14m', 'x(\d+)', 1)") is None
    assert one(r"SELECT trino_regexp_replace('1a 2b 14m', '\d+[ab] ')") == "14m"
    assert one(r"SELECT trino_regexp_replace('1a 2b 14m', '(\d+)([ab]) ', '3c$2 ')") == "3ca 3cb 14m"
    assert one(r"SELECT trino_regexp_replace('a.b', '\.', '\$\\')") == "a$\\b"
    assert one("SELECT try(trino_regexp_replace('ab', 'b', '${name}'))") is None
    # https://trino.io/docs/current/functions/url.html: + is a space; a bad escape fails.
    assert one("SELECT trino_url_decode('a+b%2Bc%20d')") == "a b+c d"
    assert one("SELECT try(trino_url_decode('a%zz'))") is None
    assert one("SELECT try(trino_url_decode('a%4'))") is None
    for raw in [
        b"\xff\xfe \xc3(", b"\xe2\x82", b"\xe2\x82A", b"\xe0\x80\x80", b"\xed\xa0\x80",
        b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80", b"\xf4\x90\x80\x80", b"\xf5", b"\xc0\xaf",
        b"\xe9\x80\xe9", "caf\u00e9 \u2028".encode(),
    ]:
        encoded = "".join(f"%{byte:02X}" for byte in raw)
        got = one("SELECT trino_url_decode(?)", encoded)
        assert got == raw.decode("utf-8", "replace"), (raw, got)


def main(mode):
    text = generated()
    if mode == "--write":
        DUCKDB_SQL.write_text(text, encoding="utf-8")
        return
    assert mode == "--check", __doc__
    check_macros()
    current = DUCKDB_SQL.read_text(encoding="utf-8")
    if current != text:
        diff = difflib.unified_diff(
            current.splitlines(True), text.splitlines(True), str(DUCKDB_SQL), "generated"
        )
        sys.exit("".join(diff) + "\nexamples/aws/duckdb.sql is stale: run athena_to_duckdb.py --write")


if __name__ == "__main__":
    main(*sys.argv[1:])
