-- GENERATED from athena.sql beside it by tests/components/athena_to_duckdb.py: sqlglot's
-- translation (read="athena", write="duckdb") of its view, after the Athena table over local
-- files and macros for Trino's functions. Do not edit: edit athena.sql (or
-- tests/components/trino_in_duckdb.sql), then run: python3 tests/components/athena_to_duckdb.py --write
-- DuckDB has no HMAC function: athena.sql's --sign-key check has no translation here.
-- Before running it, name the files: SET VARIABLE logs = 'logs/AWSLogs/**/*.log*'.

-- The Athena table, over local files: one string per line, the delivery day and the file, as
-- Athena's partition `day` and hidden column "$path" give them.
CREATE OR REPLACE VIEW drifter_access_log_lines AS
SELECT line,
       regexp_extract(filename, '/([0-9]{4}/[0-9]{2}/[0-9]{2})/[^/]*$', 1) AS day,
       filename AS "$path"
FROM read_csv(getvariable('logs'), columns = {'line': 'VARCHAR'}, header = false,
              delim = chr(1), quote = '', escape = '', auto_detect = false, filename = true);

-- Trino's functions where DuckDB's function of the same name behaves otherwise, written from
-- Trino's documentation; the translation calls these instead.

-- regexp_extract(string, pattern[, group]): the first match's capturing group (the whole match
-- without one), NULL when the pattern does not match, where DuckDB's gives ''.
-- https://trino.io/docs/current/functions/regexp.html#regexp_extract (NULL: the function is
-- declared nullable and returns NULL when there is no match; io.trino.operator.scalar.
-- JoniRegexpFunctions.regexpExtract). Not reproduced: a group that takes no part in a match is
-- NULL in Trino, '' here (athena.sql has none).
CREATE OR REPLACE MACRO trino_regexp_extract(string, pattern, grp) AS
    CASE WHEN regexp_matches(string, pattern) THEN regexp_extract(string, pattern, grp) END,
    (string, pattern) AS
    CASE WHEN regexp_matches(string, pattern) THEN regexp_extract(string, pattern) END;

