-- Available numbers read one range of one index: each inventory number
-- says whether it has an ACTIVE link (linked), instead of the query probing
-- links once per number of the organisation. The triggers keep the flag in
-- the statement that changes the link, whichever code (or node, or version
-- of sfvopi) wrote it. A number has at most one ACTIVE link
-- (links_one_active), so a link that stops being ACTIVE leaves it unlinked.
ALTER TABLE numbers ADD COLUMN linked INTEGER NOT NULL DEFAULT 0 CHECK (linked IN (0, 1));
UPDATE numbers SET linked = 1 WHERE id IN (SELECT number_id FROM links WHERE status = 'ACTIVE');
CREATE TRIGGER links_linked_insert AFTER INSERT ON links WHEN NEW.status = 'ACTIVE'
BEGIN
    UPDATE numbers SET linked = 1 WHERE id = NEW.number_id;
END;
CREATE TRIGGER links_linked_update AFTER UPDATE OF status, number_id ON links
BEGIN
    UPDATE numbers SET linked = 0 WHERE id = OLD.number_id AND OLD.status = 'ACTIVE';
    UPDATE numbers SET linked = 1 WHERE id = NEW.number_id AND NEW.status = 'ACTIVE';
END;
CREATE TRIGGER links_linked_delete AFTER DELETE ON links WHEN OLD.status = 'ACTIVE'
BEGIN
    UPDATE numbers SET linked = 0 WHERE id = OLD.number_id;
END;
-- Every column the query reads, in its order: no table lookups, no sort.
DROP INDEX numbers_org_available;
CREATE INDEX numbers_org_free ON numbers(org_id, status, linked, id, e164, provider);
