-- PostgreSQL only (store::POSTGRES_ONLY_MIGRATIONS). Usage reports add to the same counter rows
-- over and over (every report of an hour to its hourly row). A row's new version goes in the same
-- page when the page has room, and such an update (HOT) writes no index entry: with full pages
-- each update inserted into every index of the table and left dead entries for the next report's
-- conflict checks to step over. Half of each new page is kept free for the versions of its rows;
-- existing pages keep their fill until rewritten.
ALTER TABLE usage_counters SET (fillfactor = 50);
ALTER TABLE usage_instance_hours SET (fillfactor = 50);
ALTER TABLE usage_instance_minutes SET (fillfactor = 50);
