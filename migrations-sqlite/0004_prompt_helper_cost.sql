-- What the prompt helper (the LLM rewriting a generation's prompt) cost for a job, kept
-- with the job so that a process which finishes it after a restart still charges it and
-- records fal's bill for it. Added to on each attempt that called the helper.
ALTER TABLE jobs ADD COLUMN helper_cost_micros INTEGER NOT NULL DEFAULT 0
    CONSTRAINT jobs_helper_cost_check CHECK (helper_cost_micros >= 0);
