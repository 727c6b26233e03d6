-- 0002: what a job is expected to cost (set when it is dispatched, for budgets)
-- and an index for "spent today".
ALTER TABLE jobs ADD COLUMN cost_estimate_usd REAL;
CREATE INDEX jobs_accepted_at ON jobs(accepted_at);
CREATE INDEX jobs_model_cost ON jobs(model, cost_usd);
