-- purpose: one line per user of space-separated item ids (SASRec-family text files) -> canonical plays
-- input views: raw (filename, content: the whole file as text, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per item token
-- parameters: none
-- notes: there are no timestamps, so play k of a line gets 2000-01-01 + k seconds (order only);
--        line i (1-based) is user i, the convention of these files; every line is one session.
with source as (
    select * from raw
),

lines as (
    select
        src_row as file_no,
        unnest(string_split(rtrim(content, chr(10)), chr(10))) as line,
        generate_subscripts(string_split(rtrim(content, chr(10)), chr(10)), 1) as line_no
    from source
),

tokens as (
    select
        file_no,
        line_no,
        unnest(string_split(trim(line), ' ')) as token,
        generate_subscripts(string_split(trim(line), ' '), 1) as token_no
    from lines
    where trim(line) <> ''
),

final as (
    select
        row_number() over (order by file_no, line_no, token_no) as src_row,
        cast(line_no as varchar) as user_id,
        timestamp '2000-01-01' + to_seconds(token_no) as ts,
        null::timestamp as ts_end,
        token as track_key,
        null::varchar as artist,
        null::varchar as title,
        null::bigint as played_ms,
        null::bigint as duration_ms,
        false as skip_flag,
        cast(file_no as varchar) || ':' || cast(line_no as varchar) as session_hint,
        token_no as position_hint,
        false as is_podcast,
        null::varchar as parse_error
    from tokens
)

select * from final
