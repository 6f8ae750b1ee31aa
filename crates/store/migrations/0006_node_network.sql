-- The network each node registered from (an IPv4 /24 or an IPv6 /48, as `203.0.113.0/24`), so
-- replicas of one task can be kept on different networks. Nodes from before it was kept have
-- none until they register again.

ALTER TABLE nodes ADD COLUMN network TEXT;
