-- Product-qualified leads: one row per user, scored on the last 14 days of activity.
-- "Now" is the warehouse's demo_clock, not now(), so the result is reproducible.
--
-- lead_score (0-100):
--   up to 40  active days in the last 14 (4 per day, capped at 10 days)
--   15        connected an integration
--   up to 15  invited teammates (5 each, capped at 3)
--   up to 10  created reports (2 each, capped at 5)
--   5         created an API key
--   up to 10  seats on the account (1 per 5 seats, capped at 50 seats)
--   5         is an account admin
-- A PQL scores 50 or more while on the free plan or a trial.
WITH clock AS (
    SELECT as_of FROM demo_clock
),
recent AS (
    SELECT
        e.user_id,
        count(*) AS events_14d,
        -- day buckets counted back from the clock, so a day passing shifts them evenly
        count(DISTINCT date_diff('second', e.occurred_at, c.as_of) // 86400) AS active_days_14d,
        count(*) FILTER (WHERE e.event_name = 'integration_connected') AS integrations_14d,
        count(*) FILTER (WHERE e.event_name = 'teammate_invited') AS invites_14d,
        count(*) FILTER (WHERE e.event_name = 'report_created') AS reports_14d,
        count(*) FILTER (WHERE e.event_name = 'api_key_created') AS api_keys_14d
    FROM events AS e
    CROSS JOIN clock AS c
    WHERE e.occurred_at > c.as_of - INTERVAL 14 DAY
      AND e.occurred_at <= c.as_of
    GROUP BY e.user_id
),
scored AS (
    SELECT
        u.user_id,
        u.email,
        u.first_name,
        u.last_name,
        u.title,
        u.account_id,
        a.name AS account_name,
        a.domain AS account_domain,
        a.plan,
        s.status AS subscription_status,
        a.seats,
        u.country,
        u.is_admin,
        coalesce(r.events_14d, 0) AS events_14d,
        coalesce(r.active_days_14d, 0) AS active_days_14d,
        CAST(least(100, greatest(0,
            least(coalesce(r.active_days_14d, 0), 10) * 4
            + CASE WHEN coalesce(r.integrations_14d, 0) > 0 THEN 15 ELSE 0 END
            + least(coalesce(r.invites_14d, 0), 3) * 5
            + least(coalesce(r.reports_14d, 0), 5) * 2
            + CASE WHEN coalesce(r.api_keys_14d, 0) > 0 THEN 5 ELSE 0 END
            + least(a.seats, 50) // 5
            + CASE WHEN u.is_admin THEN 5 ELSE 0 END
        )) AS INTEGER) AS lead_score,
        u.signed_up_at,
        u.last_seen_at
    FROM users AS u
    JOIN accounts AS a ON a.account_id = u.account_id
    JOIN subscriptions AS s ON s.account_id = u.account_id
    LEFT JOIN recent AS r ON r.user_id = u.user_id
)
SELECT
    user_id,
    email,
    first_name,
    last_name,
    title,
    account_id,
    account_name,
    account_domain,
    plan,
    subscription_status,
    seats,
    country,
    is_admin,
    lead_score,
    (lead_score >= 50 AND (plan = 'free' OR subscription_status = 'trial')) AS pql,
    CASE
        WHEN plan <> 'free' AND subscription_status IN ('active', 'past_due') THEN 'customer'
        WHEN lead_score >= 50 AND (plan = 'free' OR subscription_status = 'trial') THEN 'pql'
        ELSE 'lead'
    END AS lifecycle_stage,
    events_14d,
    active_days_14d,
    signed_up_at,
    last_seen_at
FROM scored
ORDER BY user_id
