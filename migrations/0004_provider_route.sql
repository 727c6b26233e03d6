-- 0004: the `provider` route a job's create asked for (the request's own, else provider.route;
-- NULL: none sent, the provider's default) and the one its completed status reports.
ALTER TABLE jobs ADD COLUMN route_asked TEXT;
ALTER TABLE jobs ADD COLUMN route_served TEXT;
