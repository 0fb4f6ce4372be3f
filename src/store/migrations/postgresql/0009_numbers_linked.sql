-- Available numbers read one range of one index: each inventory number
-- says whether it has an ACTIVE link (linked), instead of the query probing
-- links once per number of the organisation. The trigger keeps the flag in
-- the statement that changes the link, whichever code (or node, or version
-- of sfvopi during a rolling upgrade) wrote it. A number has at most one
-- ACTIVE link (links_one_active), so a link that stops being ACTIVE leaves
-- it unlinked. Its UPDATE takes the number's row lock inside the
-- transaction that changes the link; linking holds that lock already (FOR
-- NO KEY UPDATE).
ALTER TABLE numbers ADD COLUMN linked boolean NOT NULL DEFAULT false;
UPDATE numbers SET linked = true WHERE id IN (SELECT number_id FROM links WHERE status = 'ACTIVE');
CREATE FUNCTION links_keep_linked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        IF OLD.status = 'ACTIVE' THEN
            UPDATE numbers SET linked = false WHERE id = OLD.number_id;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        IF NEW.status = 'ACTIVE' THEN
            UPDATE numbers SET linked = true WHERE id = NEW.number_id;
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER links_linked AFTER INSERT OR DELETE OR UPDATE OF status, number_id ON links
    FOR EACH ROW EXECUTE FUNCTION links_keep_linked();
-- Every column the query reads: an index-only scan in id order.
DROP INDEX numbers_org_available;
CREATE INDEX numbers_org_free ON numbers(org_id, status, linked, id) INCLUDE (e164, provider);
