-- What `drifter-rsyslog decode` prints, as one DuckDB query over access-log files: the
-- embedded stand-in for the Athena query (athena.sql beside it), and what the tests run.
-- Before running it, name the files: SET VARIABLE logs = 'logs/AWSLogs/**/*.log*'.
-- DuckDB has no HMAC function, so this variant cannot check --sign-key MACs.

-- Percent-decoding to bytes: DuckDB's url_decode fails on bytes that are not UTF-8.
CREATE OR REPLACE MACRO drifter_percent_decode(encoded) AS
    CASE WHEN encoded = '' THEN ''::BLOB ELSE list_reduce(
        list_transform(regexp_extract_all(encoded, '%[0-9A-Fa-f]{2}|[^%]+'),
            lambda piece: CASE WHEN piece[1] = '%' THEN unhex(piece[2:]) ELSE encode(piece) END),
        lambda a, b: a || b) END;

CREATE OR REPLACE VIEW drifter_messages AS
WITH lines AS (
    -- One column per line (chr(1) never occurs), in file and line order.
    SELECT row_number() OVER () AS arrival, line
    FROM read_csv(getvariable('logs'), columns = {'line': 'VARCHAR'}, header = false,
                  delim = chr(1), quote = '', escape = '', auto_detect = false)
),
entries AS (
    -- Classic: time elb client ... "request" "user agent" ..., and ALB the same after its type word.
    SELECT arrival,
           regexp_matches(line, '^(http|https|h2|grpcs|ws|wss) ') AS is_alb,
           regexp_extract(line,
               '^(?:(?:http|https|h2|grpcs|ws|wss) )?(\S+) [^"]*"(\S+) (\S+) [^"]*" "([^"]*)"',
               ['time', 'method', 'url', 'agent']) AS e
    FROM lines
),
queries AS (
    SELECT arrival, e.time AS time,
           -- ALB writes bytes it must escape as \xHH: as %HH they are decoded with the rest.
           substr(url, strpos(url, '?') + 1) AS query
    FROM (SELECT arrival, e,
                 CASE WHEN is_alb THEN regexp_replace(e.url, '\\x([0-9A-Fa-f]{2})', '%\1', 'g')
                      ELSE e.url END AS url
          FROM entries)
    WHERE e.method = 'GET' AND starts_with(e.agent, 'drifter-rsyslog/') AND strpos(url, '?') > 0
),
requests AS (
    -- The message is the part before the first &, the extensions follow in a fixed order.
    SELECT arrival, time,
           regexp_extract(query, '^([^&]*)', 1) AS message,
           nullif(regexp_extract(query, '&i=([^&]*)', 1), '') AS id,
           nullif(regexp_extract(query, '&q=([^&]*)', 1), '') AS sequence,
           try_cast(nullif(regexp_extract(query, '&f=([0-9]+)\.', 1), '') AS BIGINT) AS fragment,
           try_cast(nullif(regexp_extract(query, '&f=[0-9]+\.([0-9]+)', 1), '') AS BIGINT) AS fragments
    FROM queries
    -- What decode counts as malformed: not drifter's query, an invalid escape, a line feed.
    WHERE regexp_full_match(query, '[^&=]*(&i=[A-Za-z0-9._-]{1,64})?(&q=[A-Za-z0-9_-]{1,64}\.(0|[1-9][0-9]*))?(&f=[1-9][0-9]*\.[1-9][0-9]*)?(&m=[0-9a-fA-F]{32})?')
      AND regexp_full_match(regexp_extract(query, '^([^&]*)', 1), '([^%]|%[0-9A-Fa-f]{2})*')
      -- No message (`/?`, or extensions alone): decode counts it apart, never prints it.
      AND regexp_extract(query, '^([^&]*)', 1) <> ''
),
whole AS (
    -- Sent again after a failed confirm or commit: the first copy of an id is kept.
    SELECT arrival, message FROM (
        SELECT *, row_number() OVER (PARTITION BY coalesce(id, 'arrival-' || arrival)
                                     ORDER BY arrival) AS copy
        FROM requests WHERE fragment IS NULL)
    WHERE copy = 1
),
pieces AS (
    SELECT * FROM (
        SELECT *, row_number() OVER (PARTITION BY id, fragment ORDER BY arrival) AS copy
        FROM requests WHERE fragment IS NOT NULL AND fragment <= fragments AND id IS NOT NULL)
    WHERE copy = 1
),
joined AS (
    -- Fragments joined in order before decoding: a character may be cut between two.
    SELECT max(arrival) AS arrival, string_agg(message, '' ORDER BY fragment) AS message
    FROM pieces
    GROUP BY id
    HAVING count(*) = max(fragments) AND min(fragments) = max(fragments)
)
SELECT arrival, drifter_percent_decode(message) AS message
FROM (SELECT * FROM whole UNION ALL SELECT * FROM joined)
WHERE NOT regexp_matches(message, '%0[Aa]')
ORDER BY arrival;
