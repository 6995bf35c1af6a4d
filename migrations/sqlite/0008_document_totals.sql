-- What each tenant's documents take up against its plan (sample documents do not count), kept
-- by the database itself as rows come and go, so a limit check reads one row instead of summing
-- every document of the tenant.
CREATE TABLE document_totals (
    tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
    documents BIGINT NOT NULL DEFAULT 0,
    bytes     BIGINT NOT NULL DEFAULT 0,
    chunks    BIGINT NOT NULL DEFAULT 0
);

INSERT INTO document_totals (tenant_id, documents, bytes, chunks)
SELECT tenant_id, COUNT(*), COALESCE(SUM(bytes), 0), COALESCE(SUM(chunk_count), 0)
FROM documents WHERE NOT sample GROUP BY tenant_id;

CREATE TRIGGER documents_totals_insert AFTER INSERT ON documents
WHEN NOT NEW.sample
BEGIN
    INSERT INTO document_totals (tenant_id, documents, bytes, chunks)
    VALUES (NEW.tenant_id, 1, NEW.bytes, NEW.chunk_count)
    ON CONFLICT (tenant_id) DO UPDATE SET documents = documents + 1,
        bytes = bytes + excluded.bytes, chunks = chunks + excluded.chunks;
END;

CREATE TRIGGER documents_totals_delete AFTER DELETE ON documents
WHEN NOT OLD.sample
BEGIN
    UPDATE document_totals SET documents = documents - 1, bytes = bytes - OLD.bytes,
        chunks = chunks - OLD.chunk_count
    WHERE tenant_id = OLD.tenant_id;
END;
