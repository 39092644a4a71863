-- The AdCP schema on MariaDB/MySQL as backup_create records it (SHOW CREATE TABLE, without the
-- AUTO_INCREMENT counter): first for a database created from the AdCP application's own DDL (as earlier
-- versions of mysql.sql were), then for one created from today's wider mysql.sql. Validation accepts a
-- backup's DDL statement when it equals, after normalisation, a statement of the shipped DDL or of this file.
-- Nothing here is executed.

CREATE TABLE `tenant` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(255) NOT NULL,
  `slug` varchar(100) NOT NULL,
  `custom_prompt` text DEFAULT NULL,
  `web_grounding_prompt` text DEFAULT NULL,
  `enable_web_context` tinyint(1) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `ix_tenant_slug` (`slug`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `product` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `tenant_id` int(11) NOT NULL,
  `name` varchar(255) NOT NULL,
  `description` text DEFAULT NULL,
  `price_cpm` double NOT NULL,
  `delivery_type` varchar(50) NOT NULL,
  `formats_json` text DEFAULT NULL,
  `targeting_json` text DEFAULT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `tenant_id` (`tenant_id`),
  CONSTRAINT `product_ibfk_1` FOREIGN KEY (`tenant_id`) REFERENCES `tenant` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `externalagent` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` varchar(255) NOT NULL,
  `base_url` varchar(500) NOT NULL,
  `enabled` tinyint(1) NOT NULL,
  `agent_type` varchar(50) NOT NULL,
  `protocol` varchar(10) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `product_embeddings` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `product_id` int(11) NOT NULL,
  `embedding_text` text NOT NULL,
  `embedding_hash` varchar(64) NOT NULL,
  `embedding` longblob NOT NULL,
  `provider` varchar(100) DEFAULT NULL,
  `model` varchar(100) DEFAULT NULL,
  `dim` int(11) DEFAULT NULL,
  `updated_at` varchar(40) DEFAULT NULL,
  `is_stale` int(11) DEFAULT 0,
  `created_at` datetime(6) DEFAULT current_timestamp(6),
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_product_embeddings_version` (`product_id`,`provider`,`model`),
  KEY `idx_product_embeddings_current` (`provider`,`model`,`is_stale`),
  CONSTRAINT `product_embeddings_ibfk_1` FOREIGN KEY (`product_id`) REFERENCES `product` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- From mysql.sql as shipped now (LONGTEXT, slug VARCHAR(768), provider and model VARCHAR(383)).

CREATE TABLE `tenant` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` longtext NOT NULL,
  `slug` varchar(768) NOT NULL,
  `custom_prompt` longtext DEFAULT NULL,
  `web_grounding_prompt` longtext DEFAULT NULL,
  `enable_web_context` tinyint(1) NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `ix_tenant_slug` (`slug`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `product` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `tenant_id` int(11) NOT NULL,
  `name` longtext NOT NULL,
  `description` longtext DEFAULT NULL,
  `price_cpm` double NOT NULL,
  `delivery_type` longtext NOT NULL,
  `formats_json` longtext DEFAULT NULL,
  `targeting_json` longtext DEFAULT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`),
  KEY `tenant_id` (`tenant_id`),
  CONSTRAINT `product_ibfk_1` FOREIGN KEY (`tenant_id`) REFERENCES `tenant` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `externalagent` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `name` longtext NOT NULL,
  `base_url` longtext NOT NULL,
  `enabled` tinyint(1) NOT NULL,
  `agent_type` longtext NOT NULL,
  `protocol` longtext NOT NULL,
  `created_at` datetime(6) NOT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE `product_embeddings` (
  `id` int(11) NOT NULL AUTO_INCREMENT,
  `product_id` int(11) NOT NULL,
  `embedding_text` longtext NOT NULL,
  `embedding_hash` longtext NOT NULL,
  `embedding` longblob NOT NULL,
  `provider` varchar(383) DEFAULT NULL,
  `model` varchar(383) DEFAULT NULL,
  `dim` int(11) DEFAULT NULL,
  `updated_at` longtext DEFAULT NULL,
  `is_stale` int(11) DEFAULT 0,
  `created_at` datetime(6) DEFAULT current_timestamp(6),
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_product_embeddings_version` (`product_id`,`provider`,`model`),
  KEY `idx_product_embeddings_current` (`provider`,`model`,`is_stale`),
  CONSTRAINT `product_embeddings_ibfk_1` FOREIGN KEY (`product_id`) REFERENCES `product` (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
