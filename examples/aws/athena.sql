-- What `drifter-rsyslog decode` prints, in Athena (engine v3, Trino), over the load
-- balancer's access logs where they lie. No Athena is reachable from the test machines: the
-- tests run this view's translation to DuckDB by sqlglot (duckdb.sql beside it, generated).
-- Replace BUCKET, PREFIX, ACCOUNT and REGION (the stack's DecodeUrl output holds them).

-- One string per log line: reads Classic and ALB alike, and does not turn every row into
-- NULLs when AWS adds a field, as the documented regex tables do. Partitions by delivery
-- day, projected: nothing to load or repair.
CREATE EXTERNAL TABLE IF NOT EXISTS drifter_access_log_lines (line string)
PARTITIONED BY (day string)
ROW FORMAT DELIMITED
LOCATION 's3://BUCKET/PREFIX/AWSLogs/ACCOUNT/elasticloadbalancing/REGION/'
TBLPROPERTIES (
  'projection.enabled' = 'true',
  'projection.day.type' = 'date',
  'projection.day.format' = 'yyyy/MM/dd',
  'projection.day.range' = '2026/01/01,NOW',
  'projection.day.interval' = '1',
  'projection.day.interval.unit' = 'DAYS',
  'storage.location.template' = 's3://BUCKET/PREFIX/AWSLogs/ACCOUNT/elasticloadbalancing/REGION/${day}'
);

CREATE OR REPLACE VIEW drifter_messages AS
WITH entries AS (
    -- Classic: time elb client ... "request" "user agent" ..., and ALB the same after its type word.
    SELECT day, "$path" AS file, regexp_like(line, '^(http|https|h2|grpcs|ws|wss) ') AS is_alb,
           regexp_extract(line, '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"', 1) AS time,
           regexp_extract(line, '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"', 2) AS method,
           regexp_extract(line, '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"', 3) AS url,
           regexp_extract(line, '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"', 4) AS agent
    FROM drifter_access_log_lines
),
queries AS (
    SELECT day, file, time,
           -- ALB writes bytes it must escape as \xHH: as %HH they are decoded with the rest.
           substr(url, strpos(url, '?') + 1) AS query
    FROM (SELECT day, file, time, method, agent,
                 CASE WHEN is_alb THEN regexp_replace(url, '\\x([0-9A-Fa-f]{2})', '%$1')
                      ELSE url END AS url
          FROM entries)
    WHERE method = 'GET' AND starts_with(agent, 'drifter-rsyslog/') AND strpos(url, '?') > 0
),
requests AS (
    -- The message is the part before the first &, the extensions follow in a fixed order.
    SELECT day, file, time,
           regexp_extract(query, '^([^&]*)', 1) AS message,
           regexp_extract(query, '&i=([^&]*)', 1) AS id,
           -- The sender's name and its counter (u64: decimal(20) holds every value).
           regexp_extract(query, '&q=([^&.]*)\.', 1) AS sender,
           try_cast(regexp_extract(query, '&q=[^&.]*\.([0-9]+)', 1) AS decimal(20, 0)) AS sequence,
           try_cast(regexp_extract(query, '&f=([0-9]+)\.', 1) AS bigint) AS fragment,
           try_cast(regexp_extract(query, '&f=[0-9]+\.([0-9]+)', 1) AS bigint) AS fragments,
           regexp_extract(query, '&m=([0-9a-f]{32})$', 1) AS mac,
           regexp_replace(query, '&m=[0-9a-f]{32}$', '') AS signed
    FROM queries
    -- What decode counts as malformed: not drifter's query, an invalid escape.
    WHERE regexp_like(query, '^[^&=]*(&i=[A-Za-z0-9._-]{1,64})?(&q=[A-Za-z0-9_-]{1,64}\.(0|[1-9][0-9]*))?(&f=[1-9][0-9]*\.[1-9][0-9]*)?(&m=[0-9a-fA-F]{32})?$')
      AND regexp_like(regexp_extract(query, '^([^&]*)', 1), '^([^%]|%[0-9A-Fa-f]{2})*$')
      -- No message (`/?`, or extensions alone): decode counts it apart, never prints it.
      AND regexp_extract(query, '^([^&]*)', 1) <> ''
      -- With send --sign-key, keep only what the key signed (uncomment the next line: the key
      -- then stays in the query history).
      -- AND mac = lower(to_hex(substr(hmac_sha256(to_utf8(signed), to_utf8('THE KEY')), 1, 16)))
),
whole AS (
    -- Sent again after a failed confirm or commit: the first copy of an id is kept.
    SELECT day, time, sender, sequence, message FROM (
        SELECT *, row_number() OVER (PARTITION BY coalesce(id, file || time || message)
                                     ORDER BY time, file) AS copy
        FROM requests WHERE fragment IS NULL)
    WHERE copy = 1
),
pieces AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id, fragment ORDER BY time, file) AS copy
        FROM requests WHERE fragment IS NOT NULL AND fragment <= fragments AND id IS NOT NULL)
    WHERE copy = 1
),
joined AS (
    -- Fragments joined in order before decoding: a character may be cut between two.
    SELECT min(day) AS day, max(time) AS time, max(sender) AS sender, max(sequence) AS sequence,
           array_join(array_agg(message ORDER BY fragment), '') AS message
    FROM pieces
    GROUP BY id
    HAVING count(*) = max(fragments) AND min(fragments) = max(fragments)
)
-- url_decode turns + into a space (drifter sends %2B, and a raw + is kept as itself here, as
-- decode does), fails the query on a bad escape (try), and turns bytes that are not UTF-8 into
-- U+FFFD. Each sender's messages in the order it numbered them (`send --sequence`), then the
-- rest by request time.
SELECT day, time, sender, sequence, try(url_decode(replace(message, '+', '%2B'))) AS message
FROM (SELECT * FROM whole UNION ALL SELECT * FROM joined)
WHERE NOT regexp_like(message, '%0[Aa]')
ORDER BY sender, sequence, time, message;

-- The messages of a time range. Partitions are by delivery day: widen the range by a day.
-- SELECT message FROM drifter_messages
-- WHERE day BETWEEN '2026/11/30' AND '2026/12/02'
--   AND time >= '2026-11-30T05:00:00' AND time < '2026-11-30T13:00:00'
-- ORDER BY sender, sequence, time, message
