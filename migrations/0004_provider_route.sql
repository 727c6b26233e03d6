-- 0004: the `provider` route a job's create asked for (the request's own, else provider.route;
-- NULL: none sent, the provider's default) and the one its completed status reports; what the
-- provider's billing ledger refunded for the job's generation; jobs found by generation id
-- (ledger rows name the generation).
ALTER TABLE jobs ADD COLUMN route_asked TEXT;
ALTER TABLE jobs ADD COLUMN route_served TEXT;
ALTER TABLE jobs ADD COLUMN refund_usd REAL;
CREATE INDEX jobs_generation_id ON jobs(generation_id);
