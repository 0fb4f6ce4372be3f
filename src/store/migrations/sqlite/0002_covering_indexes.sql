-- Listing an app's numbers, and finding an app of an organisation, read only
-- these indexes (no table lookups): they hold every column those queries use.
CREATE INDEX links_app_cover
    ON links(app_id, status, created_at DESC, id DESC, voip_number, org_id, updated_at)
    WHERE status = 'ACTIVE';
DROP INDEX links_app_active;
CREATE UNIQUE INDEX apps_id_org ON apps(app_id, org_id);
-- The available numbers of an organisation, in id order, without table lookups.
CREATE INDEX numbers_org_available ON numbers(org_id, status, id, e164, provider);
