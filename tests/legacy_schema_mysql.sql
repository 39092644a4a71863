-- The AdCP application's own MariaDB/MySQL DDL, as it creates its tables (narrower than the schema this app
-- ships): VARCHAR(255) names, VARCHAR(100) slugs, TEXT (64 KiB) for long text, LONGBLOB for embeddings.

CREATE TABLE tenant (
	id INTEGER NOT NULL AUTO_INCREMENT,
	name VARCHAR(255) NOT NULL,
	slug VARCHAR(100) NOT NULL,
	custom_prompt TEXT,
	web_grounding_prompt TEXT,
	enable_web_context BOOL NOT NULL,
	created_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE INDEX ix_tenant_slug (slug)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE externalagent (
	id INTEGER NOT NULL AUTO_INCREMENT,
	name VARCHAR(255) NOT NULL,
	base_url VARCHAR(500) NOT NULL,
	enabled BOOL NOT NULL,
	agent_type VARCHAR(50) NOT NULL,
	protocol VARCHAR(10) NOT NULL,
	created_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE product (
	id INTEGER NOT NULL AUTO_INCREMENT,
	tenant_id INTEGER NOT NULL,
	name VARCHAR(255) NOT NULL,
	description TEXT,
	price_cpm DOUBLE NOT NULL,
	delivery_type VARCHAR(50) NOT NULL,
	formats_json TEXT,
	targeting_json TEXT,
	created_at DATETIME(6) NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(tenant_id) REFERENCES tenant (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE product_embeddings (
	id INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY,
	product_id INTEGER NOT NULL,
	embedding_text TEXT NOT NULL,
	embedding_hash VARCHAR(64) NOT NULL,
	embedding LONGBLOB NOT NULL,
	provider VARCHAR(100),
	model VARCHAR(100),
	dim INTEGER,
	updated_at VARCHAR(40),
	is_stale INTEGER DEFAULT 0,
	created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
	UNIQUE INDEX idx_product_embeddings_version (product_id, provider, model),
	INDEX idx_product_embeddings_current (provider, model, is_stale),
	FOREIGN KEY (product_id) REFERENCES product(id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