-- regexp_replace(string, pattern[, replacement]): replaces every match; in the replacement,
-- `$g` is group g and `\x` is x itself (`\$` a dollar sign), where DuckDB's takes `\g`.
-- https://trino.io/docs/current/functions/regexp.html#regexp_replace. Not reproduced: groups
-- past 9 (`$10`) and named ones (`${name}`) fail the query here (athena.sql uses `$1` only).
CREATE OR REPLACE MACRO trino_replacement(replacement) AS
    array_to_string(list_transform(regexp_extract_all(replacement, '\\.|\$[0-9]|\$|\\|[^\\$]+'),
        lambda token: CASE
            WHEN token = '\\' THEN '\\'
            WHEN token[1] = '\' AND length(token) = 2 THEN token[2]
            WHEN token[1] = '$' AND length(token) = 2 THEN '\' || token[2]
            WHEN token[1] IN ('$', '\')
                THEN CAST('regexp_replace: unsupported replacement ' || replacement AS INTEGER)::VARCHAR
            ELSE token END), '');
CREATE OR REPLACE MACRO trino_regexp_replace(string, pattern, replacement) AS
    regexp_replace(string, pattern, trino_replacement(replacement), 'g'),
    (string, pattern) AS regexp_replace(string, pattern, '', 'g');

-- url_decode(value): https://trino.io/docs/current/functions/url.html#url_decode. Trino runs
-- java.net.URLDecoder.decode(value, UTF_8) (io.trino.operator.scalar.UrlFunctions): `+` is a
-- space, `%XX` a byte, a malformed escape fails (here: a conversion error, which `try` turns
-- into NULL as it does Trino's), and the bytes become text as new String(bytes, UTF_8) makes
-- them: each maximal ill-formed subsequence (Unicode 15, section 3.9, U+FFFD substitution)
-- becomes one U+FFFD. DuckDB's url_decode keeps `+` and fails on bytes that are not UTF-8: the
-- escapes are first taken apart into well-formed UTF-8 sequences (Unicode table 3-7) and
-- maximal ill-formed ones, and each of these becomes %EF%BF%BD.
CREATE OR REPLACE MACRO trino_url_decode(value) AS
    CASE WHEN NOT regexp_full_match(value, '([^%]|%[0-9A-Fa-f]{2})*')
        THEN CAST('url_decode: malformed escape in ' || value AS INTEGER)::VARCHAR
    ELSE url_decode(array_to_string(list_transform(
        regexp_extract_all(replace(value, '+', '%20'),
            -- Well-formed: 1, 2, 3 and 4 bytes (c is a continuation byte, 80-BF).
            '%[0-7][0-9A-Fa-f]|%[Cc][2-9A-Fa-f]%[89AaBb][0-9A-Fa-f]|%[Dd][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]'
            || '|%[Ee]0%[AaBb][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]'
            || '|%[Ee][1-9A-Ca-cEeFf]%[89AaBb][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]'
            || '|%[Ee][Dd]%[89][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]'
            || '|%[Ff]0%[9AaBb][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]'
            || '|%[Ff][1-3]%[89AaBb][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]'
            || '|%[Ff]4%8[0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]%[89AaBb][0-9A-Fa-f]'
            -- Ill-formed: the start of a well-formed sequence cut short, else any one byte.
            || '|%[Ee]0%[AaBb][0-9A-Fa-f]|%[Ee][1-9A-Ca-cEeFf]%[89AaBb][0-9A-Fa-f]|%[Ee][Dd]%[89][0-9A-Fa-f]'
            || '|%[Ff]0%[9AaBb][0-9A-Fa-f](%[89AaBb][0-9A-Fa-f])?'
            || '|%[Ff][1-3]%[89AaBb][0-9A-Fa-f](%[89AaBb][0-9A-Fa-f])?'
            || '|%[Ff]4%8[0-9A-Fa-f](%[89AaBb][0-9A-Fa-f])?'
            || '|%[0-9A-Fa-f]{2}|[^%]+'),
        lambda piece: CASE
            WHEN piece[1] <> '%' THEN piece
            WHEN regexp_full_match(piece,
                '%[0-7][0-9A-Fa-f]|%[C-Dc-d][0-9A-Fa-f](%[89AaBb][0-9A-Fa-f])'
                || '|%[Ee][0-9A-Fa-f](%[89AaBb][0-9A-Fa-f]){2}|%[Ff][0-4](%[89AaBb][0-9A-Fa-f]){3}')
                THEN piece
            ELSE '%EF%BF%BD' END), ''))
    END;

CREATE OR REPLACE VIEW drifter_messages AS
WITH entries AS (
  /* Classic: time elb client ... "request" "user agent" ..., and ALB the same after its type word. */
  SELECT
    day,
    "$path" AS file,
    REGEXP_MATCHES(line, '^(http|https|h2|grpcs|ws|wss) ') AS is_alb,
    TRINO_REGEXP_EXTRACT(
      line,
      '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"',
      1
    ) AS time,
    TRINO_REGEXP_EXTRACT(
      line,
      '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"',
      2
    ) AS method,
    TRINO_REGEXP_EXTRACT(
      line,
      '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"',
      3
    ) AS url,
    TRINO_REGEXP_EXTRACT(
      line,
      '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"',
      4
    ) AS agent
  FROM drifter_access_log_lines
), queries AS (
  SELECT
    day,
    file,
    time,
    SUBSTRING(url, STRPOS(url, '?') + 1) AS query /* ALB writes bytes it must escape as \xHH: as %HH they are decoded with the rest. */
  FROM (
    SELECT
      day,
      file,
      time,
      method,
      agent,
      CASE
        WHEN is_alb
        THEN TRINO_REGEXP_REPLACE(url, '\\x([0-9A-Fa-f]{2})', '%$1')
        ELSE url
      END AS url
    FROM entries
  )
  WHERE
    method = 'GET' AND STARTS_WITH(agent, 'drifter-rsyslog/') AND STRPOS(url, '?') > 0
), requests /* With send --sign-key, keep only what the key signed (uncomment the next line: the key */ /* then stays in the query history). */ /* AND mac = lower(to_hex(substr(hmac_sha256(to_utf8(signed), to_utf8('THE KEY')), 1, 16))) */ AS (
  /* The message is the part before the first &, the extensions follow in a fixed order. */
  SELECT
    day,
    file,
    time,
    TRINO_REGEXP_EXTRACT(query, '^([^&]*)', 1) AS message,
    TRINO_REGEXP_EXTRACT(query, '&i=([^&]*)', 1) AS id,
    TRINO_REGEXP_EXTRACT(query, '&q=([^&.]*)\.', 1) AS sender, /* The sender's name and its counter (u64: decimal(20) holds every value). */
    TRY_CAST(TRINO_REGEXP_EXTRACT(query, '&q=[^&.]*\.([0-9]+)', 1) AS DECIMAL(20, 0)) AS sequence,
    TRY_CAST(TRINO_REGEXP_EXTRACT(query, '&f=([0-9]+)\.', 1) AS BIGINT) AS fragment,
    TRY_CAST(TRINO_REGEXP_EXTRACT(query, '&f=[0-9]+\.([0-9]+)', 1) AS BIGINT) AS fragments,
    TRINO_REGEXP_EXTRACT(query, '&m=([0-9a-f]{32})$', 1) AS mac,
    TRINO_REGEXP_REPLACE(query, '&m=[0-9a-f]{32}$', '') AS signed
  FROM queries
  /* What decode counts as malformed: not drifter's query, an invalid escape. */
  WHERE
    REGEXP_MATCHES(
      query,
      '^[^&=]*(&i=[A-Za-z0-9._-]{1,64})?(&q=[A-Za-z0-9_-]{1,64}\.(0|[1-9][0-9]*))?(&f=[1-9][0-9]*\.[1-9][0-9]*)?(&m=[0-9a-fA-F]{32})?$'
    )
    AND REGEXP_MATCHES(TRINO_REGEXP_EXTRACT(query, '^([^&]*)', 1), '^([^%]|%[0-9A-Fa-f]{2})*$')
    AND /* No message (`/?`, or extensions alone): decode counts it apart, never prints it. */ TRINO_REGEXP_EXTRACT(query, '^([^&]*)', 1) <> ''
), whole AS (
  /* Sent again after a failed confirm or commit: the first copy of an id is kept. */
  SELECT
    day,
    time,
    sender,
    sequence,
    message
  FROM (
    SELECT
      *,
      ROW_NUMBER() OVER (PARTITION BY COALESCE(id, file || time || message) ORDER BY time, file) AS copy
    FROM requests
    WHERE
      fragment IS NULL
  )
  WHERE
    copy = 1
), pieces AS (
  SELECT
    *
  FROM (
    SELECT
      *,
      ROW_NUMBER() OVER (PARTITION BY id, fragment ORDER BY time, file) AS copy
    FROM requests
    WHERE
      NOT fragment IS NULL AND fragment <= fragments AND NOT id IS NULL
  )
  WHERE
    copy = 1
), joined AS (
  /* Fragments joined in order before decoding: a character may be cut between two. */
  SELECT
    MIN(day) AS day,
    MAX(time) AS time,
    MAX(sender) AS sender,
    MAX(sequence) AS sequence,
    ARRAY_TO_STRING(ARRAY_AGG(message ORDER BY fragment), '') AS message
  FROM pieces
  GROUP BY
    id
  HAVING
    COUNT(*) = MAX(fragments) AND MIN(fragments) = MAX(fragments)
)
/* url_decode turns + into a space (drifter sends %2B, and a raw + is kept as itself here, as */
/* decode does), fails the query on a bad escape (try), and turns bytes that are not UTF-8 into */
/* U+FFFD. Each sender's messages in the order it numbered them (`send --sequence`), then the */
/* rest by request time. */
SELECT
  day,
  time,
  sender,
  sequence,
  TRY(TRINO_URL_DECODE(REPLACE(message, '+', '%2B'))) AS message
FROM (
  SELECT
    *
  FROM whole
  UNION ALL
  SELECT
    *
  FROM joined
)
WHERE
  NOT REGEXP_MATCHES(message, '%0[Aa]')
ORDER BY
  sender,
  sequence,
  time,
  message;
