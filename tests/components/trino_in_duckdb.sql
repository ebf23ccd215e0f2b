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
