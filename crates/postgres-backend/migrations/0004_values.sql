-- persist schema, version 4: values set once per tenant and name (`SetOnce`), such as the
-- check value of each encryption key, kept where every instance sharing the schema finds them.

CREATE TABLE persist_values (
    tenant TEXT NOT NULL,                           -- '' = no tenant
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
