-- purpose: audit: the file lists each session's plays together, at positions 0..n-1 in file order,
--          and a session belongs to one user; returns offending sessions
-- input views: events (with file_row_number, the row's 0-based place in the file)
-- output columns: session_idx, problem
-- grain: one row per bad session
-- parameters: none
-- notes: one grouping, no sort and no grouping by (session, position): when every row of a
--        session has file_row_number - position equal to the session's first file row and the
--        session spans exactly as many file rows as it has plays, its positions are 0..n-1, each
--        once, in file order (so no two events share a slot).  That time never runs backwards
--        inside a session is checked on the arrays before they are written.
with events as (
    select * from events
),

per_session as (
    select
        session_idx,
        min(position) as first_position,
        max(position) as last_position,
        count(*) as plays,
        min(file_row_number) as first_row,
        max(file_row_number) as last_row,
        min(file_row_number - position) as lowest_offset,
        max(file_row_number - position) as highest_offset,
        min(user_id) as some_user,
        max(user_id) as other_user
    from events
    group by session_idx
),

final as (
    select
        session_idx,
        case
            when first_position <> 0 or last_position <> plays - 1 then 'position gap'
            when lowest_offset <> first_row or highest_offset <> first_row or last_row - first_row + 1 <> plays
                then 'not in file order'
            when some_user <> other_user then 'session spans users'
        end as problem
    from per_session
)

select * from final
where problem is not null
