-- persist schema, version 9: values set once per tenant and name (`SetOnce`), such as the
-- check value of each encryption key, kept where every process sharing the file finds them.

CREATE TABLE persist_values (
    tenant TEXT NOT NULL,                           -- '' = no tenant
    name   TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT, WITHOUT ROWID;
