-- The party's RTP statistics of each call (SIP.md section 6), written when
-- the call ends: packets received, packets lost (RFC 3550 A.3) and the
-- interarrival jitter in microseconds. Older rows read 0.
ALTER TABLE calls ADD COLUMN rtp_packets_received BIGINT NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN rtp_packets_lost BIGINT NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN rtp_jitter_us BIGINT NOT NULL DEFAULT 0;
