-- Listing an app's numbers, finding an app of an organisation and listing the
-- available numbers can be answered from these indexes alone (index-only
-- scans once the visibility map is set): they hold every column used.
CREATE INDEX links_app_cover ON links(app_id, created_at DESC, id DESC)
    INCLUDE (voip_number, org_id, status, updated_at) WHERE status = 'ACTIVE';
DROP INDEX links_app_active;
CREATE UNIQUE INDEX apps_id_org ON apps(app_id, org_id);
CREATE INDEX numbers_org_available ON numbers(org_id, status, id) INCLUDE (e164, provider);
