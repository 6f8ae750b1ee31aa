-- The credit ledger: every transfer between two accounts (`pool`, `requester:r-…`,
-- `owner:<hex>`, `pending:<hex>`), in fuel. Balances are sums over it; all of them sum to zero.

CREATE TABLE ledger (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    from_account TEXT NOT NULL,
    to_account TEXT NOT NULL,
    fuel BIGINT NOT NULL,
    memo TEXT NOT NULL,
    job_id BIGINT
);
CREATE INDEX ledger_from ON ledger (from_account, seq);
CREATE INDEX ledger_to ON ledger (to_account, seq);
