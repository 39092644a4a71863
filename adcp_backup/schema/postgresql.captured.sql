-- The AdCP schema on PostgreSQL as backup_create records it (capture_ddl reads it back from the catalog),
-- for a database created from postgresql.sql. Validation accepts a backup's DDL statement when it equals,
-- after normalisation, a statement of the shipped DDL or of this file. Nothing here is ever executed.

CREATE SEQUENCE "tenant_id_seq" AS integer;

CREATE SEQUENCE "product_id_seq" AS integer;

CREATE SEQUENCE "externalagent_id_seq" AS integer;

CREATE SEQUENCE "product_embeddings_id_seq" AS integer;

CREATE TABLE "tenant" (
	"id" integer DEFAULT nextval('tenant_id_seq'::regclass) NOT NULL,
	"name" character varying NOT NULL,
	"slug" character varying NOT NULL,
	"custom_prompt" character varying,
	"web_grounding_prompt" character varying,
	"enable_web_context" boolean NOT NULL,
	"created_at" timestamp without time zone NOT NULL,
	CONSTRAINT "tenant_pkey" PRIMARY KEY (id)
);

CREATE TABLE "product" (
	"id" integer DEFAULT nextval('product_id_seq'::regclass) NOT NULL,
	"tenant_id" integer NOT NULL,
	"name" character varying NOT NULL,
	"description" character varying,
	"price_cpm" double precision NOT NULL,
	"delivery_type" character varying NOT NULL,
	"formats_json" character varying,
	"targeting_json" character varying,
	"created_at" timestamp without time zone NOT NULL,
	CONSTRAINT "product_pkey" PRIMARY KEY (id)
);

CREATE TABLE "externalagent" (
	"id" integer DEFAULT nextval('externalagent_id_seq'::regclass) NOT NULL,
	"name" character varying NOT NULL,
	"base_url" character varying NOT NULL,
	"enabled" boolean NOT NULL,
	"agent_type" character varying NOT NULL,
	"protocol" character varying NOT NULL,
	"created_at" timestamp without time zone NOT NULL,
	CONSTRAINT "externalagent_pkey" PRIMARY KEY (id)
);

CREATE TABLE "product_embeddings" (
	"id" integer DEFAULT nextval('product_embeddings_id_seq'::regclass) NOT NULL,
	"product_id" integer NOT NULL,
	"embedding_text" text NOT NULL,
	"embedding_hash" text NOT NULL,
	"embedding" bytea NOT NULL,
	"provider" text,
	"model" text,
	"dim" integer,
	"updated_at" text,
	"is_stale" integer DEFAULT 0,
	"created_at" timestamp without time zone DEFAULT CURRENT_TIMESTAMP,
	CONSTRAINT "product_embeddings_pkey" PRIMARY KEY (id)
);

ALTER TABLE "product" ADD CONSTRAINT "product_tenant_id_fkey" FOREIGN KEY (tenant_id) REFERENCES tenant(id);

ALTER TABLE "product_embeddings" ADD CONSTRAINT "product_embeddings_product_id_fkey" FOREIGN KEY (product_id) REFERENCES product(id);

CREATE UNIQUE INDEX ix_tenant_slug ON public.tenant USING btree (slug);

CREATE INDEX idx_product_embeddings_current ON public.product_embeddings USING btree (provider, model, is_stale) WHERE (is_stale = 0);

CREATE UNIQUE INDEX idx_product_embeddings_version ON public.product_embeddings USING btree (product_id, provider, model);

ALTER SEQUENCE "tenant_id_seq" OWNED BY "tenant"."id";

ALTER SEQUENCE "product_id_seq" OWNED BY "product"."id";

ALTER SEQUENCE "externalagent_id_seq" OWNED BY "externalagent"."id";

ALTER SEQUENCE "product_embeddings_id_seq" OWNED BY "product_embeddings"."id";
