-- A charge in flight: the request that claimed a pending attempt holds it until `lease_until`
-- (Unix seconds); another request meanwhile gets 409 `charge_in_progress` instead of calling the
-- provider. NULL: nobody holds it (an attempt whose outcome is unknown is looked up first).
ALTER TABLE charge_attempts ADD COLUMN lease_until BIGINT;
