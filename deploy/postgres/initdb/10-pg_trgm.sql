-- Run once on a new cluster, in POSTGRES_DB as POSTGRES_USER: by the official
-- postgres image (/docker-entrypoint-initdb.d) and by native mode's bootstrap.
-- Prefect's migrations create trigram indexes; creating the extension up front
-- means the Prefect role needs no CREATE privilege on the database for it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
