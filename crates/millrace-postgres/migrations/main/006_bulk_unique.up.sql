-- Whether `state` is one of the states set in `bitmask`. Bit positions follow
-- get_bit, which counts from the most significant bit: scheduled is bit 0 and
-- available bit 7. The function body is kept byte for byte as River has it,
-- because pg_dump prints SQL function bodies verbatim.
CREATE OR REPLACE FUNCTION /*schema*/river_job_state_in_bitmask(bitmask BIT(8), state /*schema*/river_job_state)
RETURNS boolean
LANGUAGE SQL
IMMUTABLE
AS $$
    SELECT CASE state
        WHEN 'available' THEN get_bit(bitmask, 7)
        WHEN 'cancelled' THEN get_bit(bitmask, 6)
        WHEN 'completed' THEN get_bit(bitmask, 5)
        WHEN 'discarded' THEN get_bit(bitmask, 4)
        WHEN 'pending'   THEN get_bit(bitmask, 3)
        WHEN 'retryable' THEN get_bit(bitmask, 2)
        WHEN 'running'   THEN get_bit(bitmask, 1)
        WHEN 'scheduled' THEN get_bit(bitmask, 0)
        ELSE 0
    END = 1;
$$;

-- Uniqueness now holds only among jobs whose state is in unique_states, and no
-- longer includes the kind (it is part of the hashed key unless excluded).
-- IF NOT EXISTS again allows building the column and index ahead of time.
ALTER TABLE /*schema*/river_job ADD COLUMN IF NOT EXISTS unique_states bit(8);

CREATE UNIQUE INDEX IF NOT EXISTS river_job_unique_idx ON /*schema*/river_job (unique_key)
    WHERE unique_key IS NOT NULL
        AND unique_states IS NOT NULL
        AND /*schema*/river_job_state_in_bitmask(unique_states, state);

DROP INDEX /*schema*/river_job_kind_unique_key_idx;
