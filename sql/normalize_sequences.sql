-- purpose: one line per user of space-separated item ids (SASRec-family text files) -> canonical plays
-- input views: raw (filename, content: the whole file as text, src_row, source_user)
-- output columns: schema.PLAY_COLUMNS + parse_error
-- grain: one row per item token
-- parameters: none
-- notes: there are no timestamps, so play k of a line gets 2000-01-01 + k seconds (order only);
--        line i (1-based) is user i, the convention of these files (with several files, user
--        '<file>:<line>'); every line is one session; CR line ends and repeated spaces are allowed.
with source as (
    select * from raw
),

files as (
    select
        src_row as file_no,
        string_split(rtrim(replace(content, chr(13), ''), chr(10)), chr(10)) as file_lines,
        count(*) over () as n_files
    from source
),

lines as (
    select
        file_no,
        n_files,
        unnest(file_lines) as line,
        generate_subscripts(file_lines, 1) as line_no
    from files
),

split_lines as (
    select
        file_no,
        n_files,
        line_no,
        regexp_split_to_array(trim(line), '\s+') as line_tokens
    from lines
    where trim(line) <> ''
),

tokens as (
    select
        file_no,
        n_files,
        line_no,
        unnest(line_tokens) as token,
        generate_subscripts(line_tokens, 1) as token_no
    from split_lines
),

final as (
    select
        row_number() over (order by file_no, line_no, token_no) as src_row,
        case
            when n_files = 1 then cast(line_no as varchar)
            else cast(file_no as varchar) || ':' || cast(line_no as varchar)
        end as user_id,
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
